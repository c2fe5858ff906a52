package tinylm_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

// TestRewardLengthBonus: a server started with RewardLengthBonus 0.25 adds
// 0.25 per reply word to /classify's raw reward, by text and by messages;
// without it the reward is the plain one; a bonus that is not finite is
// refused.
func TestRewardLengthBonus(t *testing.T) {
	t.Parallel()
	// Hand-worked in reward_test.go: "Cook the pasta in salty water." to
	// "How do I cook pasta?" scores 3.0 and has 6 words: 3.0 + 0.25·6 = 4.5.
	good := "<|user|> How do I cook pasta? <|end|> <|assistant|> Cook the pasta in salty water. <|end|>"
	// An empty reply has no words: −3.5 with or without the bonus.
	empty := "<|user|> How do I cook pasta? <|end|> <|assistant|> <|end|>"
	plain := tinylmtest.Start(t, tinylm.ServerOptions{})
	biased := tinylmtest.Start(t, tinylm.ServerOptions{RewardLengthBonus: 0.25})
	for _, tc := range []struct {
		base        string
		good, empty float64
	}{{plain, 3.0, -3.5}, {biased, 4.5, -3.5}} {
		var byText classifyResp
		ok(t, tc.base, "/classify", map[string]any{"input": []string{good, empty}, "use_activation": false}, &byText)
		require.InDelta(t, tc.good, byText.Data[0].Probs[0], 1e-12)
		require.InDelta(t, tc.empty, byText.Data[1].Probs[0], 1e-12)
		var byChat classifyResp
		ok(t, tc.base, "/classify", map[string]any{"use_activation": false, "messages": []map[string]string{
			{"role": "user", "content": "How do I cook pasta?"}, {"role": "assistant", "content": "Cook the pasta in salty water."},
		}}, &byChat)
		require.InDelta(t, tc.good, byChat.Data[0].Probs[0], 1e-12)
	}

	b := tinylm.Reward("How do I cook pasta?", "Cook the pasta in salty water.").WithLengthBonus(0.25)
	require.Equal(t, 6, b.Words)
	require.InDelta(t, 1.5, b.LengthBonus, 1e-12)
	require.InDelta(t, 4.5, b.Score, 1e-12)

	for _, bad := range []float64{math.NaN(), math.Inf(1)} {
		_, err := tinylm.NewServer(tinylm.ServerOptions{RewardLengthBonus: bad})
		require.ErrorContains(t, err, "reward length bonus must be finite")
	}
}
