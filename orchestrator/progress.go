package orchestrator

import (
	"context"
	"log/slog"
	"time"

	"github.com/selfplay/selfplay/store"
)

// progress logs a line every interval with done/failed/total, the rate of
// settled tasks and the time left at that rate.
type progress struct {
	log       *slog.Logger
	iteration string
	kind      string
	every     time.Duration
	start     time.Time
	last      time.Time
	first     int64 // settled tasks when the stage (re)started
}

func newProgress(log *slog.Logger, iteration, kind string, every time.Duration) *progress {
	now := time.Now()
	return &progress{log: log, iteration: iteration, kind: kind, every: every, start: now, last: now, first: -1}
}

func (p *progress) update(ctx context.Context, c store.TaskCounts) {
	settled := c.Done + c.Failed
	if p.first < 0 {
		p.first = settled
	}
	if time.Since(p.last) < p.every {
		return
	}
	p.last = time.Now()
	p.line(ctx, "progress", c)
}

func (p *progress) finish(ctx context.Context, c store.TaskCounts) {
	p.line(ctx, "stage finished", c)
}

func (p *progress) line(ctx context.Context, msg string, c store.TaskCounts) {
	settled := c.Done + c.Failed
	elapsed := time.Since(p.start)
	rate := float64(settled-max(p.first, 0)) / max(elapsed.Seconds(), 1e-9)
	attrs := []any{"iteration", p.iteration, "kind", p.kind, "done", c.Done, "failed", c.Failed,
		"total", c.Total(), "rate_per_s", float64(int(rate*10)) / 10, "elapsed", elapsed.Round(time.Second)}
	if rate > 0 && c.Pending > 0 {
		attrs = append(attrs, "eta", (time.Duration(float64(c.Pending)/rate) * time.Second).Round(time.Second))
	}
	p.log.InfoContext(ctx, msg, attrs...)
}
