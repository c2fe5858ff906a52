package bus_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/bus/bustest"
)

func TestDecodeTask(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"valid", `{"iteration_id":1,"prompt_id":2,"kind":"generate","publication":0}`, ""},
		{"garbage", "\x00\xffnot json", "not a task message"},
		{"unknown field", `{"iteration_id":1,"prompt_id":2,"kind":"generate","x":1}`, "unknown field"},
		{"bad kind", `{"iteration_id":1,"prompt_id":2,"kind":"train"}`, `kind "train"`},
		{"zero ids", `{"iteration_id":0,"prompt_id":2,"kind":"evolve"}`, "iteration_id"},
		{"trailing", `{"iteration_id":1,"prompt_id":2,"kind":"evolve"} {}`, "trailing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			task, err := bus.DecodeTask([]byte(tt.in))
			if tt.want == "" {
				require.NoError(t, err)
				require.Equal(t, bus.Task{IterationID: 1, PromptID: 2, Kind: "generate"}, task)
				return
			}
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func FuzzDecodeTask(f *testing.F) {
	f.Add([]byte(`{"iteration_id":1,"prompt_id":2,"kind":"generate","publication":3}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		task, err := bus.DecodeTask(data)
		if err != nil {
			return
		}
		again, err := bus.DecodeTask(task.Encode())
		require.NoError(t, err)
		require.Equal(t, task, again)
	})
}

func TestPublishIsIdempotentPerPublication(t *testing.T) {
	t.Parallel()
	cfg := bustest.NewStream(t)
	nc, js, err := bus.Connect(cfg, "test", slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer nc.Close()
	ctx := context.Background()
	opts := bus.StreamOptions{Name: cfg.Stream, Deployment: "dep1", Run: 1, AckWait: 30 * time.Second, MaxDeliver: 3}
	cons, err := bus.EnsureConsumer(ctx, js, opts)
	require.NoError(t, err)
	_, err = bus.EnsureConsumer(ctx, js, opts)
	require.NoError(t, err, "ensuring twice is fine")

	pub := bus.NewPublisher(js, opts.Queue())
	task := bus.Task{IterationID: 1, PromptID: 7, Kind: bus.KindGenerate}
	for range 3 { // an orchestrator restarting re-publishes the same publication
		require.NoError(t, pub.Publish(ctx, task))
	}
	task.Publication = 1 // a deliberate re-publish of a lost task
	require.NoError(t, pub.Publish(ctx, task))
	require.NoError(t, pub.Flush(ctx))

	stream, err := js.Stream(ctx, cfg.Stream)
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 2, info.State.Msgs)
	require.Equal(t, 2, pub.Duplicates(), "the server said which publications it dropped")

	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(2*time.Second))
	require.NoError(t, err)
	var got []bus.Task
	for msg := range batch.Messages() {
		tk, err := bus.DecodeTask(msg.Data())
		require.NoError(t, err)
		got = append(got, tk)
		require.Equal(t, strings.ToLower(cfg.Stream)+".tasks.dep1.r1.generate.1", msg.Subject())
		require.NoError(t, msg.Ack())
	}
	require.Len(t, got, 2)
	require.Equal(t, 0, got[0].Publication)
	require.Equal(t, 1, got[1].Publication)
}

// Two deployments on one stream, two runs in one of them: each run's
// consumer receives only its own run's tasks, and a worker's Queues finds
// exactly its deployment's run consumers. The consumers of older versions
// (the unfiltered "workers", and one deployment-wide "workers-<token>"),
// which a work queue would not let stand beside them, are deleted when
// idle and named in an error while they still have work.
func TestDeploymentsShareAStreamApart(t *testing.T) {
	t.Parallel()
	cfg := bustest.NewStream(t)
	nc, js, err := bus.Connect(cfg, "test", slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer nc.Close()
	ctx := context.Background()
	subjects := strings.ToLower(cfg.Stream) + ".tasks."

	legacy := func(name, filter string) {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: cfg.Stream, Subjects: []string{subjects + ">"},
			Retention: jetstream.WorkQueuePolicy, Duplicates: bus.DuplicateWindow})
		require.NoError(t, err)
		_, err = js.CreateOrUpdateConsumer(ctx, cfg.Stream, jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckExplicitPolicy,
			FilterSubject: filter})
		require.NoError(t, err)
	}
	legacy("workers", subjects+">")
	st, err := js.Stream(ctx, cfg.Stream)
	require.NoError(t, err)
	_, err = js.Publish(ctx, subjects+"generate", bus.Task{IterationID: 1, PromptID: 1, Kind: bus.KindGenerate}.Encode())
	require.NoError(t, err)
	opts := func(dep string, run int64) bus.StreamOptions {
		return bus.StreamOptions{Name: cfg.Stream, Deployment: dep, Run: run, AckWait: 30 * time.Second, MaxDeliver: 3}
	}
	_, err = bus.EnsureConsumer(ctx, js, opts("aaa", 1))
	require.ErrorContains(t, err, `the consumer "workers" of an older selfplay version, with 1 tasks queued`)
	require.NoError(t, st.Purge(ctx))
	_, err = bus.EnsureStream(ctx, js, opts("aaa", 0))
	require.NoError(t, err, "the idle unfiltered consumer is deleted")

	// The deployment-wide consumer of the version before runs had their
	// own, with a task queued and one delivered to a worker of that
	// version: the queued one is taken off it at once, the consumer kept
	// while the worker holds the other; once that is handed back, it is
	// taken off too and the consumer deleted (their tasks are found lost
	// and published again on the run's subjects).
	legacy("workers-aaa", subjects+"aaa.>")
	for id := range int64(2) {
		_, err = js.Publish(ctx, subjects+"aaa.generate.1", bus.Task{IterationID: 1, PromptID: id + 1, Kind: bus.KindGenerate}.Encode())
		require.NoError(t, err)
	}
	old, err := js.Consumer(ctx, cfg.Stream, "workers-aaa")
	require.NoError(t, err)
	m, err := old.Next(jetstream.FetchMaxWait(5 * time.Second))
	require.NoError(t, err)
	_, err = bus.EnsureConsumer(ctx, js, opts("aaa", 1))
	require.ErrorContains(t, err, `the consumer "workers-aaa" of an older selfplay version, with 0 tasks queued and 1 in flight`,
		"a worker of the old version still works on a message")
	require.NoError(t, m.Nak()) // the old worker stopped and handed it back
	queues := []bus.StreamOptions{opts("aaa", 1), opts("aaa", 2), opts("bbb", 1)}
	consumers := map[bus.Queue]jetstream.Consumer{}
	for _, o := range queues {
		cons, err := bus.EnsureConsumer(ctx, js, o)
		require.NoError(t, err, "the idle legacy consumers are deleted")
		consumers[o.Queue()] = cons
		pub := bus.NewPublisher(js, o.Queue())
		for i := range 3 {
			require.NoError(t, pub.Publish(ctx, bus.Task{IterationID: 1, PromptID: int64(i + 1), Kind: bus.KindGenerate,
				Run: fmt.Sprintf("%s-%d", o.Deployment, o.Run)}))
		}
		require.NoError(t, pub.Flush(ctx))
	}
	for _, name := range []string{"workers", "workers-aaa"} {
		_, err = js.Consumer(ctx, cfg.Stream, name)
		require.ErrorIs(t, err, jetstream.ErrConsumerNotFound, name)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subjects+"aaa.generate.>"))
	require.NoError(t, err)
	require.Empty(t, info.State.Subjects, "the old consumer's leftover was purged with it")
	for q, cons := range consumers {
		batch, err := cons.Fetch(10, jetstream.FetchMaxWait(time.Second))
		require.NoError(t, err)
		n := 0
		for msg := range batch.Messages() {
			tk, err := bus.DecodeTask(msg.Data())
			require.NoError(t, err)
			require.Equal(t, fmt.Sprintf("%s-%d", q.Deployment, q.Run), tk.Run, "a consumer sees only its run's tasks")
			require.NoError(t, msg.Ack())
			n++
		}
		require.Equal(t, 3, n, q)
		bound, err := bus.RunConsumer(ctx, js, q)
		require.NoError(t, err)
		require.Equal(t, 3, bound.CachedInfo().Config.MaxDeliver, "workers bind to what the orchestrator wrote")
	}
	_, err = bus.RunConsumer(ctx, js, bus.Queue{Stream: cfg.Stream, Deployment: "ccc", Run: 1})
	require.ErrorIs(t, err, jetstream.ErrConsumerNotFound)

	found := bus.NewQueues(js, cfg.Stream, "aaa")
	added, err := found.Refresh(ctx)
	require.NoError(t, err)
	require.Len(t, added, 2)
	var runs []int64
	for _, q := range found.List() {
		runs = append(runs, q.Run)
		require.Equal(t, 30*time.Second, q.AckWait)
	}
	require.Equal(t, []int64{1, 2}, runs, "deployment aaa's two runs, not bbb's")
	changed := found.Changed()
	require.NoError(t, bus.DeleteQueue(ctx, js, opts("aaa", 1).Queue()))
	added, err = found.Refresh(ctx)
	require.NoError(t, err)
	require.Empty(t, added)
	require.Len(t, found.List(), 1)
	require.Equal(t, int64(2), found.List()[0].Run)
	select {
	case <-changed:
	default:
		t.Fatal("a deleted run consumer is a change")
	}
}

// TestSharedStreamIsNeverChanged (issue 22): deployment A makes the
// stream with three replicas on a three-node cluster; deployment B (another
// database, the same stream name) with nats.replicas 1 is refused with
// both values, and A's stream keeps its three replicas. B with the stream's
// own value shares it.
func TestSharedStreamIsNeverChanged(t *testing.T) {
	t.Parallel()
	c := bustest.StartCluster(t, 3)
	cfg := bustest.NewStream(t)
	cfg.URL = c.URL()
	nc, js, err := bus.Connect(cfg, "test", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer nc.Close()
	ctx := context.Background()
	opts := func(dep string, replicas int) bus.StreamOptions {
		return bus.StreamOptions{Name: cfg.Stream, Deployment: dep, AckWait: 30 * time.Second, MaxDeliver: 3, Replicas: replicas}
	}
	_, err = bus.EnsureStream(ctx, js, opts("deploya", 3))
	require.NoError(t, err)

	_, err = bus.EnsureStream(ctx, js, opts("deployb", 1))
	require.ErrorIs(t, err, bus.ErrStreamSettingsDiffer)
	require.ErrorContains(t, err, fmt.Sprintf("stream %s has 3 replicas and this schedule's nats.replicas is 1", cfg.Stream))
	s, err := js.Stream(ctx, cfg.Stream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, info.Config.Replicas, "deployment A's stream kept its replicas")
	_, err = bus.EnsureConsumer(ctx, js, bus.StreamOptions{Name: cfg.Stream, Deployment: "deployb", Run: 1, Replicas: 1})
	require.ErrorIs(t, err, bus.ErrStreamSettingsDiffer, "nor is B's run consumer made")

	_, err = bus.EnsureStream(ctx, js, opts("deployb", 3))
	require.NoError(t, err, "B with the stream's replicas shares it")
	_, err = bus.EnsureStream(ctx, js, opts("deploya", 3))
	require.NoError(t, err, "A again")
}

// TestRunsHaveTheirOwnConsumers (issue 22): two runs of one database.
// Run 1 has a task in flight under ack_wait 30s; run 2 starts with
// ack_wait 1s and max_deliver 2. Run 1's consumer keeps its settings, so
// its in-flight task is not redelivered once run 2's shorter ack_wait has
// passed several times; run 2's own task is redelivered under its 1s. The
// same run's orchestrator changing its own consumer is applied, busy or
// not (workers follow the new ack_wait).
func TestRunsHaveTheirOwnConsumers(t *testing.T) {
	t.Parallel()
	cfg := bustest.NewStream(t)
	nc, js, err := bus.Connect(cfg, "test", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer nc.Close()
	ctx := context.Background()
	one := bus.StreamOptions{Name: cfg.Stream, Deployment: "dep1", Run: 1, AckWait: 30 * time.Second, MaxDeliver: 5}
	two := bus.StreamOptions{Name: cfg.Stream, Deployment: "dep1", Run: 2, AckWait: time.Second, MaxDeliver: 2}
	consOne, err := bus.EnsureConsumer(ctx, js, one)
	require.NoError(t, err)
	consTwo, err := bus.EnsureConsumer(ctx, js, two)
	require.NoError(t, err)
	for _, o := range []bus.StreamOptions{one, two} {
		pub := bus.NewPublisher(js, o.Queue())
		require.NoError(t, pub.Publish(ctx, bus.Task{IterationID: o.Run, PromptID: 1, Kind: bus.KindGenerate}))
		require.NoError(t, pub.Flush(ctx))
	}
	msgOne, err := consOne.Next(jetstream.FetchMaxWait(5 * time.Second))
	require.NoError(t, err)
	_, err = consTwo.Next(jetstream.FetchMaxWait(5 * time.Second))
	require.NoError(t, err)
	// Run 2's message comes back under its own 1s ack_wait ...
	again, err := consTwo.Next(jetstream.FetchMaxWait(10 * time.Second))
	require.NoError(t, err)
	md, err := again.Metadata()
	require.NoError(t, err)
	require.EqualValues(t, 2, md.NumDelivered)
	// ... while run 1's, well past that, is still in flight once.
	info, err := consOne.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, 30*time.Second, info.Config.AckWait)
	require.Equal(t, 1, info.NumAckPending)
	require.Zero(t, info.NumRedelivered)

	changed := one
	changed.AckWait = 20 * time.Second
	_, err = bus.EnsureConsumer(ctx, js, changed)
	require.NoError(t, err, "the run's own orchestrator may change its consumer while busy")
	info, err = consOne.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, 20*time.Second, info.Config.AckWait)
	require.NoError(t, msgOne.DoubleAck(ctx))
}
