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
	"github.com/selfplay/selfplay/decontam"
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

	// Set at the start of Run: the database's deployment token; once the
	// run's row exists, the run's queue, its consumer and the publisher
	// of its tasks.
	deployment string
	queue      bus.Queue
	cons       jetstream.Consumer
	pub        *bus.Publisher
	// bench is the n-gram set of decontaminate.files, nil without them.
	bench *decontam.Set
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
// The run lock is watched while the run works (runLock.keep): a session of
// its own that stalls, is partitioned or ends (a database restart) is
// replaced without stopping anything, the train hook included; only when
// another orchestrator really holds the lock is the run's work stopped,
// recording nothing for the iteration, and Run returns ErrLocked.
func (o *Orchestrator) Run(ctx context.Context) error {
	o.lk = &runLock{pool: o.pool, run: o.cfg.Run, log: o.log}
	if err := o.lk.acquire(ctx); err != nil {
		return err
	}
	defer o.lk.release(ctx)
	lockCtx, lost := context.WithCancelCause(ctx)
	defer lost(nil)
	go o.lk.keep(lockCtx, lockCheckEvery, lost)
	err := o.runLocked(lockCtx)
	var ll *lockLostError
	if ctx.Err() == nil && errors.As(context.Cause(lockCtx), &ll) {
		return fmt.Errorf("run %q: %w: %w; this one stopped without touching the run", o.cfg.Run, ErrLocked, ll)
	}
	return err
}

// runLocked does the run's work while the lock is held (ctx ends when it
// is lost).
func (o *Orchestrator) runLocked(ctx context.Context) error {
	if err := o.buildBenchmark(ctx); err != nil {
		return err
	}
	if err := o.riding(ctx, "check the task stream", func() error { return o.checkStream(ctx) }); err != nil {
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
	err = o.riding(ctx, "bind the run's task queue", func() error { return o.bindQueue(ctx, run.ID) })
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
	// Nothing of the run is left to deliver: its consumer goes, with any
	// message that ran out of deliveries, so the stream keeps no trace of
	// finished runs. A failure here costs nothing but the leftovers.
	if err := bus.DeleteQueue(ctx, o.js, o.queue); err != nil {
		o.log.WarnContext(ctx, "could not remove the finished run's consumer", "consumer", o.queue.Consumer(), "err", err)
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// checkStream reads the database's deployment token and makes sure of
// the stream, before anything of the run is stored: a stream with other
// settings is refused first.
func (o *Orchestrator) checkStream(ctx context.Context) error {
	dep, err := store.DeploymentToken(ctx, o.pool)
	if err != nil {
		return err
	}
	if _, err := bus.EnsureStream(ctx, o.js, o.streamOptions(dep, 0)); err != nil {
		return err
	}
	o.deployment = dep
	return nil
}

// streamOptions are the stream's and the run's consumer's settings from
// the schedule.
func (o *Orchestrator) streamOptions(dep string, run int64) bus.StreamOptions {
	return bus.StreamOptions{Name: o.cfg.NATS.Stream, Deployment: dep, Run: run, Replicas: o.cfg.NATS.Replicas,
		AckWait: o.cfg.Worker.AckWait, MaxDeliver: o.cfg.Worker.MaxDeliver}
}

// bindQueue writes the run's own consumer from the schedule's worker
// settings (the orchestrator owns it; workers find it and take its
// settings from the broker).
func (o *Orchestrator) bindQueue(ctx context.Context, run int64) error {
	opts := o.streamOptions(o.deployment, run)
	cons, err := bus.EnsureConsumer(ctx, o.js, opts)
	if err != nil {
		return err
	}
	o.queue, o.cons = opts.Queue(), cons
	o.pub = bus.NewPublisher(o.js, o.queue)
	o.log.InfoContext(ctx, "task queue", "stream", o.cfg.NATS.Stream, "deployment", o.deployment,
		"subjects", o.queue.Prefix()+">", "consumer", o.queue.Consumer(),
		"ack_wait", o.cfg.Worker.AckWait, "max_deliver", o.cfg.Worker.MaxDeliver)
	return nil
}

// lockLostError is the cause a run's work is cancelled with when another
// session — another orchestrator — holds the run's lock.
type lockLostError struct{ err error }

func (e *lockLostError) Error() string {
	return "the run lock was taken: " + e.err.Error()
}
func (e *lockLostError) Unwrap() error { return e.err }

// runLock is the run's advisory lock, held on a connection taken out of
// the pool, so nothing but the lock ever uses its session.
type runLock struct {
	pool *pgxpool.Pool
	run  string
	log  *slog.Logger

	mu   sync.Mutex
	conn *pgx.Conn
	pid  uint32 // the backend of conn's session
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
	l.conn, l.pid = conn, conn.PgConn().PID()
	l.mu.Unlock()
	return nil
}

// keep proves every interval that the lock's session is alive. When it is
// not — no answer within five intervals, or the connection is gone — what
// that means is read from pg_locks through another connection, never from
// the time that passed: the lock free (the session ended) is taken again on
// a new connection; held by this orchestrator's own old backend (a stalled
// or partitioned session, which still holds it) that backend is ended with
// pg_terminate_backend and the lock taken once it is gone; held by any
// other backend, another orchestrator has the run: the run's work is
// cancelled with a lockLostError. While the database cannot be asked, the
// run goes on (its stages ride out outages by themselves) and keep asks
// again at the next interval.
func (l *runLock) keep(ctx context.Context, every time.Duration, lost context.CancelCauseFunc) {
	t := time.NewTicker(every)
	defer t.Stop()
	stalled, ending := false, false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		conn, pid := l.conn, l.pid
		l.mu.Unlock()
		if !stalled {
			// A generous bound: a slow answer on a busy server is not a
			// lost session; a closed one fails at once.
			pctx, cancel := context.WithTimeout(ctx, 5*every)
			err := conn.Ping(pctx)
			cancel()
			if err == nil || ctx.Err() != nil {
				continue
			}
			stalled = true
			l.log.WarnContext(ctx, "the run lock's database session does not answer; asking the database who holds the lock",
				"run", l.run, "backend_pid", pid, "err", err)
		}
		holder, err := l.holder(ctx, every)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			l.log.WarnContext(ctx, "cannot ask the database who holds the run lock; the run goes on and asks again", "run", l.run, "err", err)
		case holder == 0:
			if err := l.retake(ctx, every); err != nil {
				l.log.WarnContext(ctx, "take the run lock again", "run", l.run, "err", err)
				continue
			}
			stalled, ending = false, false
			l.log.InfoContext(ctx, "run lock taken again on a new database session; the run went on", "run", l.run, "old_backend_pid", pid)
		case holder == pid:
			if !ending {
				l.log.WarnContext(ctx, "the run lock is held by this orchestrator's own stalled session; ending it to take the lock again",
					"run", l.run, "backend_pid", pid)
				ending = true
			}
			tctx, cancel := context.WithTimeout(ctx, every)
			_, err := l.pool.Exec(tctx, `SELECT pg_terminate_backend($1)`, int64(pid))
			cancel()
			if err != nil {
				l.log.WarnContext(ctx, "end the stalled session", "run", l.run, "backend_pid", pid, "err", err)
			}
		default:
			lost(&lockLostError{fmt.Errorf("another session (backend pid %d, not this orchestrator's %d) holds it: another orchestrator runs %q", holder, pid, l.run)})
			return
		}
	}
}

// holder returns the backend pid holding the run's advisory lock in this
// database, 0 when nobody does (the two-key form: classid is the first
// key, objid the second as an unsigned 32-bit number, objsubid 2).
func (l *runLock) holder(ctx context.Context, timeout time.Duration) (uint32, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var pid int64
	err := l.pool.QueryRow(ctx, `
		SELECT coalesce(min(pid), 0) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 2
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND classid = 7321 AND objid::bigint = (hashtext($1)::bigint & 4294967295)`, l.run).Scan(&pid)
	if err != nil {
		return 0, fmt.Errorf("read pg_locks: %w", err)
	}
	return uint32(pid), nil
}

// retake takes the lock on a new connection and closes the old one.
func (l *runLock) retake(ctx context.Context, timeout time.Duration) error {
	l.mu.Lock()
	old := l.conn
	l.mu.Unlock()
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := l.acquire(actx); err != nil {
		return err
	}
	if old != nil {
		// Its session is gone or ended: closing it waits for nothing.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = old.Close(cctx)
		cancel()
	}
	return nil
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
