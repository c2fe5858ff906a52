package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/store"
)

// ErrLocked is returned when another orchestrator holds the run.
var ErrLocked = errors.New("another orchestrator is running this run")

// Options tune an orchestrator beyond the configuration.
type Options struct {
	// RetryFailed restarts failed iterations (their failed tasks become
	// pending again) instead of stopping at them.
	RetryFailed bool
	// OnStage is called when an iteration enters a stage; optional.
	OnStage func(iteration, stage string)
	// HTTPClient polls /v1/models while waiting for a model; default a
	// client with a 10s timeout.
	HTTPClient *http.Client
	// StageDelay pauses right after an iteration enters the named stage
	// (stored, work not begun). Fault-injection tests use it to kill the
	// orchestrator inside a given stage; zero in normal runs.
	StageDelay map[string]time.Duration
}

// Orchestrator drives one run of the schedule.
type Orchestrator struct {
	cfg  *config.Config
	pool *pgxpool.Pool
	pub  *bus.Publisher
	opts Options
	log  *slog.Logger
	lk   *runLock
}

// New builds an orchestrator; the publisher publishes to cfg.NATS.Stream.
func New(cfg *config.Config, pool *pgxpool.Pool, pub *bus.Publisher, opts Options, log *slog.Logger) *Orchestrator {
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return &Orchestrator{cfg: cfg, pool: pool, pub: pub, opts: opts, log: log}
}

// Run drives every iteration of the schedule to done, resuming from the
// stored stages. It returns the first iteration failure, or ctx's error.
func (o *Orchestrator) Run(ctx context.Context) error {
	o.lk = &runLock{pool: o.pool, run: o.cfg.Run}
	if err := o.lk.acquire(ctx); err != nil {
		return err
	}
	defer o.lk.release(ctx)

	snapshot, err := o.cfg.Snapshot()
	if err != nil {
		return err
	}
	specs := make([]store.IterationSpec, len(o.cfg.Iterations))
	for i, it := range o.cfg.Iterations {
		settings, err := json.Marshal(it.Settings())
		if err != nil {
			return err
		}
		specs[i] = store.IterationSpec{Ordinal: i, Name: it.Name, PolicyModel: it.PolicyModel,
			ReferenceModel: it.ReferenceModel, Config: settings}
	}
	// A schedule that differs from a started iteration's stored settings is
	// refused before anything of it is stored.
	err = o.riding(ctx, "check the schedule", func() error {
		r, err := store.GetRun(ctx, o.pool, o.cfg.Run)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		stored, err := store.ListIterations(ctx, o.pool, r.ID)
		if err != nil {
			return err
		}
		if len(stored) > len(specs) {
			return fmt.Errorf("run %q has %d iterations stored but the schedule has %d: use a new run name for a shorter schedule", o.cfg.Run, len(stored), len(specs))
		}
		_, err = o.checkSchedule(ctx, stored, specs)
		return err
	})
	if err != nil {
		return err
	}
	var run store.Run
	err = o.riding(ctx, "create run", func() (err error) {
		run, err = store.EnsureRun(ctx, o.pool, o.cfg.Run, snapshot)
		return err
	})
	if err != nil {
		return err
	}
	var its []store.Iteration
	err = o.riding(ctx, "create iterations", func() (err error) {
		its, err = store.EnsureIterations(ctx, o.pool, run.ID, specs)
		return err
	})
	if err != nil {
		return err
	}
	// Every iteration runs with its stored settings (see checkSchedule).
	sched := make([]config.Iteration, len(its))
	for i, it := range its {
		s, err := storedSettings(it)
		if err != nil {
			return err
		}
		sched[i] = iterationOf(s)
	}
	o.log.InfoContext(ctx, "run started", "run", o.cfg.Run, "iterations", len(its))
	for i := range its {
		it := its[i]
		if it.Stage == store.StageDone {
			continue
		}
		if it.Stage == store.StageFailed {
			if !o.opts.RetryFailed {
				return fmt.Errorf("iteration %s failed earlier: %s; fix the cause and run again with --retry-failed", it.Name, deref(it.Error))
			}
			if err := o.resetFailed(ctx, it); err != nil {
				return err
			}
			it.Stage = store.StagePending
		}
		st := &iterationState{o: o, run: run, it: it, cfg: sched[i], last: i == len(its)-1}
		if i+1 < len(sched) {
			st.next = &sched[i+1]
		}
		if err := st.drive(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if ferr := store.SetStage(context.WithoutCancel(ctx), o.pool, it.ID, store.StageFailed, err.Error()); ferr != nil {
				o.log.Error("record iteration failure", "err", ferr)
			}
			o.log.ErrorContext(ctx, "iteration failed", "iteration", it.Name, "err", err)
			return fmt.Errorf("iteration %s failed: %w", it.Name, err)
		}
	}
	o.log.InfoContext(ctx, "run done", "run", o.cfg.Run)
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// runLock is the run's advisory lock, held on a dedicated connection. A
// database restart ends that session and with it the lock; ensure takes
// it again, and fails with ErrLocked if another orchestrator got it first.
type runLock struct {
	pool *pgxpool.Pool
	run  string
	conn *pgxpool.Conn
}

func (l *runLock) acquire(ctx context.Context) error {
	conn, err := l.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(7321, hashtext($1))`, l.run).Scan(&ok); err != nil {
		conn.Release()
		return fmt.Errorf("lock run %q: %w", l.run, err)
	}
	if !ok {
		conn.Release()
		return fmt.Errorf("%w %q: stop it first, or give this run another name", ErrLocked, l.run)
	}
	l.conn = conn
	return nil
}

// ensure checks the lock's session is alive and re-takes the lock if not.
func (l *runLock) ensure(ctx context.Context) error {
	if l.conn != nil {
		if err := l.conn.Ping(ctx); err == nil {
			return nil
		}
		l.conn.Conn().Close(ctx)
		l.conn.Release()
		l.conn = nil
	}
	return l.acquire(ctx)
}

func (l *runLock) release(ctx context.Context) {
	if l.conn == nil {
		return
	}
	_, _ = l.conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(7321, hashtext($1))`, l.run)
	l.conn.Release()
	l.conn = nil
}

// resetFailed makes a failed iteration start over: its stage back to
// pending and its failed tasks pending again. Finished work is kept.
func (o *Orchestrator) resetFailed(ctx context.Context, it store.Iteration) error {
	_, err := o.pool.Exec(ctx, `UPDATE tasks SET status = 'pending', error = NULL, publications = publications + 1, published_at = NULL
		WHERE iteration_id = $1 AND status = 'failed'`, it.ID)
	if err != nil {
		return err
	}
	_, err = o.pool.Exec(ctx, `UPDATE iterations SET stage = 'pending', error = NULL, finished_at = NULL WHERE id = $1`, it.ID)
	return err
}
