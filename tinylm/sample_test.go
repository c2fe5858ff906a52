package tinylm

import (
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

var samplePrompt = []int{UserID, 9, 10, 11, 12, EndID, AssistantID}

func TestGenerateGreedyIsArgmax(t *testing.T) {
	t.Parallel()
	m := testModel(t)
	g, err := m.Generate(samplePrompt, SampleOptions{Temperature: 0, MaxTokens: 12}, nil)
	require.NoError(t, err)
	z := make([]float64, m.V())
	prev := samplePrompt[len(samplePrompt)-1]
	var want []int
	for range 12 {
		m.Logits(samplePrompt, prev, z)
		best := 0
		for v := range z {
			if z[v] > z[best] {
				best = v
			}
		}
		want = append(want, best)
		if best == EndID {
			break
		}
		prev = best
	}
	require.Equal(t, want, g.IDs)
	if want[len(want)-1] == EndID {
		require.Equal(t, FinishStop, g.FinishReason)
	} else {
		require.Equal(t, FinishLength, g.FinishReason)
	}
}

func TestGenerateReportsRawLogProbs(t *testing.T) {
	t.Parallel()
	m := testModel(t)
	for _, opts := range []SampleOptions{
		{Temperature: 1, MaxTokens: 20},
		{Temperature: 0.3, TopP: 0.5, MaxTokens: 20},
		{Temperature: 2, TopP: 0.9, MaxTokens: 20, TopLogProbs: 3},
	} {
		g, err := m.Generate(samplePrompt, opts, NewRand(7))
		require.NoError(t, err)
		want, err := m.ResponseLogProbs(samplePrompt, g.IDs)
		require.NoError(t, err)
		require.Equal(t, want, g.LogProbs, "log-probs are temperature 1, before top-p, for %+v", opts)
		if opts.TopLogProbs > 0 {
			require.Len(t, g.Top, len(g.IDs))
			for i, top := range g.Top {
				require.Len(t, top, 3)
				require.GreaterOrEqual(t, top[0].LogProb, g.LogProbs[i])
			}
		} else {
			require.Nil(t, g.Top)
		}
	}
}

func TestGenerateSeedDeterminism(t *testing.T) {
	t.Parallel()
	m := testModel(t)
	opts := SampleOptions{Temperature: 1, MaxTokens: 30}
	a, err := m.Generate(samplePrompt, opts, NewRand(11))
	require.NoError(t, err)
	b, err := m.Generate(samplePrompt, opts, NewRand(11))
	require.NoError(t, err)
	require.Equal(t, a, b, "the same seed gives the same sample")
	distinct := map[string]bool{}
	for seed := range uint64(20) {
		g, err := m.Generate(samplePrompt, opts, NewRand(seed))
		require.NoError(t, err)
		distinct[m.Tok.Decode(g.IDs, false)] = true
	}
	require.Greater(t, len(distinct), 10, "different seeds give different samples")
}

// firstTokenFrequencies samples one token many times.
func firstTokenFrequencies(t *testing.T, m *Model, opts SampleOptions, draws int) []float64 {
	t.Helper()
	opts.MaxTokens = 1
	freq := make([]float64, m.V())
	rng := NewRand(99)
	for range draws {
		g, err := m.Generate(samplePrompt, opts, rng)
		require.NoError(t, err)
		freq[g.IDs[0]]++
	}
	for i := range freq {
		freq[i] /= float64(draws)
	}
	return freq
}

func TestGenerateFollowsTemperatureAndTopP(t *testing.T) {
	t.Parallel()
	m := testModel(t)
	z := make([]float64, m.V())
	m.Logits(samplePrompt, samplePrompt[len(samplePrompt)-1], z)
	const draws = 20000
	tests := []struct {
		name string
		temp float64
		topP float64
	}{
		{name: "temperature 1", temp: 1, topP: 1},
		{name: "temperature 0.5", temp: 0.5, topP: 1},
		{name: "temperature 2 and top-p 0.6", temp: 2, topP: 0.6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Expected distribution written out: softmax(z/T), then keep the
			// most likely tokens until their mass reaches top_p.
			p := make([]float64, len(z))
			for v := range z {
				p[v] = z[v] / tc.temp
			}
			LogSoftmax(p, p)
			for v := range p {
				p[v] = math.Exp(p[v])
			}
			order := make([]int, len(p))
			for i := range order {
				order[i] = i
			}
			slices.SortStableFunc(order, func(a, b int) int {
				if p[a] > p[b] {
					return -1
				}
				if p[a] < p[b] {
					return 1
				}
				return 0
			})
			want := make([]float64, len(p))
			var mass float64
			for _, v := range order {
				want[v] = p[v]
				mass += p[v]
				if mass >= tc.topP {
					break
				}
			}
			for v := range want {
				want[v] /= mass
			}
			got := firstTokenFrequencies(t, m, SampleOptions{Temperature: tc.temp, TopP: tc.topP}, draws)
			for v := range want {
				sd := math.Sqrt(want[v]*(1-want[v])/draws) + 1e-9
				require.InDelta(t, want[v], got[v], 5*sd+1e-4, "token %d", v)
				if want[v] == 0 {
					require.Zero(t, got[v], "token %d is outside the nucleus", v)
				}
			}
		})
	}
}

func TestGenerateMaxTokens(t *testing.T) {
	t.Parallel()
	m := testModel(t)
	// A model that never ends: <|end|> gets a very low bias.
	m.B[EndID] = -1e3
	for _, n := range []int{0, 1, 5} {
		g, err := m.Generate(samplePrompt, SampleOptions{Temperature: 1, MaxTokens: n}, NewRand(1))
		require.NoError(t, err)
		require.Len(t, g.IDs, n)
		require.Equal(t, FinishLength, g.FinishReason)
	}
	// A model that always ends at once.
	m.B[EndID] = 1e3
	g, err := m.Generate(samplePrompt, SampleOptions{Temperature: 1, MaxTokens: 5}, NewRand(1))
	require.NoError(t, err)
	require.Equal(t, []int{EndID}, g.IDs)
	require.Equal(t, FinishStop, g.FinishReason)
}

func TestGenerateErrors(t *testing.T) {
	t.Parallel()
	m := testModel(t)
	tests := []struct {
		name   string
		prompt []int
		opts   SampleOptions
		want   string
	}{
		{name: "empty prompt", prompt: nil, opts: SampleOptions{MaxTokens: 1}, want: "empty prompt"},
		{name: "id outside vocabulary", prompt: []int{1, 500}, opts: SampleOptions{MaxTokens: 1}, want: "outside the vocabulary"},
		{name: "negative temperature", prompt: samplePrompt, opts: SampleOptions{Temperature: -1}, want: "temperature"},
		{name: "top_p above one", prompt: samplePrompt, opts: SampleOptions{TopP: 1.5}, want: "top_p"},
		{name: "negative max tokens", prompt: samplePrompt, opts: SampleOptions{MaxTokens: -1}, want: "max tokens"},
		{name: "no random source", prompt: samplePrompt, opts: SampleOptions{Temperature: 1, MaxTokens: 1}, want: "random source"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := m.Generate(tc.prompt, tc.opts, nil)
			require.ErrorContains(t, err, tc.want)
		})
	}
}
