package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/store"
)

// maxLosses bounds how many times a task may be found lost (JetStream held
// no deliverable message for it while it was pending) before it is failed:
// a task whose every delivery crashes its worker must end some time.
const maxLosses = 5

// lostReason is the failure of a task lost more than maxLosses times.
var lostReason = fmt.Sprintf("lost %d times: JetStream held no deliverable message for it (its deliveries ran out "+
	"without a worker recording an outcome, or the stream lost it)", maxLosses+1)

// batchSize is how many tasks are read, published or bumped at a time, so
// a stage of millions of tasks never sits in the orchestrator's memory.
const batchSize = 1000

// dispatch creates the tasks of a kind, publishes the ones never
// published, and waits until every task is done or failed, re-publishing
// tasks whose messages were lost. Too many failures fail the stage with a
// summary.
//
// A task is lost only when the deployment's consumer has nothing queued
// and nothing in flight while the task is still pending: read the consumer
// first and the database after (a worker commits a task's row before it
// acks the message), and no clock is involved. A task waiting in a backlog,
// for however long, is never lost.
func (s *iterationState) dispatch(ctx context.Context, kind string) error {
	if err := s.checkModelsServed(ctx, kind); err != nil {
		return err
	}
	var made int64
	var err error
	switch kind {
	case bus.KindGenerate:
		made, err = store.CreateGenerateTasks(ctx, s.o.pool, s.it.ID)
	case bus.KindEvolve:
		made, err = store.CreateEvolveTasks(ctx, s.o.pool, s.it.ID)
	}
	// Learn tasks are made with their check (store.StartLearningCheck).
	if err != nil {
		return err
	}
	// Only tasks never published are published: after a restart the rest
	// are in the stream, or found lost below.
	published, err := s.publishNew(ctx, kind)
	if err != nil {
		return err
	}
	s.o.log.InfoContext(ctx, "tasks published", "iteration", s.it.Name, "kind", kind, "new", made, "published", published)

	exhausted, unsubscribe := s.watchExhausted(ctx)
	defer unsubscribe()
	prog := newProgress(s.o.log, s.it.Name, kind, s.o.cfg.Orchestrator.ProgressInterval)
	idle := idleWatch{after: s.o.cfg.Orchestrator.IdleWarning}
	poll := s.o.cfg.Orchestrator.PollInterval
	timer := time.NewTimer(poll)
	defer timer.Stop()
	for {
		start := time.Now()
		if err := s.drainExhausted(ctx, kind, exhausted); err != nil {
			return err
		}
		info, err := s.o.cons.Info(ctx) // one CONSUMER.INFO per poll, never per task
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			// The broker lost the consumer (or the whole stream): make them
			// again; the tasks whose messages went with them are found
			// lost on the next poll.
			s.o.log.WarnContext(ctx, "the run's consumer is gone; creating it again", "err", err)
			if err := s.o.bindQueue(ctx, s.run.ID); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("consumer info: %w", err)
		}
		counts, err := store.CountTasks(ctx, s.o.pool, s.it.ID, kind)
		if err != nil {
			return err
		}
		prog.update(ctx, counts)
		if counts.Pending == 0 {
			prog.finish(ctx, counts)
			// What the stream still holds of the stage ran out of
			// deliveries after its task was settled: gone with the stage,
			// so the stream never piles up finished stages.
			// A failure costs only the leftovers.
			if _, err := bus.PurgeTasks(ctx, s.o.js, s.o.queue, kind, s.it.ID); err != nil {
				s.o.log.WarnContext(ctx, "could not remove the finished stage's leftover messages", "iteration", s.it.Name, "kind", kind, "err", err)
			}
			return s.checkFailures(ctx, kind, counts)
		}
		if s.cannotSucceed(counts) {
			// Failures only grow: once they are over the limit, the
			// tasks still pending cannot bring the stage under it.
			prog.finish(ctx, counts)
			return s.checkFailures(ctx, kind, counts)
		}
		if idle.observe(time.Now(), info) {
			s.o.log.WarnContext(ctx, "no worker is pulling tasks: start `selfplay worker` with this schedule, or check why the workers stopped",
				"iteration", s.it.Name, "kind", kind, "tasks_waiting", counts.Pending, "messages_queued", info.NumPending,
				"idle_for", idle.idleFor(time.Now()).Round(time.Second))
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			// Pending tasks, and nothing queued or in flight for this
			// deployment: their messages ran out of deliveries without a
			// worker recording the outcome, or were lost with the stream.
			if err := s.recoverLost(ctx, kind); err != nil {
				return err
			}
		}
		timer.Reset(pollDelay(poll, time.Since(start)))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
	}
}

// drainExhausted settles the messages announced exhausted since the last
// poll.
func (s *iterationState) drainExhausted(ctx context.Context, kind string, seqs <-chan uint64) error {
	for {
		select {
		case seq := <-seqs:
			if err := s.settleExhausted(ctx, kind, seq); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// pollCost is how many times a poll's own query time the orchestrator
// waits before the next: counting the tasks of a stage of millions of
// prompts takes a noticeable part of a second, and polling must not keep a
// database core busy.
const pollCost = 20

// pollDelay is the wait before the next poll: the configured interval, or
// pollCost times what the last count took when that is longer.
func pollDelay(interval, took time.Duration) time.Duration {
	return max(interval, pollCost*took)
}

// publishNew publishes the stage's never-published pending tasks a batch at
// a time, recording each batch as published once the stream has stored it.
func (s *iterationState) publishNew(ctx context.Context, kind string) (int, error) {
	if err := s.markStored(ctx, kind); err != nil {
		return 0, err
	}
	var after int64
	n := 0
	for {
		batch, err := store.Unpublished(ctx, s.o.pool, s.it.ID, kind, after, batchSize)
		if err != nil || len(batch) == 0 {
			return n, err
		}
		if err := s.publish(ctx, kind, batch); err != nil {
			return n, err
		}
		ids := make([]int64, len(batch))
		for i, t := range batch {
			ids[i] = t.PromptID
		}
		if err := store.MarkPublished(ctx, s.o.pool, s.it.ID, kind, ids); err != nil {
			return n, err
		}
		n += len(batch)
		after = ids[len(ids)-1]
	}
}

// markStored records as published the never-marked tasks whose current
// publication the stream already holds: stored by a batch that was cut off
// (storage full, a lost connection) or by an orchestrator that died before
// it marked them. Publishing them again is dropped by JetStream only within
// its duplicate window; after that it would put a second message for the
// task in the stream. The broker is asked, not the clock: one message per
// task whatever the timing.
func (s *iterationState) markStored(ctx context.Context, kind string) error {
	first, err := store.Unpublished(ctx, s.o.pool, s.it.ID, kind, 0, 1)
	if err != nil || len(first) == 0 {
		return err
	}
	stored, err := bus.StoredTasks(ctx, s.o.js, s.o.queue, kind, s.it.ID)
	if err != nil || len(stored) == 0 {
		return err
	}
	var after int64
	marked := 0
	for {
		batch, err := store.Unpublished(ctx, s.o.pool, s.it.ID, kind, after, batchSize)
		if err != nil || len(batch) == 0 {
			if marked > 0 {
				s.o.log.InfoContext(ctx, "tasks found in the stream though never marked published; marked, not published again",
					"iteration", s.it.Name, "kind", kind, "tasks", marked)
			}
			return err
		}
		var ids []int64
		for _, t := range batch {
			if p, ok := stored[t.PromptID]; ok && p == t.Publications {
				ids = append(ids, t.PromptID)
			}
		}
		if len(ids) > 0 {
			if err := store.MarkPublished(ctx, s.o.pool, s.it.ID, kind, ids); err != nil {
				return err
			}
			marked += len(ids)
		}
		after = batch[len(batch)-1].PromptID
	}
}

func (s *iterationState) publish(ctx context.Context, kind string, tasks []store.TaskRef) error {
	for _, t := range tasks {
		err := s.o.pub.Publish(ctx, bus.Task{IterationID: s.it.ID, PromptID: t.PromptID, Kind: kind, Publication: t.Publications, Run: s.run.Nonce})
		if err != nil {
			return err
		}
	}
	return s.o.pub.Flush(ctx)
}

// recoverLost is called when the consumer holds nothing deliverable while
// tasks of the stage are pending. It removes what is left of their
// messages (a work queue keeps messages that ran out of deliveries), counts
// a loss for each pending task and publishes it again under its next
// message id; a task lost maxLosses times is failed with the reason.
func (s *iterationState) recoverLost(ctx context.Context, kind string) error {
	dead, err := bus.PurgeTasks(ctx, s.o.js, s.o.queue, kind, s.it.ID)
	if err != nil {
		return err
	}
	var after int64
	again, failed := 0, 0
	for {
		lost, err := store.BumpLost(ctx, s.o.pool, s.it.ID, kind, after, batchSize)
		if err != nil {
			return err
		}
		if len(lost) == 0 {
			break
		}
		after = lost[len(lost)-1].PromptID
		var publish []store.TaskRef
		for _, t := range lost {
			if t.Losses > maxLosses {
				key := store.TaskKey{IterationID: s.it.ID, PromptID: t.PromptID, Kind: kind}
				if err := store.FailTask(ctx, s.o.pool, key, store.Failure{Reason: lostReason}, 0); err != nil {
					return err
				}
				failed++
				continue
			}
			publish = append(publish, t)
		}
		if err := s.publish(ctx, kind, publish); err != nil {
			return err
		}
		again += len(publish)
	}
	if again+failed > 0 {
		s.o.log.WarnContext(ctx, "tasks lost: nothing queued or in flight for them; re-published",
			"iteration", s.it.Name, "kind", kind, "republished", again, "failed", failed, "dead_messages_removed", dead)
	}
	return nil
}

// cannotSucceed reports whether the failed fraction is over
// max_failed_fraction already, so the stage fails whatever its pending
// tasks do.
func (s *iterationState) cannotSucceed(c store.TaskCounts) bool {
	return c.Failed > 0 && float64(c.Failed)/float64(c.Total()) > s.o.cfg.Orchestrator.MaxFailedFraction
}

// checkFailures fails the stage when more than max_failed_fraction of its
// tasks failed.
func (s *iterationState) checkFailures(ctx context.Context, kind string, c store.TaskCounts) error {
	if c.Failed == 0 {
		return nil
	}
	reasons, err := store.FailureReasons(ctx, s.o.pool, s.it.ID, kind, 5)
	if err != nil {
		return err
	}
	frac := float64(c.Failed) / float64(c.Total())
	if frac > s.o.cfg.Orchestrator.MaxFailedFraction {
		still := ""
		if c.Pending > 0 {
			still = fmt.Sprintf(", %d still pending cannot bring it under the limit", c.Pending)
		}
		return fmt.Errorf("%d of %d %s tasks failed (%.1f%% > max_failed_fraction %.1f%%%s): %s",
			c.Failed, c.Total(), kind, 100*frac, 100*s.o.cfg.Orchestrator.MaxFailedFraction, still, failureSummary(reasons))
	}
	s.o.log.WarnContext(ctx, "some tasks failed", "iteration", s.it.Name, "kind", kind, "failed", c.Failed, "reasons", failureSummary(reasons))
	return nil
}

// idleRepeat is how often the no-worker warning is repeated while the
// workers stay away.
const idleRepeat = time.Minute

// idleWatch tells from the consumer's state when tasks wait with no worker
// pulling them: messages queued, no pull request waiting (NumWaiting) and
// none in flight (NumAckPending). A worker with free slots and nothing to
// take keeps a pull request waiting, and a busy one has messages in
// flight, so either resets the watch. After `after` of that, observe says to warn, and again
// every idleRepeat while it lasts.
type idleWatch struct {
	after      time.Duration
	since      time.Time // zero while some worker pulls
	lastWarned time.Time
}

func (w *idleWatch) observe(now time.Time, info *jetstream.ConsumerInfo) bool {
	if info.NumPending == 0 || info.NumWaiting > 0 || info.NumAckPending > 0 {
		w.since, w.lastWarned = time.Time{}, time.Time{}
		return false
	}
	if w.since.IsZero() {
		w.since = now
	}
	if now.Sub(w.since) < w.after || (!w.lastWarned.IsZero() && now.Sub(w.lastWarned) < idleRepeat) {
		return false
	}
	w.lastWarned = now
	return true
}

func (w *idleWatch) idleFor(now time.Time) time.Duration {
	if w.since.IsZero() {
		return 0
	}
	return now.Sub(w.since)
}
