package tinylm

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
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
// set. It keeps its heap between steps to avoid allocations.
type nucleus struct {
	h idHeap
}

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
	// Pop tokens in descending weight (ties: lower id first) until the mass
	// reaches topP·total; then sample within them.
	n.h.w = w
	n.h.ids = n.h.ids[:0]
	for i := range w {
		n.h.ids = append(n.h.ids, int32(i))
	}
	heap.Init(&n.h)
	need := topP * total
	var kept []int32
	var mass float64
	for n.h.Len() > 0 {
		id := heap.Pop(&n.h).(int32)
		kept = append(kept, id)
		mass += w[id]
		if mass >= need {
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

// idHeap is a max-heap of token ids by weight, ties to the lower id.
type idHeap struct {
	w   []float64
	ids []int32
}

func (h *idHeap) Len() int { return len(h.ids) }
func (h *idHeap) Less(i, j int) bool {
	a, b := h.ids[i], h.ids[j]
	if h.w[a] != h.w[b] {
		return h.w[a] > h.w[b]
	}
	return a < b
}
func (h *idHeap) Swap(i, j int) { h.ids[i], h.ids[j] = h.ids[j], h.ids[i] }
func (h *idHeap) Push(x any)    { h.ids = append(h.ids, x.(int32)) }
func (h *idHeap) Pop() any {
	x := h.ids[len(h.ids)-1]
	h.ids = h.ids[:len(h.ids)-1]
	return x
}
