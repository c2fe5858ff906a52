package tinylm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// Example is one training dialogue: the prompt messages and the assistant's
// reply text.
type Example struct {
	Messages []Message `json:"messages"`
	Response string    `json:"response"`
}

// BuildVocab returns a vocabulary for texts: the special tokens, then every
// pre-token (see SplitWords) that occurs at least minCount times, most
// frequent first (ties in byte order), at most maxWords words in all (0 = no
// limit).
func BuildVocab(texts []string, minCount, maxWords int) []string {
	counts := map[string]int{}
	for _, t := range texts {
		for _, w := range SplitWords(t) {
			if matchSpecial([]rune(w)) == "" {
				counts[w]++
			}
		}
	}
	words := make([]string, 0, len(counts))
	for w, c := range counts {
		if c >= minCount {
			words = append(words, w)
		}
	}
	sort.Slice(words, func(i, j int) bool {
		if counts[words[i]] != counts[words[j]] {
			return counts[words[i]] > counts[words[j]]
		}
		return words[i] < words[j]
	})
	out := append([]string(nil), specialTokens[:]...)
	out = append(out, words...)
	if maxWords > 0 && len(out) > maxWords {
		out = out[:maxWords]
	}
	return out
}

// Grad holds a gradient with the shapes of a Model's parameters.
type Grad struct {
	B, U, E, F []float64
}

// NewGrad returns a zero gradient shaped like m.
func NewGrad(m *Model) *Grad {
	return &Grad{B: make([]float64, len(m.B)), U: make([]float64, len(m.U)), E: make([]float64, len(m.E)), F: make([]float64, len(m.F))}
}

// Zero resets the gradient.
func (g *Grad) Zero() {
	for _, s := range [][]float64{g.B, g.U, g.E, g.F} {
		clear(s)
	}
}

// AccumulateLogProbGrad adds scale · ∂/∂θ log π(response | prompt) to g and
// returns log π(response | prompt), the sum of ResponseLogProbs (the same
// conditioning: for a chat prompt ending in <|assistant|>, the whole prompt).
// A negative scale gives the gradient of a negative log-likelihood. The
// gradient is exact:
//
//	∂ log p(y)/∂z = onehot(y) − p,  z = B + U·h,  h = E[prev] + mean_{w∈ctx} F[w]
//
// Ids must be in the vocabulary and the prompt non-empty. Not safe for
// concurrent use with the same g.
func (m *Model) AccumulateLogProbGrad(g *Grad, promptIDs, responseIDs []int, scale float64) float64 {
	d := m.Dim
	seq := make([]int, 0, len(promptIDs)+len(responseIDs))
	seq = append(seq, promptIDs...)
	seq = append(seq, responseIDs...)
	c := newCond(m)
	for _, id := range promptIDs {
		c.push(id)
	}
	z := make([]float64, m.V())
	h := make([]float64, d)
	dh := make([]float64, d)
	// dctx[n] is the gradient w.r.t. the context mean over seq[:n].
	dctx := map[int][]float64{}
	var total float64
	prev := promptIDs[len(promptIDs)-1]
	for i, y := range responseIDs {
		n := ConditioningPrefix(seq, len(promptIDs)+i)
		e := m.E[prev*d : (prev+1)*d]
		for k := range h {
			h[k] = e[k] + c.ctx[k]
		}
		m.LogitsAt(c.ctx, prev, z)
		lse := LogSumExp(z)
		total += z[y] - lse
		clear(dh)
		for v, zv := range z {
			// dz = scale·(onehot(y) − p)
			dz := -math.Exp(zv-lse) * scale
			if v == y {
				dz += scale
			}
			if dz == 0 {
				continue
			}
			g.B[v] += dz
			urow := m.U[v*d : (v+1)*d]
			grow := g.U[v*d : (v+1)*d]
			for k := range grow {
				grow[k] += dz * h[k]
				dh[k] += dz * urow[k]
			}
		}
		dc := dctx[n]
		if dc == nil {
			dc = make([]float64, d)
			dctx[n] = dc
		}
		ge := g.E[prev*d : (prev+1)*d]
		for k := range ge {
			ge[k] += dh[k]
			dc[k] += dh[k]
		}
		c.push(y)
		prev = y
	}
	for n, dc := range dctx {
		inv := 1 / float64(n)
		for _, w := range seq[:n] {
			gf := g.F[w*d : (w+1)*d]
			for k := range gf {
				gf[k] += dc[k] * inv
			}
		}
	}
	return total
}

// MLEOptions controls TrainMLE.
type MLEOptions struct {
	// Epochs over the data; default 5.
	Epochs int
	// LearningRate of Adam; default 0.01.
	LearningRate float64
	// BatchSize in examples; default 32.
	BatchSize int
	// L2 is a weight decay on U, E and F (not B); default 0.
	L2 float64
	// Seed shuffles the data.
	Seed uint64
	// Progress, when set, is called after every epoch with its mean
	// negative log-likelihood per response token (nats).
	Progress func(epoch int, nll float64)
}

// TrainMLE fits m to data by maximum likelihood of the responses (the
// <|end|> after each response included) given their rendered prompts, with
// Adam on minibatches. It updates m in place and returns the mean negative
// log-likelihood per token of each epoch (measured during the epoch).
func TrainMLE(m *Model, data []Example, opts MLEOptions) ([]float64, error) {
	if opts.Epochs == 0 {
		opts.Epochs = 5
	}
	if opts.LearningRate == 0 {
		opts.LearningRate = 0.01
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = 32
	}
	if opts.Epochs < 0 || opts.LearningRate < 0 || opts.BatchSize < 0 || opts.L2 < 0 {
		return nil, fmt.Errorf("train: negative option in %+v", opts)
	}
	type pair struct{ prompt, resp []int }
	enc := make([]pair, 0, len(data))
	for i, ex := range data {
		p, err := m.Tok.EncodeChat(ex.Messages, true)
		if err != nil {
			return nil, fmt.Errorf("train: example %d: %w", i, err)
		}
		r := append(m.Tok.Encode(ex.Response), EndID)
		enc = append(enc, pair{p, r})
	}
	if len(enc) == 0 {
		return nil, fmt.Errorf("train: no examples")
	}
	g := NewGrad(m)
	opt := newAdam(m, opts.LearningRate)
	rng := rand.New(rand.NewPCG(opts.Seed, 0x7472_6169_6e))
	order := make([]int, len(enc))
	for i := range order {
		order[i] = i
	}
	var hist []float64
	for ep := range opts.Epochs {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		var nll float64
		var tokens int
		for start := 0; start < len(order); start += opts.BatchSize {
			end := min(start+opts.BatchSize, len(order))
			g.Zero()
			var n int
			for _, i := range order[start:end] {
				n += len(enc[i].resp)
			}
			for _, i := range order[start:end] {
				nll -= m.AccumulateLogProbGrad(g, enc[i].prompt, enc[i].resp, -1/float64(n))
			}
			tokens += n
			opt.step(m, g, opts.L2)
		}
		hist = append(hist, nll/float64(tokens))
		if opts.Progress != nil {
			opts.Progress(ep, nll/float64(tokens))
		}
	}
	return hist, nil
}

// adam is the Adam optimiser (β1 0.9, β2 0.999, ε 1e-8) over a Model's
// parameters; step descends the gradient it is given.
type adam struct {
	lr     float64
	t      int
	m1, m2 *Grad
}

func newAdam(m *Model, lr float64) *adam {
	return &adam{lr: lr, m1: NewGrad(m), m2: NewGrad(m)}
}

func (a *adam) step(m *Model, g *Grad, l2 float64) {
	const b1, b2, eps = 0.9, 0.999, 1e-8
	a.t++
	c1 := 1 - math.Pow(b1, float64(a.t))
	c2 := 1 - math.Pow(b2, float64(a.t))
	params := [][]float64{m.B, m.U, m.E, m.F}
	grads := [][]float64{g.B, g.U, g.E, g.F}
	m1 := [][]float64{a.m1.B, a.m1.U, a.m1.E, a.m1.F}
	m2 := [][]float64{a.m2.B, a.m2.U, a.m2.E, a.m2.F}
	for j, p := range params {
		gj, mj, vj := grads[j], m1[j], m2[j]
		decay := l2
		if j == 0 {
			decay = 0
		}
		for i := range p {
			gi := gj[i] + decay*p[i]
			mj[i] = b1*mj[i] + (1-b1)*gi
			vj[i] = b2*vj[i] + (1-b2)*gi*gi
			p[i] -= a.lr * (mj[i] / c1) / (math.Sqrt(vj[i]/c2) + eps)
		}
	}
}
