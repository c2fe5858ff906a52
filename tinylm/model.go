package tinylm

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Model is the log-linear next-token model. For a prompt x (token ids) and
// the previous token p, the logits over the vocabulary are
//
//	z[v] = B[v] + U[v]·h,   h = E[p] + (1/|x|)·Σ_{w∈x} F[w]
//
// where U, E and F are V×Dim matrices stored row-major in flat slices
// (row v is U[v*Dim:(v+1)*Dim]). Probabilities are exact: p = softmax(z).
//
// BOS (id V, Tokenizer.BOS) has no parameters and leaves the numbers of
// every other token unchanged: it is not part of the prompt mean, as the
// previous token it contributes a zero row of E, and as a predicted token
// it has probability 0 (the distribution is over the V words). A sequence
// with BOS in front therefore scores and samples exactly as without it.
//
// The parameters are exported so a trainer in this package can update them
// in place; a Model must not be modified while another goroutine reads it.
// Reading (Logits, Sample, LogProbs…) is safe for concurrent use.
type Model struct {
	// Tok is the tokenizer; its vocabulary size is V.
	Tok *Tokenizer
	// Dim is the embedding dimension d.
	Dim int
	// B is the output bias, length V.
	B []float64
	// U is the output embedding, V×Dim.
	U []float64
	// E is the previous-token embedding, V×Dim.
	E []float64
	// F is the prompt-word embedding, V×Dim; the prompt contributes the mean
	// of its tokens' rows.
	F []float64
}

// NewModel returns a model over the vocabulary of tok with dimension dim,
// its embeddings drawn from N(0, scale²) with a PCG seeded by seed and its
// bias zero.
func NewModel(tok *Tokenizer, dim int, scale float64, seed uint64) (*Model, error) {
	if tok == nil {
		return nil, fmt.Errorf("new model: nil tokenizer")
	}
	if dim < 1 || dim > 1024 {
		return nil, fmt.Errorf("new model: dimension %d out of range [1, 1024]", dim)
	}
	v := tok.Size()
	m := &Model{Tok: tok, Dim: dim, B: make([]float64, v), U: make([]float64, v*dim), E: make([]float64, v*dim), F: make([]float64, v*dim)}
	rng := rand.New(rand.NewPCG(seed, 0x7469_6e79_6c6d))
	for _, s := range [][]float64{m.U, m.E, m.F} {
		for i := range s {
			s[i] = rng.NormFloat64() * scale
		}
	}
	return m, nil
}

// V is the vocabulary size.
func (m *Model) V() int { return len(m.B) }

// Clone returns a deep copy that shares only the (immutable) tokenizer.
func (m *Model) Clone() *Model {
	return &Model{
		Tok: m.Tok, Dim: m.Dim,
		B: append([]float64(nil), m.B...),
		U: append([]float64(nil), m.U...),
		E: append([]float64(nil), m.E...),
		F: append([]float64(nil), m.F...),
	}
}

// validate checks that the parameter shapes agree with the vocabulary and
// that every parameter is finite.
func (m *Model) validate() error {
	if m.Tok == nil {
		return fmt.Errorf("model has no tokenizer")
	}
	v := m.Tok.Size()
	if m.Dim < 1 {
		return fmt.Errorf("model dimension %d < 1", m.Dim)
	}
	if len(m.B) != v || len(m.U) != v*m.Dim || len(m.E) != v*m.Dim || len(m.F) != v*m.Dim {
		return fmt.Errorf("model parameter shapes do not match vocabulary %d × dimension %d", v, m.Dim)
	}
	for _, s := range [][]float64{m.B, m.U, m.E, m.F} {
		for _, x := range s {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return fmt.Errorf("model has a non-finite parameter")
			}
		}
	}
	return nil
}

// checkIDs returns an error naming the first id outside the vocabulary.
func (m *Model) checkIDs(ids []int) error {
	for i, id := range ids {
		if id < 0 || id >= len(m.B) {
			return fmt.Errorf("token id %d at position %d is outside the vocabulary [0, %d)", id, i, len(m.B))
		}
	}
	return nil
}

// checkSeqIDs is checkIDs for a token sequence a server was given, which
// may also hold BOS (id V).
func (m *Model) checkSeqIDs(ids []int) error {
	for i, id := range ids {
		if id < 0 || id > len(m.B) {
			return fmt.Errorf("token id %d at position %d is outside the vocabulary [0, %d] (%d is BOS)", id, i, len(m.B), len(m.B))
		}
	}
	return nil
}

// isBOS reports whether id is BOS: one past the last word.
func (m *Model) isBOS(id int) bool { return id == len(m.B) }

// Context returns the prompt part of h, (1/|x|)·Σ F[w] over promptIDs
// without BOS (the zero vector for an empty prompt), in a new slice of
// length Dim. Ids must be in the vocabulary or BOS.
func (m *Model) Context(promptIDs []int) []float64 {
	c := make([]float64, m.Dim)
	n := 0
	for _, w := range promptIDs {
		if m.isBOS(w) {
			continue
		}
		n++
		row := m.F[w*m.Dim : (w+1)*m.Dim]
		for k, x := range row {
			c[k] += x
		}
	}
	if n == 0 {
		return c
	}
	inv := 1 / float64(n)
	for k := range c {
		c[k] *= inv
	}
	return c
}

// LogitsAt writes the logits for previous token prevID under the prompt
// context ctx (from Context) into out (length V) and returns out[:V]. A
// previous token of BOS contributes nothing (a zero row of E).
func (m *Model) LogitsAt(ctx []float64, prevID int, out []float64) []float64 {
	d := m.Dim
	var hbuf [64]float64
	var h []float64
	if d <= len(hbuf) {
		h = hbuf[:d]
	} else {
		h = make([]float64, d)
	}
	if m.isBOS(prevID) {
		copy(h, ctx[:d])
	} else {
		e := m.E[prevID*d : (prevID+1)*d]
		for k := range h {
			h[k] = e[k] + ctx[k]
		}
	}
	out = out[:len(m.B)]
	u := m.U
	b := m.B[:len(out)]
	if d%4 == 0 {
		// Four independent partial sums keep the multiply-adds from waiting
		// on each other; every path (sampling, scoring, training) uses this
		// same order of operations, so their numbers agree exactly.
		for v := range out {
			row := u[v*d : v*d+d]
			hh := h[:len(row)]
			var s0, s1, s2, s3 float64
			for k := 0; k+3 < len(row); k += 4 {
				s0 += row[k] * hh[k]
				s1 += row[k+1] * hh[k+1]
				s2 += row[k+2] * hh[k+2]
				s3 += row[k+3] * hh[k+3]
			}
			out[v] = b[v] + ((s0 + s1) + (s2 + s3))
		}
		return out
	}
	for v := range out {
		row := u[v*d : v*d+d]
		hh := h[:len(row)]
		s := b[v]
		for k, x := range row {
			s += x * hh[k]
		}
		out[v] = s
	}
	return out
}

// Logits writes the next-token logits given the prompt and the previous
// token into out (length at least V). It is Context followed by LogitsAt;
// callers scoring many positions of one prompt should call those directly.
func (m *Model) Logits(promptIDs []int, prevID int, out []float64) {
	m.LogitsAt(m.Context(promptIDs), prevID, out)
}

// LogSumExp returns log Σ exp(z[i]), computed stably.
func LogSumExp(z []float64) float64 {
	mx := math.Inf(-1)
	for _, x := range z {
		if x > mx {
			mx = x
		}
	}
	if math.IsInf(mx, 0) {
		return mx
	}
	var s float64
	for _, x := range z {
		s += math.Exp(x - mx)
	}
	return mx + math.Log(s)
}

// LogSoftmax writes log softmax(z) into out (which may alias z) and returns
// the log normaliser LogSumExp(z).
func LogSoftmax(z, out []float64) float64 {
	lse := LogSumExp(z)
	for i, x := range z {
		out[i] = x - lse
	}
	return lse
}

// ConditioningPrefix returns how many leading tokens of seq condition the
// prediction of seq[t] (t ≥ 1): everything up to and including the last
// <|assistant|> token before t, or all of seq[:t] when there is none. This
// is what makes the model a proper causal model over any token sequence
// while a reply is conditioned on its whole rendered prompt: for a prompt
// rendered with a generation prompt (ending in <|assistant|>) followed by a
// response, every response position is conditioned on exactly the prompt.
func ConditioningPrefix(seq []int, t int) int {
	for j := t - 1; j >= 0; j-- {
		if seq[j] == AssistantID {
			return j + 1
		}
	}
	return t
}

// SequenceLogProbs returns the teacher-forced log-probability of every token
// of seq under the model: out[0] is NaN (the first token has no
// prediction, which the server reports as null) and out[t] = log p(seq[t] |
// seq[:t]) with the conditioning of ConditioningPrefix. It also returns the
// 1-based rank of seq[t] in its distribution and, when top > 0, the top
// tokens of every distribution (best first; nil otherwise). seq may hold
// BOS: it conditions nothing, and where it is predicted (a BOS after the
// first position) its log-prob is -Inf and its rank V+1.
func (m *Model) SequenceLogProbs(seq []int, top int) (lps []float64, tops [][]TokenLogProb, ranks []int, err error) {
	if err := m.checkSeqIDs(seq); err != nil {
		return nil, nil, nil, err
	}
	lps = make([]float64, len(seq))
	ranks = make([]int, len(seq))
	if top > 0 {
		tops = make([][]TokenLogProb, len(seq))
	}
	if len(seq) == 0 {
		return lps, tops, ranks, nil
	}
	lps[0] = math.NaN()
	z := make([]float64, m.V())
	c := newCond(m)
	c.push(seq[0])
	for t := 1; t < len(seq); t++ {
		m.LogitsAt(c.ctx, seq[t-1], z)
		LogSoftmax(z, z)
		if m.isBOS(seq[t]) {
			lps[t], ranks[t] = math.Inf(-1), len(z)+1
		} else {
			lps[t] = z[seq[t]]
			ranks[t] = rankOf(z, seq[t])
		}
		if top > 0 {
			tops[t] = TopK(z, top)
		}
		c.push(seq[t])
	}
	return lps, tops, ranks, nil
}

// cond tracks the conditioning context along a token sequence in O(Dim) per
// token. Its arithmetic (rows of F summed in order from zero, then scaled by
// 1/n) is the same as Context's, so a prompt ending in <|assistant|> gets a
// bit-identical context either way: sampled and teacher-forced log-probs
// agree exactly.
type cond struct {
	m      *Model
	sum    []float64
	n      int
	frozen bool
	ctx    []float64
}

func newCond(m *Model) *cond {
	return &cond{m: m, sum: make([]float64, m.Dim), ctx: make([]float64, m.Dim)}
}

// push appends token id to the sequence and updates the context for
// predicting the next token. BOS changes nothing.
func (c *cond) push(id int) {
	if c.m.isBOS(id) {
		return
	}
	d := c.m.Dim
	for k, x := range c.m.F[id*d : (id+1)*d] {
		c.sum[k] += x
	}
	c.n++
	if c.frozen && id != AssistantID {
		return
	}
	inv := 1 / float64(c.n)
	for k, s := range c.sum {
		c.ctx[k] = s * inv
	}
	if id == AssistantID {
		c.frozen = true
	}
}

// ResponseLogProbs returns log p(response[i] | prompt, response[:i]) for
// every response token under the conditioning of ConditioningPrefix over
// prompt+response: for a rendered chat prompt (ending in <|assistant|>) and
// a response without <|assistant|> tokens, every position is conditioned on
// exactly the prompt. Their sum is log π(y|x). The numbers are bit-identical
// to SequenceLogProbs over the concatenation and to what Generate reports.
// The prompt may hold BOS, which changes nothing.
func (m *Model) ResponseLogProbs(promptIDs, responseIDs []int) ([]float64, error) {
	if err := m.checkSeqIDs(promptIDs); err != nil {
		return nil, fmt.Errorf("prompt: %w", err)
	}
	if err := m.checkIDs(responseIDs); err != nil {
		return nil, fmt.Errorf("response: %w", err)
	}
	if len(promptIDs) == 0 {
		return nil, fmt.Errorf("empty prompt: the first response token has no previous token")
	}
	c := newCond(m)
	for _, id := range promptIDs {
		c.push(id)
	}
	z := make([]float64, m.V())
	out := make([]float64, len(responseIDs))
	prev := promptIDs[len(promptIDs)-1]
	for i, id := range responseIDs {
		m.LogitsAt(c.ctx, prev, z)
		out[i] = z[id] - LogSumExp(z)
		c.push(id)
		prev = id
	}
	return out, nil
}

// TokenLogProb is one token of a distribution and its log-probability.
type TokenLogProb struct {
	ID      int
	LogProb float64
}

// rankOf returns the 1-based rank of id in lp (1 = most likely); ties with
// a lower id rank first.
func rankOf(lp []float64, id int) int {
	r := 1
	x := lp[id]
	for v, y := range lp {
		if y > x || (y == x && v < id) {
			r++
		}
	}
	return r
}

// TopK returns the k most likely entries of lp, best first, ties by lower id.
func TopK(lp []float64, k int) []TokenLogProb {
	if k > len(lp) {
		k = len(lp)
	}
	if k <= 0 {
		return nil
	}
	out := make([]TokenLogProb, 0, k)
	for v, x := range lp {
		if len(out) == k && x <= out[k-1].LogProb {
			continue
		}
		// insert keeping out sorted descending; equal values keep id order
		i := len(out)
		if i < k {
			out = append(out, TokenLogProb{})
		} else {
			i = k - 1
		}
		for i > 0 && out[i-1].LogProb < x {
			out[i] = out[i-1]
			i--
		}
		out[i] = TokenLogProb{ID: v, LogProb: x}
	}
	return out
}
