package llm

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
)

// The pooling kind over HTTP: tinylm's /pooling (vLLM's PoolingResponse,
// vllm/entrypoints/pooling/pooling/protocol.py) gives the same raw scores
// as /classify, one request per response (chat form) or batched (rendered
// input with add_special_tokens false).
func TestPoolingRewardLive(t *testing.T) {
	t.Parallel()
	b := startLive(t, tinylm.Faults{})
	ctx := context.Background()
	replies := []string{"water them early in the morning .", "no .", "mulch keeps the soil cool and water them early ."}
	score := func(kind string, opts ...Option) []float64 {
		ep := b.endpoint("reward")
		ep.Kind, ep.Model = kind, rewardModel
		r, err := NewReward(ep, opts...)
		require.NoError(t, err)
		require.NoError(t, r.CheckTemplate(ctx))
		got, err := r.Score(ctx, questionPrompt, replies)
		require.NoError(t, err)
		return got
	}
	want := score(KindClassify)
	require.Len(t, want, 3)
	require.Less(t, want[1], want[0], "a curt reply scores lower")
	require.Equal(t, want, score(KindPooling))
	require.Equal(t, want, score(KindPooling, WithChatTemplate(TemplateTinyLM)))
	require.Equal(t, want, score(KindClassify, WithChatTemplate(TemplateTinyLM)))
}
