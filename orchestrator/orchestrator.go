package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

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
	js   jetstream.JetStream
	opts Options
	log  *slog.Logger
	lk   *runLock

	// Set at the start of Run: the database's deployment token, the
	// consumer of its workers and the publisher of its tasks.
	deployment string
	cons       jetstream.Consumer
	pub        *bus.Publisher
}

// New builds an orchestrator that publishes to cfg.NATS.Stream through js.
func New(cfg *config.Config, pool *pgxpool.Pool, js jetstream.JetStream, opts Options, log *slog.Logger) *Orchestrator {
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return &Orchestrator{cfg: cfg, pool: pool, js: js, opts: opts, log: log}
}

// lockCheckEvery is how often the run lock's session is proved alive.
const lockCheckEvery = 2 * time.Second

// Run drives every iteration of the schedule to done, resuming from the
// stored stages. It returns the first iteration failure, or ctx's error.
// Losing the run lock (its database session ended) stops the run's work
// without recording anything for the iteration; Run then takes the lock
// again and resumes from the stored stage, or returns ErrLocked if another
// orchestrator took it meanwhile.
func (o *Orchestrator) Run(ctx context.Context) error {
	o.lk = &runLock{pool: o.pool, run: o.cfg.Run}
	if err := o.lk.acquire(ctx); err != nil {
		return err
	}
	defer o.lk.release(ctx)
	for {
		lockCtx, lost := context.WithCancelCause(ctx)
		go o.lk.keep(lockCtx, lockCheckEvery, lost)
		err := o.runLocked(lockCtx)
		lost(nil)
		var ll *lockLostError
		if ctx.Err() != nil || !errors.As(context.Cause(lockCtx), &ll) {
			return err
		}
		o.log.WarnContext(ctx, "stopped this run's work: its lock was lost; taking it again", "run", o.cfg.Run, "cause", ll.err)
		if err := o.retake(ctx); err != nil {
			return err
		}
		o.log.InfoContext(ctx, "run lock taken again; resuming from the stored stage", "run", o.cfg.Run)
	}
}

// retake takes the run lock again after its session ended: through an
// outage for up to orchestrator.outage_timeout, and giving another
// orchestrator's hold a few seconds (the old session may still be closing).
func (o *Orchestrator) retake(ctx context.Context) error {
	o.lk.drop(ctx)
	for tries := 0; ; tries++ {
		err := o.riding(ctx, "take the run lock again", func() error { return o.lk.acquire(ctx) })
		if err == nil || !errors.Is(err, ErrLocked) || tries >= 10 {
			if errors.Is(err, ErrLocked) {
				return fmt.Errorf("run %q lost its lock when its database session ended, and another orchestrator holds it now; "+
					"this one stops without touching the run: %w", o.cfg.Run, err)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// runLocked does the run's work while the lock is held (ctx ends when it
// is lost).
func (o *Orchestrator) runLocked(ctx context.Context) error {
	if err := o.riding(ctx, "bind the task queue", func() error { return o.bindQueue(ctx) }); err != nil {
		return err
	}
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
			var ll *lockLostError
			if ctx.Err() != nil || errors.As(err, &ll) {
				// Stopped, or the lock is gone: the iteration may be
				// another orchestrator's now; record nothing for it.
				return err
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

// bindQueue reads the database's deployment token, makes sure of the
// stream and writes the deployment's consumer from the schedule's worker
// settings (the orchestrator owns it; workers bind and take its settings).
func (o *Orchestrator) bindQueue(ctx context.Context) error {
	dep, err := store.DeploymentToken(ctx, o.pool)
	if err != nil {
		return err
	}
	cons, err := bus.EnsureStream(ctx, o.js, bus.StreamOptions{
		Name: o.cfg.NATS.Stream, Deployment: dep, Replicas: o.cfg.NATS.Replicas,
		AckWait: o.cfg.Worker.AckWait, MaxDeliver: o.cfg.Worker.MaxDeliver,
	})
	if err != nil {
		return err
	}
	o.deployment, o.cons = dep, cons
	o.pub = bus.NewPublisher(o.js, o.cfg.NATS.Stream, dep)
	o.log.InfoContext(ctx, "task queue", "stream", o.cfg.NATS.Stream, "deployment", dep,
		"subjects", bus.DeploymentSubjects(o.cfg.NATS.Stream, dep)+">", "consumer", bus.ConsumerName(dep))
	return nil
}

// lockLostError is the cause a run's work is cancelled with when its lock's
// database session is gone.
type lockLostError struct{ err error }

func (e *lockLostError) Error() string {
	return "the run lock was lost with its database session: " + e.err.Error()
}
func (e *lockLostError) Unwrap() error { return e.err }

// runLock is the run's advisory lock, held on a connection taken out of
// the pool, so nothing but the lock ever uses its session. A database
// restart ends that session and with it the lock; keep notices within
// lockCheckEvery and cancels the run's work.
type runLock struct {
	pool *pgxpool.Pool
	run  string

	mu   sync.Mutex
	conn *pgx.Conn
}

func (l *runLock) acquire(ctx context.Context) error {
	pc, err := l.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	conn := pc.Hijack()
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(7321, hashtext($1))`, l.run).Scan(&ok); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return fmt.Errorf("lock run %q: %w", l.run, err)
	}
	if !ok {
		conn.Close(context.WithoutCancel(ctx))
		return fmt.Errorf("%w %q: stop it first, or give this run another name", ErrLocked, l.run)
	}
	l.mu.Lock()
	l.conn = conn
	l.mu.Unlock()
	return nil
}

// keep proves every interval that the lock's session is alive, and cancels
// the run's work with a lockLostError as soon as it cannot.
func (l *runLock) keep(ctx context.Context, every time.Duration, lost context.CancelCauseFunc) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		conn := l.conn
		l.mu.Unlock()
		if conn == nil {
			lost(&lockLostError{errors.New("no lock connection")})
			return
		}
		// A generous bound: a slow answer on a busy server is not a lost
		// session; a closed one fails at once.
		pctx, cancel := context.WithTimeout(ctx, 5*every)
		err := conn.Ping(pctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			lost(&lockLostError{err})
			return
		}
	}
}

// drop closes the lock's connection (ending its session, and the lock
// with it if it still held it).
func (l *runLock) drop(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		_ = l.conn.Close(context.WithoutCancel(ctx))
		l.conn = nil
	}
}

func (l *runLock) release(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return
	}
	_, _ = l.conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(7321, hashtext($1))`, l.run)
	_ = l.conn.Close(context.WithoutCancel(ctx))
	l.conn = nil
}

// resetFailed makes a failed iteration start over: its stage back to
// pending and its failed tasks pending again with fresh counters. Finished
// work is kept.
func (o *Orchestrator) resetFailed(ctx context.Context, it store.Iteration) error {
	if _, err := store.RetryFailedTasks(ctx, o.pool, it.ID); err != nil {
		return err
	}
	_, err := o.pool.Exec(ctx, `UPDATE iterations SET stage = 'pending', error = NULL, finished_at = NULL WHERE id = $1`, it.ID)
	return err
}
