package orchestrator_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store"
)

// jetStream connects to the loop's NATS.
func (l *loop) jetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc, js, err := bus.Connect(config.NATS{URL: l.natsURL, Stream: l.stream}, "test", slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return js
}

// deploymentMessages is how many messages of the loop's deployment the
// shared stream holds.
func (l *loop) deploymentMessages(t testing.TB, js jetstream.JetStream) uint64 {
	t.Helper()
	dep, err := store.DeploymentToken(context.Background(), l.pool)
	require.NoError(t, err)
	s, err := js.Stream(context.Background(), l.stream)
	require.NoError(t, err)
	prefix := bus.DeploymentSubjects(l.stream, dep)
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(prefix+">"))
	require.NoError(t, err)
	var n uint64
	for subj, c := range info.State.Subjects {
		require.True(t, strings.HasPrefix(subj, prefix), subj)
		n += c
	}
	return n
}

// queue is the queue of the loop's run (the only one in its database).
func (l *loop) queue(t testing.TB) bus.Queue {
	t.Helper()
	dep, err := store.DeploymentToken(context.Background(), l.pool)
	require.NoError(t, err)
	q := bus.Queue{Stream: l.stream, Deployment: dep}
	require.NoError(t, l.pool.QueryRow(context.Background(), `SELECT id FROM runs`).Scan(&q.Run))
	return q
}

// watchStream samples the deployment's message count until stopped and
// returns the largest it saw.
func (l *loop) watchStream(t testing.TB, js jetstream.JetStream) (stop func() uint64) {
	var mu sync.Mutex
	var most uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			s, err := js.Stream(context.Background(), l.stream)
			if err != nil {
				continue
			}
			info, err := s.Info(context.Background())
			if err != nil {
				continue
			}
			mu.Lock()
			most = max(most, info.State.Msgs)
			mu.Unlock()
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		mu.Lock()
		defer mu.Unlock()
		return most
	}
}

// TestTasksQueuedWithNoWorkerAreNeverLost: a stage is published while no
// worker runs, for longer than five times (ack_wait × max_deliver + 30 s):
// the old rule counted a task stale that long after its publication,
// re-published it under a new id each time and failed it at the fifth, so
// the old code fails this test at its first re-publication (32 s). Every task
// waits with exactly its one message; once a worker starts every task is
// done once, none lost, none failed.
func TestTasksQueuedWithNoWorkerAreNeverLost(t *testing.T) {
	t.Parallel()
	const prompts = 30
	l := startLoop(t, loopOptions{prompts: prompts, samples: 2, ackWait: "1s", maxDeliver: 2, workerCon: 4, single: true})
	js := l.jetStream(t)
	run := l.orchestrator(t, "orchestrator")
	require.Eventually(t, func() bool {
		return l.count(t, `SELECT count(*) FROM tasks WHERE published_at IS NOT NULL`) == prompts
	}, time.Minute, 50*time.Millisecond, "the stage was never published")

	idle := time.Now()
	for time.Since(idle) < 5*(1*time.Second*2+30*time.Second)+2*time.Second {
		require.EqualValues(t, prompts, l.deploymentMessages(t, js), "one message per pending task, no more, no fewer")
		require.EqualValues(t, prompts, l.count(t, `SELECT count(*) FROM tasks WHERE status = 'pending'`))
		time.Sleep(250 * time.Millisecond)
	}
	require.Zero(t, l.count(t, `SELECT count(*) FROM tasks WHERE publications > 0 OR losses > 0 OR attempts > 0`),
		"no task was re-published or counted lost while it waited")
	require.False(t, run.Exited(), run.Tail(20))

	stop := l.watchStream(t, js)
	l.worker(t, "worker-late")
	require.NoError(t, run.Wait(2*time.Minute), run.Tail(30))
	most := stop()
	require.LessOrEqual(t, most, uint64(prompts), "the stream never held more than one message per task")
	require.EqualValues(t, prompts, l.count(t, `SELECT count(*) FROM tasks WHERE status = 'done'`))
	require.Zero(t, l.count(t, `SELECT count(*) FROM tasks WHERE publications > 0 OR losses > 0`))
	require.Zero(t, l.count(t, `SELECT count(*) - count(DISTINCT (iteration_id, prompt_id, sample_index)) FROM responses`))
	require.EqualValues(t, prompts*2, l.count(t, `SELECT count(*) FROM responses`))
	require.Zero(t, l.deploymentMessages(t, js))
}

// TestBacklogOfOneSlowWorker: 2,000 tasks, one worker of four slots, a
// model that takes its time and ack_wait 2s. The stage lasts many times
// ack_wait × max_deliver; a task waiting its turn is never taken for lost,
// and every task is done exactly once.
func TestBacklogOfOneSlowWorker(t *testing.T) {
	t.Parallel()
	const prompts = 2000
	l := startLoop(t, loopOptions{prompts: prompts, samples: 2, ackWait: "2s", maxDeliver: 2, workerCon: 4, single: true,
		lmArgs: []string{"--response-time", "20ms"}, idleWarning: "1s"})
	js := l.jetStream(t)
	stop := l.watchStream(t, js)
	l.worker(t, "worker-slow")
	start := time.Now()
	run := l.orchestrator(t, "orchestrator")
	require.NoError(t, run.Wait(5*time.Minute), run.Tail(30))
	took := time.Since(start)
	most := stop()
	require.EqualValues(t, prompts, l.count(t, `SELECT count(*) FROM tasks WHERE status = 'done'`))
	require.Zero(t, l.count(t, `SELECT count(*) FROM tasks WHERE status = 'failed'`))
	require.Zero(t, l.count(t, `SELECT coalesce(sum(losses), 0) FROM tasks`), "a queued task is never lost")
	require.Zero(t, l.count(t, `SELECT count(*) - count(DISTINCT (iteration_id, prompt_id, sample_index)) FROM responses`))
	require.EqualValues(t, prompts*2, l.count(t, `SELECT count(*) FROM responses`))
	require.Zero(t, l.count(t, `SELECT count(*) - count(DISTINCT (iteration_id, prompt_id)) FROM pairs`))
	require.LessOrEqual(t, most, uint64(prompts))
	require.NotContains(t, run.Output(), noWorkerWarning, "a busy worker is a worker: no warning")
	redelivered := l.count(t, `SELECT count(*) FROM tasks WHERE attempts > 1`)
	t.Logf("BACKLOG prompts=%d run=%s ack_wait×max_deliver=4s (%.1f×) redelivered=%d most_messages=%d",
		prompts, took.Round(100*time.Millisecond), took.Seconds()/4, redelivered, most)
}

// TestTwoDeploymentsShareAStream: two databases on the same NATS and the
// same stream name run at the same time; both finish with every task done
// once, each deployment's messages on its own subjects.
func TestTwoDeploymentsShareAStream(t *testing.T) {
	t.Parallel()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	stream := "TEST_SHARED_" + strings.ToUpper(hex.EncodeToString(b))
	const prompts = 40
	opts := loopOptions{prompts: prompts, samples: 2, ackWait: "5s", workerCon: 4, single: true, stream: stream,
		lmArgs: []string{"--response-time", "10ms"}}
	alone := startLoop(t, opts)
	a, c := startLoop(t, opts), startLoop(t, opts)
	t.Cleanup(func() {
		js := alone.jetStream(t)
		_ = js.DeleteStream(context.Background(), stream)
	})

	timeRun := func(l *loop, name string) (time.Duration, error) {
		l.worker(t, name+"-worker")
		start := time.Now()
		run := l.orchestrator(t, name)
		err := run.Wait(3 * time.Minute)
		if err != nil {
			t.Log(run.Tail(30))
		}
		return time.Since(start), err
	}
	tAlone, err := timeRun(alone, "alone")
	require.NoError(t, err)

	// While both run: one stream, one consumer per run, each filtering
	// on its own deployment's subjects.
	js := a.jetStream(t)
	s, err := js.Stream(context.Background(), stream)
	require.NoError(t, err)
	filters := map[string]bool{}
	watching, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		for {
			for c := range s.ListConsumers(context.Background()).Info() {
				filters[c.Config.FilterSubject] = true
			}
			select {
			case <-watching:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	var tA, tC time.Duration
	var errA, errC error
	wg.Go(func() { tA, errA = timeRun(a, "first") })
	wg.Go(func() { tC, errC = timeRun(c, "second") })
	wg.Wait()
	close(watching)
	<-watched
	require.NoError(t, errA)
	require.NoError(t, errC)
	for _, l := range []*loop{alone, a, c} {
		require.EqualValues(t, prompts, l.count(t, `SELECT count(*) FROM tasks WHERE status = 'done'`))
		require.Zero(t, l.count(t, `SELECT count(*) FROM tasks WHERE status = 'failed' OR losses > 0`))
		require.EqualValues(t, prompts*2, l.count(t, `SELECT count(*) FROM responses`))
	}
	require.Len(t, filters, 2, "two runs at once, two filters: %v", filters)
	for _, l := range []*loop{a, c} {
		dep, err := store.DeploymentToken(context.Background(), l.pool)
		require.NoError(t, err)
		require.True(t, filters[strings.ToLower(stream)+".tasks."+dep+".r1.>"], "%s in %v", dep, filters)
	}
	// Finished runs leave nothing in the shared stream.
	for range s.ListConsumers(context.Background()).Info() {
		t.Fatal("a finished run's consumer is still there")
	}
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	require.Zero(t, info.State.Msgs)
	t.Logf("TWO DEPLOYMENTS alone=%s together=%s and %s (%.2f× and %.2f× alone)",
		tAlone.Round(10*time.Millisecond), tA.Round(10*time.Millisecond), tC.Round(10*time.Millisecond),
		tA.Seconds()/tAlone.Seconds(), tC.Seconds()/tAlone.Seconds())
}

// TestExhaustedMessageIsRepublishedAtOnce: with max_deliver 1, a worker
// SIGKILLed while it holds tasks leaves their messages without deliveries
// left (a work queue keeps them). When the next worker pulls, the server
// announces them exhausted, and the orchestrator removes each and
// publishes its task again at once, while the rest of the stage is still
// pending (so this is not the idle-consumer backstop). The stage ends with
// no task failed or done twice, and never two messages for one task.
func TestExhaustedMessageIsRepublishedAtOnce(t *testing.T) {
	t.Parallel()
	const prompts = 16
	l := startLoop(t, loopOptions{prompts: prompts, samples: 2, ackWait: "1s", maxDeliver: 1, workerCon: 2, single: true,
		lmArgs: []string{"--response-time", "1s"}})
	js := l.jetStream(t)
	run := l.orchestrator(t, "orchestrator")
	require.Eventually(t, func() bool {
		return l.count(t, `SELECT count(*) FROM tasks WHERE published_at IS NOT NULL`) == prompts
	}, time.Minute, 50*time.Millisecond)
	cons, err := bus.RunConsumer(context.Background(), js, l.queue(t))
	require.NoError(t, err)
	stop := l.watchStream(t, js)

	w := l.worker(t, "worker-killed")
	require.Eventually(t, func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.NumAckPending == 2
	}, time.Minute, 20*time.Millisecond, "the worker never took two tasks")
	require.NoError(t, w.Signal(syscall.SIGKILL))
	w.Kill()
	held := l.count(t, `SELECT count(*) FROM tasks WHERE status = 'pending'`)

	l.worker(t, "worker-2")
	require.Eventually(t, func() bool {
		return l.count(t, `SELECT count(*) FROM tasks WHERE losses = 1 AND publications = 1`) == 2
	}, time.Minute, 50*time.Millisecond, "the two held tasks were not re-published:\n%s", run.Tail(20))
	require.Greater(t, l.count(t, `SELECT count(*) FROM tasks WHERE status = 'pending'`), int64(2),
		"re-published while the stage still had work queued")
	require.Contains(t, run.Output(), "ran out of deliveries with no outcome recorded; re-published")

	require.NoError(t, run.Wait(2*time.Minute), run.Tail(30))
	most := stop()
	require.LessOrEqual(t, most, uint64(prompts), "never two messages for one task")
	require.EqualValues(t, prompts, held, "the killed worker had finished nothing")
	require.EqualValues(t, prompts, l.count(t, `SELECT count(*) FROM tasks WHERE status = 'done'`))
	require.EqualValues(t, 2, l.count(t, `SELECT coalesce(sum(losses), 0) FROM tasks`))
	require.Zero(t, l.count(t, `SELECT count(*) - count(DISTINCT (iteration_id, prompt_id, sample_index)) FROM responses`))
	require.EqualValues(t, prompts*2, l.count(t, `SELECT count(*) FROM responses`))
	require.Zero(t, l.deploymentMessages(t, js))
}

// noWorkerWarning starts the orchestrator's warning that no worker pulls.
const noWorkerWarning = "no worker is pulling tasks"

// TestNoWorkerPullingIsWarned: tasks queued and no worker started
// (issue 22). After orchestrator.idle_warning the orchestrator warns, from
// the consumer's state (no pull request waiting, nothing in flight), how
// many tasks wait; once, not at every poll, within the minute it repeats
// at. A worker that joins then does the stage, and no warning follows.
func TestNoWorkerPullingIsWarned(t *testing.T) {
	t.Parallel()
	const prompts = 12
	l := startLoop(t, loopOptions{prompts: prompts, samples: 2, ackWait: "5s", workerCon: 2, single: true, idleWarning: "2s"})
	run := l.orchestrator(t, "orchestrator")
	require.Eventually(t, func() bool { return strings.Contains(run.Output(), noWorkerWarning) }, time.Minute, 100*time.Millisecond,
		"no warning after idle_warning with no worker:\n%s", run.Tail(20))
	// Several polls later (poll_interval 100ms), still one warning.
	published := time.Now()
	for time.Since(published) < 3*time.Second {
		require.Equal(t, 1, strings.Count(run.Output(), noWorkerWarning), run.Tail(20))
		time.Sleep(200 * time.Millisecond)
	}
	line := run.Output()[strings.Index(run.Output(), noWorkerWarning):]
	line = line[:strings.Index(line, "\n")]
	require.Contains(t, line, fmt.Sprintf("tasks_waiting=%d", prompts), line)
	require.Contains(t, line, fmt.Sprintf("messages_queued=%d", prompts), line)
	// `selfplay status` says the same from the consumer.
	require.Contains(t, l.status(t), fmt.Sprintf("workers: 0 pull requests waiting (idle workers), 0 tasks in flight, %d queued", prompts))

	w := l.worker(t, "worker-late")
	require.NoError(t, run.Wait(2*time.Minute), run.Tail(30))
	// The run is done and its consumer gone: the worker waits for another.
	require.Contains(t, l.status(t), "workers: none pulling (no run has a consumer on stream")
	require.False(t, w.Exited(), w.Tail(20))
	require.Equal(t, 1, strings.Count(run.Output(), noWorkerWarning), "no warning once a worker pulled")
	require.EqualValues(t, prompts, l.count(t, `SELECT count(*) FROM tasks WHERE status = 'done'`))
}

// status runs `selfplay status` on the loop's schedule.
func (l *loop) status(t testing.TB) string {
	t.Helper()
	p := selfplaytest.Start(t, "status", nil, "status", "-c", l.cfgPath)
	require.NoError(t, p.Wait(time.Minute), p.Tail(20))
	return p.Output()
}

// TestStoredButUnmarkedTasksAreNotPublishedTwice (issue 22): the stream
// stored a stage's messages but the orchestrator died before it marked
// half of them published (a batch cut off: storage full, a crash), and the
// next orchestrator starts after JetStream's duplicate window (1 s on this
// test's stream, two minutes on selfplay's), so publishing them again would
// not be dropped as duplicates. It reads from the stream which are there
// and marks them instead: the stream holds exactly one message per task.
func TestStoredButUnmarkedTasksAreNotPublishedTwice(t *testing.T) {
	t.Parallel()
	const prompts = 40
	l := startLoop(t, loopOptions{prompts: prompts, samples: 2, ackWait: "30s", workerCon: 4, single: true})
	js := l.jetStream(t)
	_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: l.stream,
		Subjects: []string{strings.ToLower(l.stream) + ".tasks.>"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Duplicates: time.Second})
	require.NoError(t, err)

	first := l.orchestrator(t, "orchestrator")
	require.Eventually(t, func() bool {
		return l.count(t, `SELECT count(*) FROM tasks WHERE published_at IS NOT NULL`) == prompts
	}, time.Minute, 50*time.Millisecond, first.Tail(20))
	first.Kill()
	require.EqualValues(t, prompts, l.deploymentMessages(t, js))
	_, err = l.pool.Exec(context.Background(), `UPDATE tasks SET published_at = NULL WHERE prompt_id % 2 = 0`)
	require.NoError(t, err)
	time.Sleep(1500 * time.Millisecond) // past the stream's duplicate window

	again := l.orchestrator(t, "orchestrator-again")
	require.Eventually(t, func() bool {
		return strings.Contains(again.Output(), "tasks found in the stream though never marked published")
	}, time.Minute, 50*time.Millisecond, again.Tail(20))
	require.EqualValues(t, prompts, l.count(t, `SELECT count(*) FROM tasks WHERE published_at IS NOT NULL`))
	require.EqualValues(t, prompts, l.deploymentMessages(t, js), "one message per task")

	l.worker(t, "worker")
	require.NoError(t, again.Wait(2*time.Minute), again.Tail(30))
	require.EqualValues(t, prompts, l.count(t, `SELECT count(*) FROM tasks WHERE status = 'done' AND attempts = 1`))
	require.Zero(t, l.deploymentMessages(t, js))
}
