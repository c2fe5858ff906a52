package bus_test

import (
	"context"
	"io"
	"log/slog"
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
