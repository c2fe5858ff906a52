package worker

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/selfplay/selfplay/llm"
	"github.com/selfplay/selfplay/metric"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/store"
)

// OutcomePaired is the generate outcome of a prompt that yielded a pair;
// otherwise the outcome is the metric.NoPairReason.
const OutcomePaired = "paired"

// generate samples n responses, rewards them in one request, scores them
// under the reference when the iteration has one, pairs best against
// worst, and writes responses, pair and task status in one transaction.
func (w *Worker) generate(ctx context.Context, it iterationInfo, key store.TaskKey, delivered int, promptMsgs []prompt.Message, log *slog.Logger) error {
	msgs := toLLM(promptMsgs)
	gen := it.Settings.Generation
	seed := promptSeed(gen.Seed, promptMsgs)
	samples, err := w.clients.Policy.Sample(ctx, msgs, llm.SampleParams{
		Model: it.Settings.PolicyModel, N: gen.Samples, Temperature: gen.Temperature,
		TopP: gen.TopP, MaxTokens: gen.MaxTokens, Seed: &seed,
		TopK: gen.TopK, MinP: gen.MinP, RepetitionPenalty: gen.RepetitionPenalty,
		PresencePenalty: gen.PresencePenalty, FrequencyPenalty: gen.FrequencyPenalty,
		// Token ids only serve teacher-forcing under the reference.
		WithoutTokenIDs: it.Settings.ReferenceModel == "",
	})
	if err != nil {
		return classify("sample", err)
	}
	if len(samples) != gen.Samples {
		return Permanentf("sample: policy returned %d samples, want %d", len(samples), gen.Samples)
	}
	texts := make([]string, len(samples))
	for i, s := range samples {
		texts[i] = s.Content
	}
	rewards, err := w.clients.Reward.Score(ctx, msgs, texts)
	if err != nil {
		return classify("reward", err)
	}
	if len(rewards) != len(samples) {
		return Permanentf("reward: %d rewards for %d responses", len(rewards), len(samples))
	}
	var refs []*float64
	if it.Settings.ReferenceModel != "" {
		if w.clients.Reference == nil {
			return Permanentf("iteration %s has reference_model %q but this worker has no reference endpoint", it.Settings.Name, it.Settings.ReferenceModel)
		}
		refs = make([]*float64, len(samples))
		for i, s := range samples {
			lp, err := w.clients.Reference.LogProbSample(ctx, it.Settings.ReferenceModel, msgs, s)
			if err != nil {
				return classify("reference", err)
			}
			refs[i] = &lp
		}
	}

	ms := make([]metric.Sample, len(samples))
	rows := make([]store.Response, len(samples))
	for i, s := range samples {
		r := rewards[i]
		ms[i] = metric.Sample{Index: i, Content: s.Content, Tokens: s.Tokens, LogProb: s.LogProb, Reward: r}
		rows[i] = store.Response{SampleIndex: i, Content: s.Content, TokenCount: s.Tokens, LogProbSum: s.LogProb,
			FinishReason: s.FinishReason, Reward: &rewards[i]}
		if refs != nil {
			ms[i].RefLogProb = refs[i]
			rows[i].RefLogProbSum = refs[i]
		}
	}
	pair, reason, err := metric.MakePair(ms, it.Settings.Scoring.Beta)
	if err != nil {
		return Permanentf("pair: %w", err)
	}
	outcome := OutcomePaired
	if reason != "" {
		outcome = string(reason)
	}

	var choice *store.PairChoice
	if reason == "" {
		choice = &store.PairChoice{Chosen: pair.Chosen, Rejected: pair.Rejected,
			ExplicitMargin: pair.ExplicitMargin, ImplicitMargin: pair.ImplicitMargin, DPOMargin: pair.DPOMargin}
	}
	if err := w.writer.complete(ctx, store.Completion{Key: key, Outcome: outcome, Attempts: delivered, Responses: rows, Pair: choice}); err != nil {
		return Retry(0, fmt.Errorf("store results: %w", err))
	}
	log.Debug("generated", "outcome", outcome)
	return nil
}

func toLLM(msgs []prompt.Message) []llm.Message {
	out := make([]llm.Message, len(msgs))
	for i, m := range msgs {
		out[i] = llm.Message{Role: m.Role, Content: m.Content}
	}
	return out
}

// promptSeed derives a prompt's sampling seed from the configured seed and
// the prompt's content (its hash), not its database id, so a re-run samples
// the same texts even when evolved prompts get other ids. Choice i of a
// request uses seed+i on the server, so seeds are spaced 1024 apart.
func promptSeed(base int64, msgs []prompt.Message) int64 {
	v, _ := strconv.ParseUint(prompt.Hash(msgs)[:12], 16, 64) // 48 bits of the hex digest
	return base + int64(v)<<10
}
