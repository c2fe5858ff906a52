package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
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
	// PolicyScorer teacher-forces on the policy endpoint (the learning
	// check's learn tasks); nil when the worker cannot.
	PolicyScorer ReferenceScorer
	Evolver      Sampler
	// EvolverModel overrides the model used for evolution ("" = the
	// iteration's policy model).
	EvolverModel string
}

// Options configure a Worker.
type Options struct {
	// Concurrency is the number of tasks in flight; default 16.
	Concurrency int
	// MaxDeliver and AckWait are this worker's own configuration
	// (worker.max_deliver, worker.ack_wait). The worker works with the
	// consumer's, read from the broker (the orchestrator writes them from
	// the run's schedule), and says at start when its own disagree. The
	// last delivery (whose transient failure is recorded as the task's
	// failure) is the consumer's max_deliver; long calls report progress
	// every ack_wait/3 of the consumer's.
	MaxDeliver int
	AckWait    time.Duration
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

// Worker runs tasks from its deployment's run consumers, every run of its
// database that has one.
type Worker struct {
	pool    *pgxpool.Pool
	queues  *bus.Queues
	clients Clients
	opts    Options
	log     *slog.Logger

	mu       sync.Mutex
	settings map[int64]iterationInfo
	waiting  bool // said that no run has a consumer yet

	busy   atomic.Int64 // tasks in flight
	writer *writer      // records generate results; set by Run
}

// iterationInfo is what a task needs to know of its iteration.
type iterationInfo struct {
	ID       int64
	RunID    int64
	RunNonce string
	Ordinal  int
	Settings config.Settings
	// Version is the stored settings' version (store.Task.SettingsVersion)
	// when they were read; "" when read for a task's run nonce only.
	Version string
	config  []byte // the stored settings as read

}

// New builds a worker pulling from the run consumers queues follows.
func New(pool *pgxpool.Pool, queues *bus.Queues, clients Clients, opts Options, log *slog.Logger) *Worker {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 60 * time.Second
	}
	return &Worker{pool: pool, queues: queues, clients: clients, opts: opts, log: log, settings: map[int64]iterationInfo{}}
}

// fetchWait is how long one pull request waits for a message.
const fetchWait = 5 * time.Second

// refresh reads the deployment's run consumers from the broker. A consumer
// seen for the first time is logged with its settings, and with a warning
// when this worker's own configuration differs from them.
func (w *Worker) refresh(ctx context.Context) error {
	added, err := w.queues.Refresh(ctx)
	if err != nil {
		return fmt.Errorf("read the runs' consumers: %w", err)
	}
	for _, q := range added {
		w.log.InfoContext(ctx, "pulling a run's tasks", "consumer", q.Name, "ack_wait", q.AckWait, "max_deliver", q.MaxDeliver)
		if w.opts.AckWait > 0 && w.opts.AckWait != q.AckWait {
			w.log.WarnContext(ctx, "worker.ack_wait in this worker's configuration differs from the consumer's, set by the orchestrator from the run's schedule; using the consumer's",
				"consumer", q.Name, "worker.ack_wait", w.opts.AckWait, "consumer_ack_wait", q.AckWait)
		}
		if w.opts.MaxDeliver > 0 && w.opts.MaxDeliver != q.MaxDeliver {
			w.log.WarnContext(ctx, "worker.max_deliver in this worker's configuration differs from the consumer's, set by the orchestrator from the run's schedule; using the consumer's",
				"consumer", q.Name, "worker.max_deliver", w.opts.MaxDeliver, "consumer_max_deliver", q.MaxDeliver)
		}
	}
	w.mu.Lock()
	none := len(w.queues.List()) == 0
	say := none && !w.waiting
	w.waiting = none
	w.mu.Unlock()
	if say {
		w.log.InfoContext(ctx, "waiting for the orchestrator to create a run's consumer: no run of this database has one now",
			"deployment", w.queues.Deployment())
	}
	return nil
}

// watchQueues reads the run consumers again every fetchWait, and every
// second while there is none, until ctx ends, so a run started (or
// finished) after this worker is pulled from (or dropped) and a changed
// ack_wait is followed by the heartbeats.
func (w *Worker) watchQueues(ctx context.Context) {
	next := func() time.Duration {
		if len(w.queues.List()) == 0 {
			return time.Second
		}
		return fetchWait
	}
	t := time.NewTimer(next()) // Run read them just now
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := w.refresh(ctx); err != nil && ctx.Err() == nil {
				w.log.WarnContext(ctx, "could not read the runs' consumers", "err", err)
			}
			t.Reset(next())
		}
	}
}

// Run consumes tasks until ctx ends, then stops pulling, lets in-flight
// tasks finish (up to DrainTimeout) and returns. Messages are pulled only
// for free slots, as many as are free in one request, and each is started
// at once (with its heartbeat), so the worker never holds messages it is
// not working on; a message that arrives after ctx ended is handed back
// unstarted.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.refresh(ctx); err != nil {
		return err
	}
	// In-flight tasks outlive ctx by up to DrainTimeout.
	taskCtx, cancelTasks := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelTasks()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(w.opts.DrainTimeout, cancelTasks) })
	defer stop()

	// Generate results are written in batches, until the last task is
	// settled.
	wr, err := newWriter(w.pool, &w.busy, w.log)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	w.writer = wr
	writeCtx, stopWriting := context.WithCancel(taskCtx)
	written := make(chan struct{})
	go func() {
		defer close(written)
		wr.run(writeCtx)
	}()
	defer func() {
		stopWriting()
		<-written
	}()

	var wg sync.WaitGroup
	w.log.InfoContext(ctx, "worker started", "concurrency", w.opts.Concurrency, "runs", len(w.queues.List()))
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.watchQueues(ctx)
	}()
	// One token per slot: a message is pulled only for a free slot and
	// started at once on it, so the worker never holds a message it is not
	// working on.
	free := make(chan struct{}, w.opts.Concurrency)
	for range w.opts.Concurrency {
		free <- struct{}{}
	}
	start := func(msg jetstream.Msg) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.inFlight(1)
			w.handle(taskCtx, msg)
			w.inFlight(-1)
			free <- struct{}{}
		}()
	}
	turn := 0
	for {
		select {
		case <-ctx.Done():
		case <-free:
		}
		if ctx.Err() != nil {
			break
		}
		n := 1
	collect:
		for n < w.opts.Concurrency {
			select {
			case <-free:
				n++
			default:
				break collect
			}
		}
		started := w.pull(ctx, n, &turn, start)
		for range n - started {
			free <- struct{}{}
		}
	}
	wg.Wait()
	w.log.Info("worker stopped")
	return nil
}

// pull takes up to n messages for n free slots and starts each, returning
// how many it started. What the runs' consumers hold now is asked for in
// one request per consumer that does not wait (the next run first, in
// turn), so a busy worker takes a batch per request rather than one
// message; only when nothing is queued does it wait, on one consumer in
// turn, for the next message: up to fetchWait with one run, a shorter
// time with several, so no run's tasks wait for another's quiet consumer.
func (w *Worker) pull(ctx context.Context, n int, turn *int, start func(jetstream.Msg)) int {
	queues := w.queues.List()
	if len(queues) == 0 {
		// No run has a consumer: wait for one to be read.
		select {
		case <-ctx.Done():
		case <-w.queues.Changed():
		}
		return 0
	}
	*turn++
	started := 0
	if n > 1 || len(queues) > 1 {
		for i := range queues {
			if started == n {
				break
			}
			batch, err := queues[(*turn+i)%len(queues)].Consumer.FetchNoWait(n - started)
			if err == nil {
				for msg := range batch.Messages() {
					if w.begin(ctx, msg, start) {
						started++
					}
				}
				err = batch.Error()
			}
			if err != nil && !errors.Is(err, nats.ErrTimeout) {
				w.pullFailed(ctx, err)
				return started
			}
		}
		if started > 0 {
			return started
		}
	}
	wait := fetchWait
	if len(queues) > 1 {
		wait = max(fetchWait/time.Duration(len(queues)), time.Second)
	}
	msg, err := queues[*turn%len(queues)].Consumer.Next(jetstream.FetchMaxWait(wait))
	if err != nil {
		if !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			w.pullFailed(ctx, err)
		}
		return 0 // nothing queued
	}
	if w.begin(ctx, msg, start) {
		return 1
	}
	return 0
}

// begin starts a message on a free slot, or hands it back unstarted when
// it arrived after ctx ended: another worker takes it now rather than
// after ack_wait.
func (w *Worker) begin(ctx context.Context, msg jetstream.Msg, start func(jetstream.Msg)) bool {
	if ctx.Err() != nil {
		if err := msg.Nak(); err != nil {
			w.log.Warn("hand back a task on shutdown", "err", err)
		}
		return false
	}
	start(msg)
	return true
}

// pullFailed deals with a pull that failed: a consumer deleted since it
// was read (its run finished) has the consumers read again; anything else
// (the server may be restarting, and the client reconnects by itself) is
// logged, without spinning meanwhile.
func (w *Worker) pullFailed(ctx context.Context, err error) {
	if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
		if err := w.refresh(ctx); err != nil && ctx.Err() == nil {
			w.log.WarnContext(ctx, "could not read the runs' consumers", "err", err)
		}
		return
	}
	w.log.WarnContext(ctx, "pull tasks", "err", err)
	select {
	case <-ctx.Done():
	case <-time.After(250 * time.Millisecond):
	}
}

// handle runs one message to its settlement. It never panics the worker:
// a handler panic is recorded as the task's permanent failure.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg) {
	var delivered uint64 = 1
	var consumer string
	if md, err := msg.Metadata(); err == nil {
		delivered, consumer = md.NumDelivered, md.Consumer
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
		// A message of another run row (a database restored from another's
		// backup shares its deployment token) must not touch this
		// database's tasks, nor be destroyed: it may be the other's.
		info, err := w.iteration(ctx, key.IterationID, "")
		if err == nil && info.RunNonce != task.Run {
			w.leaveAlone(ctx, msg, task.Kind, log, fmt.Errorf("a task message of another run (run nonce %s, this database's run has %s)", task.Run, info.RunNonce))
			return
		}
	}
	stopBeat := w.heartbeat(ctx, msg, consumer)
	result := w.run(ctx, key, int(delivered), log)
	stopBeat()

	var foreign *foreignError
	if errors.As(result, &foreign) {
		w.leaveAlone(ctx, msg, task.Kind, log, foreign.err)
		return
	}
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
	// The run's consumer's max_deliver as it is now: the orchestrator may
	// have changed it since the message was pulled.
	q, _ := w.queues.Get(consumer)
	s, delay, derr := decide(result, delivered, uint64(max(q.MaxDeliver, 0)), fail)
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

// foreignError is a task message this worker's database cannot place.
type foreignError struct{ err error }

func (e *foreignError) Error() string { return e.err.Error() }
func (e *foreignError) Unwrap() error { return e.err }

// leaveAlone hands back a message this database cannot place without
// terminating it: it may belong to another deployment that shares this
// one's subjects (a restored copy of the database). It is redelivered
// after a minute until the consumer's max_deliver, and stays in the stream.
func (w *Worker) leaveAlone(ctx context.Context, msg jetstream.Msg, kind string, log *slog.Logger, why error) {
	log.ErrorContext(ctx, "a task message this database cannot place; leaving it alone (not terminated)", "reason", why.Error())
	w.count(kind, "foreign")
	if err := msg.NakWithDelay(time.Minute); err != nil {
		log.Warn("nak message", "err", err)
	}
}

func (w *Worker) inFlight(delta int) {
	w.busy.Add(int64(delta))
	if w.opts.OnInFlight != nil {
		w.opts.OnInFlight(delta)
	}
}

func (w *Worker) count(kind, result string) {
	if w.opts.OnTask != nil {
		w.opts.OnTask(kind, result)
	}
}

// heartbeatCap is the longest a worker goes without telling the server
// it still works on a message. A beat a second costs the server next to
// nothing, and it keeps a task alive when its orchestrator shortens the
// run's ack_wait (to 2 s, say) while the task is in flight: the server
// applies the new value to delivered messages at once, before a worker can
// read it.
const heartbeatCap = time.Second

// heartbeat tells the server the message is still being worked on, every
// third of its consumer's ack_wait and at least every heartbeatCap, until
// stopped. The ack_wait is the consumer's as last read from the broker
// (watchQueues, and each new iteration), taken anew at every beat.
func (w *Worker) heartbeat(ctx context.Context, msg jetstream.Msg, consumer string) func() {
	every := func() time.Duration {
		q, _ := w.queues.Get(consumer)
		return min(max(q.AckWait/3, 100*time.Millisecond), heartbeatCap)
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTimer(every())
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				_ = msg.InProgress()
				t.Reset(every())
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
		return &foreignError{fmt.Errorf("unknown task: %w", err)}
	}
	if err != nil {
		return Retry(0, fmt.Errorf("database: %w", err))
	}
	if task.Status != store.TaskPending {
		log.Debug("task already settled; acknowledging duplicate", "status", task.Status)
		return nil
	}
	info, err := w.iteration(ctx, key.IterationID, task.SettingsVersion)
	if err != nil {
		return Retry(0, err)
	}
	switch key.Kind {
	case bus.KindGenerate:
		return w.generate(ctx, info, key, delivered, msgs, log)
	case bus.KindEvolve:
		return w.evolve(ctx, info, key, delivered, msgs, log)
	case bus.KindLearn:
		return w.learn(ctx, key, delivered, msgs, log)
	}
	return Permanentf("unknown task kind %q", key.Kind)
}

// iteration returns the settings an iteration runs with, read from the
// database the first time and again whenever they changed: version is the
// stored settings' version as the task's own read saw it (a failed
// iteration retried with a changed schedule, a mistyped model fixed, gets
// a new one), "" to take any cached value. A running worker so always acts
// on the stored schedule as it is now, without a restart.
func (w *Worker) iteration(ctx context.Context, id int64, version string) (iterationInfo, error) {
	w.mu.Lock()
	info, ok := w.settings[id]
	w.mu.Unlock()
	if ok && (version == "" || version == info.Version) {
		return info, nil
	}
	it, err := store.GetIteration(ctx, w.pool, id)
	if err != nil {
		return iterationInfo{}, fmt.Errorf("read iteration %d: %w", id, err)
	}
	// A new iteration, or changed settings: the orchestrator may have
	// rewritten the run's consumer from the schedule since it was read.
	if err := w.refresh(ctx); err != nil {
		w.log.WarnContext(ctx, "could not refresh the consumer's settings", "err", err)
	}
	if ok && info.Version != "" && !bytes.Equal(info.config, it.Config) {
		// The version changes at every write of the row (a stage change
		// too); say so only when the settings themselves changed.
		w.log.InfoContext(ctx, "the iteration's stored settings changed; using them from now on", "iteration_id", id)
	}
	info = iterationInfo{config: it.Config, ID: it.ID, RunID: it.RunID, Ordinal: it.Ordinal, Version: version}
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
