package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/store"
)

// TestMessageOfAnotherRunIsIgnored: a task message carrying another run's
// nonce (a database restored from another's backup shares its deployment
// token, hence its subjects) is left alone — nak'ed, never terminated, as
// it may be the other's — without touching the task its ids name here; the
// same task published with this run's nonce is done.
func TestMessageOfAnotherRunIsIgnored(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	ids, err := store.InsertPrompts(ctx, e.pool, []prompt.Prompt{prompt.New([]prompt.Message{{Role: "user", Content: "why do cats purr ?"}}, "test", "")})
	require.NoError(t, err)
	require.NoError(t, store.AddToPool(ctx, e.pool, e.iterationID, ids))
	_, err = store.CreateGenerateTasks(ctx, e.pool, e.iterationID)
	require.NoError(t, err)
	var nonce string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT r.nonce FROM runs r JOIN iterations i ON i.run_id = r.id WHERE i.id = $1`, e.iterationID).Scan(&nonce))

	pub := bus.NewPublisher(e.js, e.queue)
	stale := bus.Task{IterationID: e.iterationID, PromptID: ids[0], Kind: bus.KindGenerate, Run: "an-older-database"}
	require.NoError(t, pub.Publish(ctx, stale))
	require.NoError(t, pub.Flush(ctx))
	w := e.worker(t)
	require.Eventually(t, func() bool { return strings.Contains(w.Output(), "a task message of another run") }, 30*time.Second, 50*time.Millisecond)
	require.Contains(t, w.Output(), "leaving it alone (not terminated)")
	require.Equal(t, uint64(1), e.streamMessages(t), "the other run's message stays in the stream")
	require.Equal(t, "pending", e.task(t, ids[0]).status, "the other run's message changed nothing")

	current := stale
	current.Run = nonce
	require.NotEqual(t, stale.MsgID(), current.MsgID(), "the nonce is part of the message id")
	require.NoError(t, pub.Publish(ctx, current))
	require.NoError(t, pub.Flush(ctx))
	e.waitSettled(t, ids)
	e.requireDone(t, ids)
	require.Eventually(t, func() bool { return e.streamMessages(t) == 1 }, 30*time.Second, 50*time.Millisecond,
		"this run's message is acked; the other's is still there")
}
