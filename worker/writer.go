package worker

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/selfplay/selfplay/store"
)

// writeLinger is how long the writer waits for more generate results to
// write in one statement while other tasks are in flight; writeBatch is
// the most it writes in one.
const (
	writeLinger = time.Millisecond
	writeBatch  = 32
)

// writer records generate tasks' results in batches: a task's result
// waits up to writeLinger for others, then all are written in one
// statement (store.CompleteGenerates), which costs the database about half
// of what writing them one by one does. Each task still returns only once
// its own result is committed, and is acknowledged only then. It writes on
// a connection of its own, with the generic plans the statement needs.
type writer struct {
	pool     *pgxpool.Pool
	log      *slog.Logger
	results  int // written, and statements that wrote them
	writes   int
	in       chan *write
	inFlight *atomic.Int64 // the worker's tasks in flight
	linger   time.Duration // writeLinger, but in tests
}

type write struct {
	c    store.Completion
	done chan error
}

// newWriter makes a writer on a pool of one connection like those of pool.
func newWriter(pool *pgxpool.Pool, inFlight *atomic.Int64, log *slog.Logger) (*writer, error) {
	cfg := pool.Config().Copy()
	cfg.MaxConns, cfg.MinConns = 1, 0
	after := cfg.AfterConnect
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if after != nil {
			if err := after(ctx, c); err != nil {
				return err
			}
		}
		_, err := c.Exec(ctx, store.GenericPlans)
		return err
	}
	wp, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	return &writer{pool: wp, log: log, in: make(chan *write), inFlight: inFlight, linger: writeLinger}, nil
}

// complete records c and returns once it is committed (nil), or with why
// it is not. A result given up on (ctx ended) may still be written: a task
// is only ever recorded while pending, so its redelivery finds it done.
func (w *writer) complete(ctx context.Context, c store.Completion) error {
	req := &write{c: c, done: make(chan error, 1)}
	select {
	case w.in <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run writes batches until ctx ends, then closes the writer's pool.
func (w *writer) run(ctx context.Context) {
	defer w.pool.Close()
	defer func() {
		w.log.Debug("generate results written", "results", w.results, "statements", w.writes)
	}()
	linger := time.NewTimer(0)
	<-linger.C
	for {
		var batch []*write
		select {
		case <-ctx.Done():
			return
		case r := <-w.in:
			batch = append(batch, r)
		}
		// Wait for the results of tasks in flight now, not for those
		// that are not there.
		linger.Reset(w.linger)
	gather:
		for len(batch) < writeBatch && w.inFlight.Load() > int64(len(batch)) {
			select {
			case r := <-w.in:
				batch = append(batch, r)
			case <-linger.C:
				break gather
			}
		}
		if !linger.Stop() {
			select {
			case <-linger.C:
			default:
			}
		}
		w.write(ctx, batch)
	}
}

// write writes a batch in one statement; when that fails (a result the
// database refuses, a task given twice, a lost connection), each is
// written alone, so each gets its own answer.
func (w *writer) write(ctx context.Context, batch []*write) {
	if len(batch) > 1 {
		cs := make([]store.Completion, len(batch))
		for i, r := range batch {
			cs[i] = r.c
		}
		if store.CompleteGenerates(ctx, w.pool, cs) == nil {
			w.results += len(batch)
			w.writes++
			for _, r := range batch {
				r.done <- nil
			}
			return
		}
	}
	for _, r := range batch {
		c := r.c
		err := store.CompleteGenerate(ctx, w.pool, c.Key, c.Outcome, c.Attempts, c.Responses, c.Pair)
		if err == nil {
			w.results++
			w.writes++
		}
		r.done <- err
	}
}
