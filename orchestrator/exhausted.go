package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/store"
)

// watchExhausted subscribes to the server's advisories of messages of the
// run's consumer that ran out of deliveries, and returns their
// stream sequence numbers. A work queue keeps such a message, undelivered,
// and its task stays pending: settling it at once spares the wait for the
// consumer to go idle (recoverLost, the backstop, which also covers a
// missed advisory). Without permission to subscribe it only logs.
func (s *iterationState) watchExhausted(ctx context.Context) (<-chan uint64, func()) {
	seqs := make(chan uint64, 1024)
	subject := bus.ExhaustedSubject(s.o.queue)
	sub, err := s.o.js.Conn().Subscribe(subject, func(m *nats.Msg) {
		var a bus.Exhausted
		if err := json.Unmarshal(m.Data, &a); err != nil || a.StreamSeq == 0 {
			return
		}
		select {
		case seqs <- a.StreamSeq:
		default: // full: the consumer check finds the rest
		}
	})
	if err != nil {
		s.o.log.WarnContext(ctx, "cannot subscribe to max-delivery advisories; lost tasks are found when the consumer is idle",
			"subject", subject, "err", err)
		return seqs, func() {}
	}
	return seqs, func() { _ = sub.Unsubscribe() }
}

// settleExhausted deals with one message that ran out of deliveries: if
// it is the current publication of a pending task of this stage, the
// message is removed and the task counted lost and published again (or
// failed past maxLosses). Messages of other stages are left to their own.
func (s *iterationState) settleExhausted(ctx context.Context, kind string, seq uint64) error {
	stream, err := s.o.js.Stream(ctx, s.o.cfg.NATS.Stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", s.o.cfg.NATS.Stream, err)
	}
	raw, err := stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // already gone
	}
	if err != nil {
		return fmt.Errorf("read exhausted message %d: %w", seq, err)
	}
	task, err := bus.DecodeTask(raw.Data)
	if err != nil || task.IterationID != s.it.ID || task.Kind != kind || task.Run != s.run.Nonce {
		return nil
	}
	if err := stream.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("delete exhausted message %d: %w", seq, err)
	}
	key := store.TaskKey{IterationID: s.it.ID, PromptID: task.PromptID, Kind: kind}
	ref, ok, err := store.BumpLostTask(ctx, s.o.pool, key, task.Publication)
	if err != nil || !ok {
		return err
	}
	if ref.Losses > maxLosses {
		return store.FailTask(ctx, s.o.pool, key, store.Failure{Reason: lostReason}, 0)
	}
	s.o.log.WarnContext(ctx, "a task's message ran out of deliveries with no outcome recorded; re-published",
		"iteration", s.it.Name, "kind", kind, "prompt_id", task.PromptID, "losses", ref.Losses)
	return s.publish(ctx, kind, []store.TaskRef{ref})
}
