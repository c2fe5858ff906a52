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
	cons, err := bus.EnsureStream(ctx, js, bus.StreamOptions{Name: cfg.Stream, Deployment: "dep1", AckWait: 30 * time.Second, MaxDeliver: 3})
	require.NoError(t, err)
	_, err = bus.EnsureStream(ctx, js, bus.StreamOptions{Name: cfg.Stream, Deployment: "dep1", AckWait: 30 * time.Second, MaxDeliver: 3})
	require.NoError(t, err, "ensuring twice is fine")

	pub := bus.NewPublisher(js, cfg.Stream, "dep1")
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
		require.Equal(t, bus.Subject(cfg.Stream, "dep1", "generate", 1), msg.Subject())
		require.NoError(t, msg.Ack())
	}
	require.Len(t, got, 2)
	require.Equal(t, 0, got[0].Publication)
	require.Equal(t, 1, got[1].Publication)
}

// Two deployments on one stream: each consumer receives only its own
// deployment's tasks. The unfiltered consumer of older versions, which a
// work queue would not let stand beside them, is deleted when idle and
// named in an error while it still has work.
func TestDeploymentsShareAStreamApart(t *testing.T) {
	t.Parallel()
	cfg := bustest.NewStream(t)
	nc, js, err := bus.Connect(cfg, "test", slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer nc.Close()
	ctx := context.Background()

	legacy := func() {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: cfg.Stream, Subjects: []string{strings.ToLower(cfg.Stream) + ".tasks.>"},
			Retention: jetstream.WorkQueuePolicy, Duplicates: bus.DuplicateWindow})
		require.NoError(t, err)
		_, err = js.CreateOrUpdateConsumer(ctx, cfg.Stream, jetstream.ConsumerConfig{Durable: "workers", AckPolicy: jetstream.AckExplicitPolicy,
			FilterSubject: strings.ToLower(cfg.Stream) + ".tasks.>"})
		require.NoError(t, err)
	}
	legacy()
	_, err = js.Publish(ctx, strings.ToLower(cfg.Stream)+".tasks.generate", bus.Task{IterationID: 1, PromptID: 1, Kind: bus.KindGenerate}.Encode())
	require.NoError(t, err)
	_, err = bus.EnsureStream(ctx, js, bus.StreamOptions{Name: cfg.Stream, Deployment: "aaa", AckWait: 30 * time.Second, MaxDeliver: 3})
	require.ErrorContains(t, err, `the consumer "workers" of an older selfplay version, with 1 tasks queued`)
	st, err := js.Stream(ctx, cfg.Stream)
	require.NoError(t, err)
	require.NoError(t, st.Purge(ctx))

	consumers := map[string]jetstream.Consumer{}
	for _, dep := range []string{"aaa", "bbb"} {
		cons, err := bus.EnsureStream(ctx, js, bus.StreamOptions{Name: cfg.Stream, Deployment: dep, AckWait: 30 * time.Second, MaxDeliver: 3})
		require.NoError(t, err, "the idle legacy consumer is deleted")
		consumers[dep] = cons
		pub := bus.NewPublisher(js, cfg.Stream, dep)
		for i := range 3 {
			require.NoError(t, pub.Publish(ctx, bus.Task{IterationID: 1, PromptID: int64(i + 1), Kind: bus.KindGenerate, Run: dep}))
		}
		require.NoError(t, pub.Flush(ctx))
	}
	_, err = js.Consumer(ctx, cfg.Stream, "workers")
	require.ErrorIs(t, err, jetstream.ErrConsumerNotFound)
	for dep, cons := range consumers {
		batch, err := cons.Fetch(10, jetstream.FetchMaxWait(time.Second))
		require.NoError(t, err)
		n := 0
		for msg := range batch.Messages() {
			tk, err := bus.DecodeTask(msg.Data())
			require.NoError(t, err)
			require.Equal(t, dep, tk.Run, "a consumer sees only its deployment's tasks")
			require.NoError(t, msg.Ack())
			n++
		}
		require.Equal(t, 3, n, dep)
		bound, err := bus.BindConsumer(ctx, js, cfg.Stream, dep)
		require.NoError(t, err)
		require.Equal(t, 3, bound.CachedInfo().Config.MaxDeliver, "workers bind to what the orchestrator wrote")
	}
	_, err = bus.BindConsumer(ctx, js, cfg.Stream, "ccc")
	require.ErrorIs(t, err, bus.ErrNoConsumer)
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
	_, err = s.Consumer(ctx, bus.ConsumerName("deployb"))
	require.ErrorIs(t, err, jetstream.ErrConsumerNotFound, "nothing of B was made")

	_, err = bus.EnsureStream(ctx, js, opts("deployb", 3))
	require.NoError(t, err, "B with the stream's replicas shares it")
	_, err = bus.EnsureStream(ctx, js, opts("deploya", 3))
	require.NoError(t, err, "A again")
}

// TestBusyConsumerKeepsItsSettings (issue 22): runs of one database share
// the deployment's consumer. While it has a task in flight under ack_wait
// 30s, an orchestrator with ack_wait 2s (another run) is refused with both
// values, and the consumer keeps 30s, so the in-flight task's worker,
// beating every 10s, is not redelivered under it. Once idle, the consumer
// takes the new values.
func TestBusyConsumerKeepsItsSettings(t *testing.T) {
	t.Parallel()
	cfg := bustest.NewStream(t)
	nc, js, err := bus.Connect(cfg, "test", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer nc.Close()
	ctx := context.Background()
	opts := bus.StreamOptions{Name: cfg.Stream, Deployment: "dep1", AckWait: 30 * time.Second, MaxDeliver: 5}
	cons, err := bus.EnsureStream(ctx, js, opts)
	require.NoError(t, err)
	pub := bus.NewPublisher(js, cfg.Stream, "dep1")
	require.NoError(t, pub.Publish(ctx, bus.Task{IterationID: 1, PromptID: 1, Kind: bus.KindGenerate}))
	require.NoError(t, pub.Flush(ctx))
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	require.NoError(t, err)

	other := opts
	other.AckWait = 2 * time.Second
	_, err = bus.EnsureStream(ctx, js, other)
	require.ErrorIs(t, err, bus.ErrConsumerBusy)
	require.ErrorContains(t, err, "has worker.ack_wait 30s and worker.max_deliver 5, this schedule 2s and 5, and 0 tasks are queued and 1 in flight")
	info, err := cons.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, 30*time.Second, info.Config.AckWait)
	_, err = bus.EnsureStream(ctx, js, opts)
	require.NoError(t, err, "the same settings are fine while busy")

	require.NoError(t, msg.DoubleAck(ctx))
	_, err = bus.EnsureStream(ctx, js, other)
	require.NoError(t, err, "an idle consumer takes the new settings")
	info, err = cons.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, 2*time.Second, info.Config.AckWait)
}
