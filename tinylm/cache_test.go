package tinylm

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestStepCacheIsExact checks that sharing per-step work between the n
// choices of one prompt changes nothing: texts, log-probs and top
// log-probs are bit-identical to uncached generation, for every
// temperature regime and top-p.
func TestStepCacheIsExact(t *testing.T) {
	t.Parallel()
	m := Builtin()
	prompt, err := m.Tok.EncodeChat([]Message{{Role: "user", Content: "how do i cook rice ?"}}, true)
	require.NoError(t, err)
	for _, opts := range []SampleOptions{
		{Temperature: 0.8, TopP: 0.95, MaxTokens: 60, TopLogProbs: 3},
		{Temperature: 1, TopP: 1, MaxTokens: 60},
		{Temperature: 1, TopP: 0.5, MaxTokens: 60},
		{Temperature: 1.3, TopP: 1, MaxTokens: 60},
		{Temperature: 0, MaxTokens: 60, TopLogProbs: 2},
	} {
		cached := opts
		cached.Cache = m.NewStepCache()
		for i := range uint64(6) {
			want, err := m.Generate(prompt, opts, NewRand(100+i))
			require.NoError(t, err)
			got, err := m.Generate(prompt, cached, NewRand(100+i))
			require.NoError(t, err)
			require.Equal(t, want, got, "options %+v, choice %d", opts, i)
		}
	}
}
