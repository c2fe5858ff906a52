package orchestrator

import (
	"context"
	"fmt"
	"time"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/store"
)

// maxPublications bounds re-publications of a task whose messages keep
// getting lost before it is failed.
const maxPublications = 5

// dispatch creates the tasks of a kind, publishes the pending ones, and
// waits until every task is done or failed, re-publishing tasks whose
// messages were lost. Too many failures fail the stage with a summary.
func (s *iterationState) dispatch(ctx context.Context, kind string) error {
	if err := s.checkModelsServed(ctx, kind); err != nil {
		return err
	}
	var made int64
	var err error
	if kind == bus.KindGenerate {
		made, err = store.CreateGenerateTasks(ctx, s.o.pool, s.it.ID)
	} else {
		made, err = store.CreateEvolveTasks(ctx, s.o.pool, s.it.ID)
	}
	if err != nil {
		return err
	}
	// Every pending task is published: on a fresh stage they are new; after
	// a restart the message ids make re-publishing harmless.
	pending, err := store.Publishable(ctx, s.o.pool, s.it.ID, kind, true)
	if err != nil {
		return err
	}
	if err := s.publish(ctx, pending); err != nil {
		return err
	}
	s.o.log.InfoContext(ctx, "tasks published", "iteration", s.it.Name, "kind", kind, "new", made, "published", len(pending))

	wc := s.o.cfg.Worker
	staleAfter := wc.AckWait*time.Duration(wc.MaxDeliver) + 30*time.Second
	prog := newProgress(s.o.log, s.it.Name, kind, s.o.cfg.Orchestrator.ProgressInterval)
	poll := s.o.cfg.Orchestrator.PollInterval
	staleEvery := max(poll, staleAfter/20)
	var lastStale time.Time
	timer := time.NewTimer(poll)
	defer timer.Stop()
	for {
		start := time.Now()
		counts, err := store.CountTasks(ctx, s.o.pool, s.it.ID, kind)
		if err != nil {
			return err
		}
		prog.update(ctx, counts)
		if counts.Pending == 0 {
			prog.finish(ctx, counts)
			return s.checkFailures(ctx, kind, counts)
		}
		if s.cannotSucceed(counts) {
			// Failures only grow: once they are over the limit, the
			// tasks still pending cannot bring the stage under it.
			prog.finish(ctx, counts)
			return s.checkFailures(ctx, kind, counts)
		}
		timer.Reset(pollDelay(poll, time.Since(start)))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		// Tasks go stale after staleAfter; looking for them twenty times
		// as often is plenty, and spares the database a scan of the
		// stage's pending tasks on every poll.
		if time.Since(lastStale) >= staleEvery {
			if err := s.republishStale(ctx, kind, staleAfter); err != nil {
				return err
			}
			lastStale = time.Now()
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

func (s *iterationState) publish(ctx context.Context, tasks []store.Task) error {
	for _, t := range tasks {
		err := s.o.pub.Publish(ctx, bus.Task{IterationID: t.IterationID, PromptID: t.PromptID, Kind: t.Kind, Publication: t.Publications, Run: s.run.Nonce})
		if err != nil {
			return err
		}
	}
	return s.o.pub.Flush(ctx)
}

// republishStale publishes again the tasks still pending long after their
// last publication: their messages ran out of deliveries or were lost
// without a worker recording the outcome.
func (s *iterationState) republishStale(ctx context.Context, kind string, after time.Duration) error {
	stale, err := store.RepublishStale(ctx, s.o.pool, s.it.ID, kind, after)
	if err != nil || len(stale) == 0 {
		return err
	}
	var again []store.Task
	for _, t := range stale {
		if t.Publications >= maxPublications {
			key := store.TaskKey{IterationID: t.IterationID, PromptID: t.PromptID, Kind: t.Kind}
			reason := fmt.Sprintf("no worker finished it after %d publications", t.Publications)
			if err := store.FailTask(ctx, s.o.pool, key, store.Failure{Reason: reason}, 0); err != nil {
				return err
			}
			continue
		}
		again = append(again, t)
	}
	s.o.log.WarnContext(ctx, "re-publishing stale tasks", "iteration", s.it.Name, "kind", kind, "tasks", len(again))
	return s.publish(ctx, again)
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
