package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus"
)

// TestGarbageOnTheTaskSubject publishes messages that are not valid tasks
// on the task subject, before and around a real one. The worker terminates
// each with a logged reason, keeps running and does the real tasks. Two
// well-formed tasks this database cannot place are logged and left alone
// (nak'ed, never terminated: they may be another deployment's), so the
// work queue ends with exactly those two.
func TestGarbageOnTheTaskSubject(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	subject := e.queue.Subject(bus.KindGenerate, e.iterationID)
	publish := func(data []byte) {
		_, err := e.js.Publish(ctx, subject, data)
		require.NoError(t, err)
	}
	garbage := []struct {
		name   string
		data   []byte
		reason string // what the worker's log says about it
	}{
		{"binary bytes", []byte("\x00\xff\xfe garbage \x01"), "not a task message: invalid character"},
		{"empty body", nil, "not a task message: EOF"},
		{"JSON of another shape", []byte(`{"task": "generate", "prompt": 3}`), `unknown field \"task\"`},
		{"ids as strings", []byte(`{"iteration_id": "1", "prompt_id": "2", "kind": "generate"}`), "cannot unmarshal string"},
		{"negative id", []byte(`{"iteration_id": -1, "prompt_id": 2, "kind": "generate"}`), "iteration_id must be positive"},
		{"unknown kind", []byte(`{"iteration_id": 1, "prompt_id": 2, "kind": "train"}`), `kind \"train\" is not generate, evolve or learn`},
		{"trailing data", []byte(`{"iteration_id": 1, "prompt_id": 2, "kind": "generate"} {}`), "trailing data"},
		{"huge number", []byte(`{"iteration_id": 1e999, "prompt_id": 2, "kind": "generate"}`), "not a task message"},
	}
	for _, g := range garbage {
		publish(g.data)
	}
	// Well-formed tasks whose ids are not in the database.
	pub := bus.NewPublisher(e.js, e.queue)
	require.NoError(t, pub.Publish(ctx, bus.Task{IterationID: 999_999, PromptID: 1, Kind: bus.KindGenerate}))
	require.NoError(t, pub.Publish(ctx, bus.Task{IterationID: e.iterationID, PromptID: 999_999, Kind: bus.KindEvolve}))
	require.NoError(t, pub.Flush(ctx))

	w := e.worker(t)
	real := e.addTasks(t, "What makes bread rise?", "How do rivers start?")
	for _, g := range garbage[:3] {
		publish(g.data)
	}
	e.waitSettled(t, real)
	e.requireDone(t, real)

	require.Eventually(t, func() bool { return e.streamMessages(t) == 2 }, 30*time.Second, 50*time.Millisecond,
		"every message but the two unknown tasks, garbage included, leaves the work queue")
	require.False(t, w.Exited(), "worker exited:\n%s", w.Tail(20))
	log := w.Output()
	require.NotContains(t, strings.ToLower(log), "panic")
	for _, g := range garbage {
		require.Contains(t, log, g.reason, "%s: reason not logged", g.name)
	}
	require.Equal(t, len(garbage)+3, strings.Count(log, "terminating message that is not a task"), log)
	require.Equal(t, 2, strings.Count(log, "cannot place; leaving it alone"), "both unknown ids are logged once (redelivery is a minute away):\n%s", log)
	require.Equal(t, 2, strings.Count(log, "unknown task"), "both unknown ids are logged:\n%s", log)
	require.Equal(t, uint64(2), e.streamMessages(t), "the unknown tasks stay in the stream, not terminated")

	// Still consuming: a task published now is done too.
	later := e.addTasks(t, "How are mountains made?")
	e.waitSettled(t, later)
	e.requireDone(t, later)
}
