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

// TestRecycledStepCachesAreExact generates for several prompts in turn
// with one cache recycled between them (as the server does between
// requests) and compares with fresh, uncached generation.
func TestRecycledStepCachesAreExact(t *testing.T) {
	t.Parallel()
	m := Builtin()
	opts := SampleOptions{Temperature: 0.8, TopP: 0.95, MaxTokens: 60, TopLogProbs: 2}
	for round, text := range []string{"how do i cook rice ?", "why is my cat so sleepy ?", "how do i cook rice ?", "tips for saving money ?"} {
		prompt, err := m.Tok.EncodeChat([]Message{{Role: "user", Content: text}}, true)
		require.NoError(t, err)
		cache := m.AcquireStepCache()
		cached := opts
		cached.Cache = cache
		for i := range uint64(4) {
			want, err := m.Generate(prompt, opts, NewRand(7+i))
			require.NoError(t, err)
			got, err := m.Generate(prompt, cached, NewRand(7+i))
			require.NoError(t, err)
			require.Equal(t, want, got, "round %d, choice %d", round, i)
		}
		m.ReleaseStepCache(cache)
	}
}
