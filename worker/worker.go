package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/llm"
	"github.com/selfplay/selfplay/store"
)

// Sampler draws responses from a policy (or evolver) model; *llm.Policy
// satisfies it.
type Sampler interface {
	Sample(ctx context.Context, msgs []llm.Message, sp llm.SampleParams) ([]llm.Sample, error)
}

// Rewarder scores responses to one prompt in one call; *llm.Reward
// satisfies it.
type Rewarder interface {
	Score(ctx context.Context, msgs []llm.Message, responses []string) ([]float64, error)
}

// ReferenceScorer computes teacher-forced log-probs; *llm.Reference
// satisfies it.
type ReferenceScorer interface {
	LogProbSample(ctx context.Context, model string, msgs []llm.Message, s llm.Sample) (float64, error)
}

// Clients are the servers a worker talks to. Reference is nil when no
// reference endpoint is configured; Evolver may be the Policy.
type Clients struct {
	Policy    Sampler
	Reward    Rewarder
	Reference ReferenceScorer
	Evolver   Sampler
	// EvolverModel overrides the model used for evolution ("" = the
	// iteration's policy model).
	EvolverModel string
}

// Options configure a Worker.
type Options struct {
	// Concurrency is the number of tasks in flight; default 16.
	Concurrency int
	// MaxDeliver must match the consumer's; the last delivery's transient
	// failure is recorded as the task's failure.
	MaxDeliver int
	// AckWait must match the consumer's; long calls report progress every
	// AckWait/3 so the message is not redelivered while work goes on.
	AckWait time.Duration
	// DrainTimeout bounds how long in-flight tasks may run after the
	// worker is told to stop; default 60s. Unfinished ones are nak'ed.
	DrainTimeout time.Duration
	// OnTask is called when a task settles, with its kind and result (done,
	// failed, retry, interrupted or term); optional, for metrics. It runs on
	// the task's goroutine, so it must be safe for concurrent use.
	OnTask func(kind, result string)
	// OnInFlight is called with +1 when a task starts and −1 when it
	// settles; optional, for an in-flight gauge. Safe-for-concurrent-use
	// rules as for OnTask.
	OnInFlight func(delta int)
}

// Worker runs tasks from the shared consumer.
type Worker struct {
	pool    *pgxpool.Pool
	cons    jetstream.Consumer
	clients Clients
	opts    Options
	log     *slog.Logger

	mu       sync.Mutex
	settings map[int64]iterationInfo
}

// iterationInfo is what a task needs to know of its iteration.
type iterationInfo struct {
	ID       int64
	RunID    int64
	RunNonce string
	Ordinal  int
	Settings config.Settings
}

// New builds a worker.
func New(pool *pgxpool.Pool, cons jetstream.Consumer, clients Clients, opts Options, log *slog.Logger) *Worker {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 60 * time.Second
	}
	if opts.AckWait <= 0 {
		opts.AckWait = 10 * time.Minute
	}
	return &Worker{pool: pool, cons: cons, clients: clients, opts: opts, log: log, settings: map[int64]iterationInfo{}}
}

// Run consumes tasks until ctx ends, then stops pulling, lets in-flight
// tasks finish (up to DrainTimeout) and returns.
func (w *Worker) Run(ctx context.Context) error {
	iter, err := w.cons.Messages(jetstream.PullMaxMessages(w.opts.Concurrency))
	if err != nil {
		return fmt.Errorf("consume tasks: %w", err)
	}
	// In-flight tasks outlive ctx by up to DrainTimeout.
	taskCtx, cancelTasks := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelTasks()
	go func() {
		<-ctx.Done()
		// Drain: stop pulling, but hand out what is already buffered so
		// those tasks are not left waiting for their ack deadline.
		iter.Drain()
		time.AfterFunc(w.opts.DrainTimeout, cancelTasks)
	}()

	slots := make(chan struct{}, w.opts.Concurrency)
	var wg sync.WaitGroup
	w.log.InfoContext(ctx, "worker started", "concurrency", w.opts.Concurrency)
	for {
		msg, err := iter.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				break
			}
			// The server may be restarting: the client reconnects by
			// itself; do not spin meanwhile.
			w.log.WarnContext(ctx, "pull tasks", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
			continue
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			w.inFlight(1)
			defer w.inFlight(-1)
			w.handle(taskCtx, msg)
		}()
	}
	wg.Wait()
	w.log.Info("worker stopped")
	return nil
}

// handle runs one message to its settlement. It never panics the worker:
// a handler panic is recorded as the task's permanent failure.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg) {
	var delivered uint64 = 1
	if md, err := msg.Metadata(); err == nil {
		delivered = md.NumDelivered
	}
	task, err := bus.DecodeTask(msg.Data())
	if err != nil {
		w.log.WarnContext(ctx, "terminating message that is not a task", "subject", msg.Subject(), "reason", err.Error())
		w.count("invalid", "term")
		if err := msg.Term(); err != nil {
			w.log.WarnContext(ctx, "term invalid message", "err", err)
		}
		return
	}
	key := store.TaskKey{IterationID: task.IterationID, PromptID: task.PromptID, Kind: task.Kind}
	log := w.log.With("iteration_id", task.IterationID, "prompt_id", task.PromptID, "kind", task.Kind, "delivery", delivered)
	if task.Run != "" {
		// A message of another run row (an older database behind the
		// same stream) must not touch this database's tasks.
		info, err := w.iteration(ctx, key.IterationID)
		if err == nil && info.RunNonce != task.Run {
			log.WarnContext(ctx, "terminating a task message of another run (a stream older than its database?)", "message_run", task.Run)
			w.count(task.Kind, "term")
			if err := msg.Term(); err != nil {
				log.Warn("term message", "err", err)
			}
			return
		}
	}

	stopBeat := w.heartbeat(ctx, msg)
	result := w.run(ctx, key, int(delivered), log)
	stopBeat()

	if ctx.Err() != nil && result != nil {
		// Stopping: leave the task to another worker right away.
		if err := msg.NakWithDelay(0); err != nil {
			log.Warn("nak on shutdown", "err", err)
		}
		w.count(task.Kind, "interrupted")
		return
	}
	fail := func(reason string) error {
		return store.FailTask(context.WithoutCancel(ctx), w.pool, key, failure(reason, result), int(delivered))
	}
	s, delay, derr := decide(result, delivered, uint64(w.opts.MaxDeliver), fail)
	if derr != nil {
		log.Warn("could not record task failure", "err", derr)
	}
	switch s {
	case settledAck:
		w.count(task.Kind, "done")
	case settledTerm:
		log.Warn("task failed", "reason", result.Error())
		w.count(task.Kind, "failed")
	default:
		log.Info("task will be retried", "after", delay, "reason", result.Error())
		w.count(task.Kind, "retry")
	}
	if err := settle(msg, s, delay); err != nil {
		log.Warn("settle message", "result", string(s), "err", err)
	}
}

func (w *Worker) inFlight(delta int) {
	if w.opts.OnInFlight != nil {
		w.opts.OnInFlight(delta)
	}
}

func (w *Worker) count(kind, result string) {
	if w.opts.OnTask != nil {
		w.opts.OnTask(kind, result)
	}
}

// heartbeat tells the server the message is still being worked on, every
// AckWait/3, until stopped.
func (w *Worker) heartbeat(ctx context.Context, msg jetstream.Msg) func() {
	every := max(w.opts.AckWait/3, 100*time.Millisecond)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() { close(done) }
}

// run dispatches a task to its handler, translating what can go wrong
// around it (unknown ids, database trouble, panics) into outcomes.
func (w *Worker) run(ctx context.Context, key store.TaskKey, delivered int, log *slog.Logger) (result error) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("task handler panicked", "panic", r)
			result = Permanentf("internal error: %v", r)
		}
	}()
	task, msgs, err := store.ReadTask(ctx, w.pool, key)
	if errors.Is(err, store.ErrNotFound) {
		return Permanent(fmt.Errorf("unknown task: %w", err))
	}
	if err != nil {
		return Retry(0, fmt.Errorf("database: %w", err))
	}
	if task.Status != store.TaskPending {
		log.Debug("task already settled; acknowledging duplicate", "status", task.Status)
		return nil
	}
	info, err := w.iteration(ctx, key.IterationID)
	if err != nil {
		return Retry(0, err)
	}
	switch key.Kind {
	case bus.KindGenerate:
		return w.generate(ctx, info, key, delivered, msgs, log)
	case bus.KindEvolve:
		return w.evolve(ctx, info, key, delivered, msgs, log)
	}
	return Permanentf("unknown task kind %q", key.Kind)
}

// iteration reads (once per worker) the settings an iteration runs with.
func (w *Worker) iteration(ctx context.Context, id int64) (iterationInfo, error) {
	w.mu.Lock()
	info, ok := w.settings[id]
	w.mu.Unlock()
	if ok {
		return info, nil
	}
	it, err := store.GetIteration(ctx, w.pool, id)
	if err != nil {
		return iterationInfo{}, fmt.Errorf("read iteration %d: %w", id, err)
	}
	info = iterationInfo{ID: it.ID, RunID: it.RunID, Ordinal: it.Ordinal}
	if info.RunNonce, err = store.RunNonce(ctx, w.pool, it.RunID); err != nil {
		return iterationInfo{}, err
	}
	if err := json.Unmarshal(it.Config, &info.Settings); err != nil {
		return iterationInfo{}, fmt.Errorf("iteration %d settings: %w", id, err)
	}
	w.mu.Lock()
	w.settings[id] = info
	w.mu.Unlock()
	return info, nil
}

// classify turns a client error into a handler outcome: permanent errors
// fail the task, transient ones retry after the server's hint.
func classify(what string, err error) error {
	if llm.IsPermanent(err) {
		return Permanent(fmt.Errorf("%s: %w", what, err))
	}
	return Retry(llm.RetryAfterOf(err), fmt.Errorf("%s: %w", what, err))
}
