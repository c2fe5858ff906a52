package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/selfplay/selfplay/llm"
	"github.com/selfplay/selfplay/metric"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/store"
)

// learn scores one pair of the learning check: the chosen and the rejected
// reply teacher-forced under the check's model (the policy the iteration's
// training made) on the policy endpoint, the new implicit margin in the
// run's form, and the pair's result stored with its task settled.
//
// The replies are scored from their stored text (responses keep no token
// ids), with the end-of-turn token appended to a reply that stopped on its
// own, as LogProbSample does; the simpo form divides by the stored token
// counts, so the old and the new margin are normalised alike.
func (w *Worker) learn(ctx context.Context, key store.TaskKey, delivered int, promptMsgs []prompt.Message, log *slog.Logger) error {
	if w.clients.PolicyScorer == nil {
		return Permanentf("this worker has no teacher-forcing client for the policy endpoint")
	}
	chk, err := store.GetLearningCheck(ctx, w.pool, key.IterationID)
	if errors.Is(err, store.ErrNotFound) {
		return Permanentf("iteration %d has learn tasks but no learning check", key.IterationID)
	}
	if err != nil {
		return Retry(0, err)
	}
	p, err := store.ReadLearnPair(ctx, w.pool, key.IterationID, key.PromptID)
	if errors.Is(err, store.ErrNotFound) {
		return Permanent(err)
	}
	if err != nil {
		return Retry(0, err)
	}
	msgs := toLLM(promptMsgs)
	lps := make([]float64, 2)
	for i, r := range []store.LearnReply{p.Chosen, p.Rejected} {
		lps[i], err = w.clients.PolicyScorer.LogProbSample(ctx, chk.Model, msgs, llm.Sample{Content: r.Content, FinishReason: r.FinishReason})
		if err != nil {
			return classify("policy teacher forcing", err)
		}
	}
	form := metric.ImplicitForm(chk.Implicit)
	chosen := metric.Sample{Tokens: p.Chosen.Tokens, LogProb: lps[0], RefLogProb: p.Chosen.RefLogProb}
	rejected := metric.Sample{Tokens: p.Rejected.Tokens, LogProb: lps[1], RefLogProb: p.Rejected.RefLogProb}
	margin, err := metric.ImplicitMarginOf(form, chk.Beta, chosen, rejected)
	if err != nil {
		return Permanentf("pair %d: %w", p.PairID, err)
	}
	old := p.ImplicitMargin
	if form == metric.ImplicitDPO {
		if p.DPOMargin == nil {
			return Permanentf("pair %d has no dpo margin to compare with", p.PairID)
		}
		old = *p.DPOMargin
	}
	err = store.CompleteLearn(ctx, w.pool, key, delivered, store.PairLearning{PairID: p.PairID, Model: chk.Model,
		ChosenLogProb: lps[0], RejectedLogProb: lps[1], ImplicitMargin: margin, OldImplicitMargin: old})
	if err != nil {
		return Retry(0, fmt.Errorf("store results: %w", err))
	}
	log.Debug("learning checked", "pair_id", p.PairID, "delta", margin-old)
	return nil
}
