package tinylm

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
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
	// Cache, when set, shares per-step work between generations of the
	// same prompt with the same options (the n choices of one request):
	// once a prompt's context is frozen at <|assistant|>, the next-token
	// distribution depends only on the previous token, so it is computed
	// once per distinct previous token. Results are bit-identical to an
	// uncached run. A cache must not be shared across prompts or options,
	// nor used by two goroutines at once.
	Cache *StepCache
}

// StepCache memoises the per-step distribution by previous token for one
// prompt and one set of sampling options. The zero value is not usable;
// see NewStepCache and AcquireStepCache.
type StepCache struct {
	steps []*step // by previous token id
	used  []int   // ids with an entry, for Reset
	free  []*step // entries kept for reuse
}

// NewStepCache returns an empty cache for generations with this model.
func (m *Model) NewStepCache() *StepCache { return &StepCache{steps: make([]*step, m.V())} }

// stepCaches recycles caches between requests: a cache holds two
// vocabulary-sized buffers per distinct step, so making them afresh for
// every request would be most of a server's garbage.
var stepCaches sync.Pool

// AcquireStepCache returns an empty cache for this model, reusing one
// released earlier when it fits; give it back with ReleaseStepCache.
func (m *Model) AcquireStepCache() *StepCache {
	if c, ok := stepCaches.Get().(*StepCache); ok && len(c.steps) == m.V() {
		return c
	}
	return m.NewStepCache()
}

// ReleaseStepCache empties c and keeps it for AcquireStepCache. c must not
// be used afterwards.
func (m *Model) ReleaseStepCache(c *StepCache) {
	c.Reset()
	stepCaches.Put(c)
}

// Reset empties the cache, keeping its buffers for the next prompt.
func (c *StepCache) Reset() {
	for _, id := range c.used {
		c.free = append(c.free, c.steps[id])
		c.steps[id] = nil
	}
	c.used = c.used[:0]
}

// entry returns a step for previous token id to fill: a recycled one when
// there is one.
func (c *StepCache) entry(id, v int) *step {
	var st *step
	if n := len(c.free); n > 0 {
		st, c.free = c.free[n-1], c.free[:n-1]
	} else {
		st = &step{z: make([]float64, v)}
	}
	c.steps[id] = st
	c.used = append(c.used, id)
	return st
}

// step is everything one sampling step needs after the logits: the raw
// logits (for log-probs), their log normaliser, the argmax, the sampling
// weights, and the nucleus (tokens in draw order with its mass).
type step struct {
	z      []float64
	lse    float64
	arg    int
	w      []float64 // nil at temperature 0
	total  float64
	kept   []int32 // nil when top-p keeps everything
	mass   float64
	top    []TokenLogProb
	hasTop bool
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
// BOS in promptIDs changes nothing (see Model), and is never sampled.
// Generate is safe for concurrent use on one Model with distinct rngs.
func (m *Model) Generate(promptIDs []int, opts SampleOptions, rng *rand.Rand) (Generation, error) {
	if len(promptIDs) == 0 {
		return Generation{}, fmt.Errorf("generate: empty prompt")
	}
	if err := m.checkSeqIDs(promptIDs); err != nil {
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
	g := Generation{FinishReason: FinishLength}
	prev := promptIDs[len(promptIDs)-1]
	var scratch *step
	for len(g.IDs) < opts.MaxTokens {
		var st *step
		if opts.Cache != nil && c.frozen && !m.isBOS(prev) {
			if st = opts.Cache.steps[prev]; st == nil {
				st = m.newStep(c.ctx, prev, opts, opts.Cache.entry(prev, v))
			}
		} else {
			if scratch == nil {
				scratch = &step{z: make([]float64, v)}
			}
			st = m.newStep(c.ctx, prev, opts, scratch)
		}
		tok := st.draw(opts, rng)
		g.IDs = append(g.IDs, tok)
		g.LogProbs = append(g.LogProbs, st.z[tok]-st.lse)
		if opts.TopLogProbs > 0 {
			g.Top = append(g.Top, slices.Clone(st.top))
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

// newStep computes the distribution after prevID under context ctx into
// st (reusing its buffers) and returns st.
func (m *Model) newStep(ctx []float64, prevID int, opts SampleOptions, st *step) *step {
	z := m.LogitsAt(ctx, prevID, st.z)
	mx := math.Inf(-1)
	arg := 0
	for i, x := range z {
		if x > mx {
			mx, arg = x, i
		}
	}
	st.arg, st.kept = arg, st.kept[:0]
	switch {
	case opts.Temperature == 0:
		st.lse = LogSumExp(z)
	case opts.Temperature == 1:
		// exp(z-mx) is both the sampling weight and the normaliser's
		// summand, in the same order as LogSumExp.
		st.w = grow(st.w, len(z))
		var s float64
		for i, x := range z {
			e := math.Exp(x - mx)
			st.w[i] = e
			s += e
		}
		st.lse = mx + math.Log(s)
		st.total = s
	case quarterPower(opts.Temperature) > 0:
		// T = 4/k (0.5, 0.8, 1.333…, 2, …): exp((z-mx)/T) = e^(k/4) with
		// e = exp(z-mx), so one exp pass serves both the normaliser (the
		// same summands in the same order as LogSumExp, so the same
		// log-probs) and the weights, which take two square roots and k-1
		// products instead of a second exp.
		k := quarterPower(opts.Temperature)
		st.w = grow(st.w, len(z))
		var s, total float64
		for i, x := range z {
			e := math.Exp(x - mx)
			s += e
			r := math.Sqrt(math.Sqrt(e))
			w := r
			for range k - 1 {
				w *= r
			}
			st.w[i] = w
			total += w
		}
		st.lse = mx + math.Log(s)
		st.total = total
	default:
		st.lse = LogSumExp(z)
		st.w = grow(st.w, len(z))
		inv := 1 / opts.Temperature
		var s float64
		for i, x := range z {
			e := math.Exp((x - mx) * inv)
			st.w[i] = e
			s += e
		}
		st.total = s
	}
	if opts.Temperature > 0 && opts.TopP < 1 {
		var n nucleus
		n.ids = st.kept
		st.kept, st.mass = n.set(st.w, st.total, opts.TopP)
	}
	if opts.TopLogProbs > 0 {
		st.top = TopK(z, opts.TopLogProbs)
		for i := range st.top {
			st.top[i].LogProb -= st.lse
		}
	}
	return st
}

// quarterPower returns k when temperature is exactly 4/k for a whole k
// from 2 to 16, else 0.
func quarterPower(temperature float64) int {
	for k := 2; k <= 16; k++ {
		if temperature == 4/float64(k) {
			return k
		}
	}
	return 0
}

func grow(b []float64, n int) []float64 {
	if cap(b) < n {
		return make([]float64, n)
	}
	return b[:n]
}

// draw picks the step's token: the argmax at temperature 0, else a draw
// from the weights restricted to the nucleus.
func (st *step) draw(opts SampleOptions, rng *rand.Rand) int {
	if opts.Temperature == 0 {
		return st.arg
	}
	if opts.TopP >= 1 {
		var n nucleus
		return n.draw(st.w, st.total, 1, rng)
	}
	u := rng.Float64() * st.mass
	for _, id := range st.kept {
		u -= st.w[id]
		if u < 0 {
			return int(id)
		}
	}
	return int(st.kept[len(st.kept)-1])
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
	kept, mass := n.set(w, total, topP)
	u := rng.Float64() * mass
	for _, id := range kept {
		u -= w[id]
		if u < 0 {
			return int(id)
		}
	}
	return int(kept[len(kept)-1])
}

// set returns the nucleus of the weights — the shortest prefix of the
// tokens in descending weight (ties: lower id first) whose mass reaches
// topP·total, in that order — and its mass. The slice is n's buffer.
func (n *nucleus) set(w []float64, total, topP float64) ([]int32, float64) {
	// Every token above a threshold outranks every token below it, so when
	// the tokens above the threshold carry enough mass the prefix lies
	// among them.
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
	return kept, mass
}
