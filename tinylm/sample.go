package tinylm

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Finish reasons of a generation, as in the OpenAI API.
const (
	FinishStop   = "stop"   // the model drew <|end|>
	FinishLength = "length" // MaxTokens was reached first
)

// SampleOptions controls Generate.
type SampleOptions struct {
	// Temperature divides the logits before sampling; 0 means greedy
	// (argmax, ties to the lower id). Must be ≥ 0.
	Temperature float64
	// TopP keeps the smallest set of most likely tokens (at the sampling
	// temperature) whose mass reaches TopP; 1 (or 0, read as 1) keeps all.
	TopP float64
	// MaxTokens caps the generated tokens, <|end|> included. 0 generates
	// nothing.
	MaxTokens int
	// TopLogProbs is the number of most likely tokens of the raw
	// distribution to report per step; 0 reports none.
	TopLogProbs int
}

// Generation is one sampled continuation.
type Generation struct {
	// IDs are the generated tokens; the final <|end|> is included when
	// FinishReason is FinishStop, as vLLM includes the stop token id.
	IDs []int
	// LogProbs[i] is the raw log-probability (temperature 1, before top-p)
	// of IDs[i] given everything before it.
	LogProbs []float64
	// Top[i] are the TopLogProbs most likely tokens of step i (raw
	// distribution, best first); nil when TopLogProbs is 0.
	Top [][]TokenLogProb
	// FinishReason is FinishStop or FinishLength.
	FinishReason string
}

// NewRand returns the sampling source used for one choice: a PCG seeded from
// seed, so the same seed gives the same text.
func NewRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x5eed_c0ff_ee00_0001))
}

// Generate samples a continuation of promptIDs (which must be non-empty,
// usually a rendered chat prompt ending in <|assistant|>) until <|end|> or
// opts.MaxTokens. Each token is drawn from softmax(z/T) restricted to the
// top-p nucleus; the reported log-probs are those of the raw distribution.
// Generate is safe for concurrent use on one Model with distinct rngs.
func (m *Model) Generate(promptIDs []int, opts SampleOptions, rng *rand.Rand) (Generation, error) {
	if len(promptIDs) == 0 {
		return Generation{}, fmt.Errorf("generate: empty prompt")
	}
	if err := m.checkIDs(promptIDs); err != nil {
		return Generation{}, fmt.Errorf("generate: %w", err)
	}
	if opts.Temperature < 0 || math.IsNaN(opts.Temperature) || math.IsInf(opts.Temperature, 0) {
		return Generation{}, fmt.Errorf("generate: temperature %v must be a finite number ≥ 0", opts.Temperature)
	}
	if opts.TopP == 0 {
		opts.TopP = 1
	}
	if opts.TopP < 0 || opts.TopP > 1 || math.IsNaN(opts.TopP) {
		return Generation{}, fmt.Errorf("generate: top_p %v must be in (0, 1]", opts.TopP)
	}
	if opts.MaxTokens < 0 {
		return Generation{}, fmt.Errorf("generate: max tokens %d < 0", opts.MaxTokens)
	}
	if opts.Temperature > 0 && rng == nil {
		return Generation{}, fmt.Errorf("generate: sampling at temperature %v needs a random source", opts.Temperature)
	}

	c := newCond(m)
	for _, id := range promptIDs {
		c.push(id)
	}
	v := m.V()
	z := make([]float64, v)
	w := make([]float64, v)
	var nuc nucleus
	g := Generation{FinishReason: FinishLength}
	prev := promptIDs[len(promptIDs)-1]
	for len(g.IDs) < opts.MaxTokens {
		m.LogitsAt(c.ctx, prev, z)
		mx := math.Inf(-1)
		arg := 0
		for i, x := range z {
			if x > mx {
				mx, arg = x, i
			}
		}
		var lse float64
		tok := arg
		switch {
		case opts.Temperature == 0:
			lse = LogSumExp(z)
		case opts.Temperature == 1:
			// exp(z-mx) is both the sampling weight and the normaliser's
			// summand, in the same order as LogSumExp.
			var s float64
			for i, x := range z {
				e := math.Exp(x - mx)
				w[i] = e
				s += e
			}
			lse = mx + math.Log(s)
			tok = nuc.draw(w, s, opts.TopP, rng)
		default:
			lse = LogSumExp(z)
			inv := 1 / opts.Temperature
			var s float64
			for i, x := range z {
				e := math.Exp((x - mx) * inv)
				w[i] = e
				s += e
			}
			tok = nuc.draw(w, s, opts.TopP, rng)
		}
		g.IDs = append(g.IDs, tok)
		g.LogProbs = append(g.LogProbs, z[tok]-lse)
		if opts.TopLogProbs > 0 {
			top := TopK(z, opts.TopLogProbs)
			for i := range top {
				top[i].LogProb -= lse
			}
			g.Top = append(g.Top, top)
		}
		if tok == EndID {
			g.FinishReason = FinishStop
			break
		}
		c.push(tok)
		prev = tok
	}
	return g, nil
}

// nucleus draws a token from unnormalised weights, restricted to the top-p
// set. It keeps its buffer between steps to avoid allocations.
type nucleus struct {
	ids []int32
}

// nucleusPrefilter is the fraction of the largest weight above which tokens
// are collected first; the nucleus almost always lies among them, so only
// those few are sorted.
const nucleusPrefilter = 1e-4

func (n *nucleus) draw(w []float64, total, topP float64, rng *rand.Rand) int {
	if topP >= 1 {
		u := rng.Float64() * total
		last := 0
		for i, x := range w {
			if x == 0 {
				continue
			}
			last = i
			u -= x
			if u < 0 {
				return i
			}
		}
		return last // rounding left u ≥ 0: take the last token with weight
	}
	// The nucleus is the shortest prefix of the tokens in descending weight
	// (ties: lower id first) whose mass reaches topP·total. Every token
	// above a threshold outranks every token below it, so when the tokens
	// above the threshold carry enough mass the prefix lies among them.
	need := topP * total
	var mx float64
	for _, x := range w {
		mx = max(mx, x)
	}
	for thr := mx * nucleusPrefilter; ; thr = 0 {
		n.ids = n.ids[:0]
		var mass float64
		for i, x := range w {
			if x > 0 && x >= thr {
				n.ids = append(n.ids, int32(i))
				mass += x
			}
		}
		if mass >= need || thr == 0 {
			break
		}
	}
	slices.SortFunc(n.ids, func(a, b int32) int {
		switch {
		case w[a] > w[b]:
			return -1
		case w[a] < w[b]:
			return 1
		}
		return cmp.Compare(a, b)
	})
	kept := n.ids
	var mass float64
	for i, id := range n.ids {
		mass += w[id]
		if mass >= need {
			kept = n.ids[:i+1]
			break
		}
	}
	u := rng.Float64() * mass
	for _, id := range kept {
		u -= w[id]
		if u < 0 {
			return int(id)
		}
	}
	return int(kept[len(kept)-1])
}
