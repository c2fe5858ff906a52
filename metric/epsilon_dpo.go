package metric

import (
	"fmt"
	"math"
)

// DefaultEpsilon is ε of ε-DPO, the relative size of the β perturbation and
// of the per-pair KL step (0.01, as in Lee et al.).
const DefaultEpsilon = 0.01

// Sequence is one response under teacher forcing, with the full-vocabulary
// logits that produced each of its tokens.
type Sequence struct {
	// Tokens are the response's token ids, T ≥ 1 of them.
	Tokens []int
	// Policy holds the policy logits z_θ, shape [T][V].
	Policy [][]float64
	// Reference holds the reference logits z_ref, shape [T][V].
	Reference [][]float64
}

// TokenLogProbs are the per-token log-probs (nats) of a Sequence's tokens
// under the current policy, the reference and the two perturbed policies of
// ε-DPO. Each slice has one entry per token.
//
// Which perturbation is which: the DPO policy for a KL weight β is the
// optimum π_β ∝ π_ref·exp(r/β), so r = β·log(π_θ/π_ref) up to a constant,
// and the optimum for another weight β' is π_β' ∝ π_ref·exp(r/β') =
// π_θ^(β/β')·π_ref^(1−β/β'). Per token, in logits, that is the softmax of
// (β/β')·z_θ + (1 − β/β')·z_ref. Hence
//
//	(1+ε)·z_θ − ε·z_ref  is β' = β/(1+ε): β perturbed DOWN (Lee et al.'s β⁻, "p"),
//	(1−ε)·z_θ + ε·z_ref  is β' = β/(1−ε): β perturbed UP   (Lee et al.'s β⁺, "n").
//
// The logits are evaluated as z_θ ± ε·(z_θ − z_ref), algebraically the same
// but exact when policy and reference agree, so identical models never show
// a spurious monotone trend from rounding.
type TokenLogProbs struct {
	// Policy is log softmax(z_θ) at each token.
	Policy []float64
	// Reference is log softmax(z_ref) at each token.
	Reference []float64
	// Down is log softmax((1+ε)·z_θ − ε·z_ref): the policy estimated for β/(1+ε).
	Down []float64
	// Up is log softmax((1−ε)·z_θ + ε·z_ref): the policy estimated for β/(1−ε).
	Up []float64
}

// PerturbedLogProbs computes the TokenLogProbs of seq for perturbation size
// epsilon in (0, 1). The error names the first malformed token or row.
func PerturbedLogProbs(seq Sequence, epsilon float64) (TokenLogProbs, error) {
	if !(epsilon > 0 && epsilon < 1) {
		return TokenLogProbs{}, fmt.Errorf("epsilon %g out of range: want 0 < ε < 1 (default %g)", epsilon, DefaultEpsilon)
	}
	if err := seq.validate(); err != nil {
		return TokenLogProbs{}, err
	}
	n := len(seq.Tokens)
	out := TokenLogProbs{
		Policy:    make([]float64, n),
		Reference: make([]float64, n),
		Down:      make([]float64, n),
		Up:        make([]float64, n),
	}
	for t, tok := range seq.Tokens {
		z, ref := seq.Policy[t], seq.Reference[t]
		out.Policy[t] = logSoftmaxAt(z, ref, 0, tok)
		out.Reference[t] = logSoftmaxAt(ref, ref, 0, tok)
		out.Down[t] = logSoftmaxAt(z, ref, epsilon, tok)
		out.Up[t] = logSoftmaxAt(z, ref, -epsilon, tok)
	}
	return out, nil
}

func (s Sequence) validate() error {
	n := len(s.Tokens)
	if n == 0 {
		return fmt.Errorf("sequence has no tokens")
	}
	if len(s.Policy) != n || len(s.Reference) != n {
		return fmt.Errorf("sequence has %d tokens but %d policy and %d reference logit rows", n, len(s.Policy), len(s.Reference))
	}
	vocab := len(s.Policy[0])
	if vocab == 0 {
		return fmt.Errorf("token 0: empty logit row")
	}
	for t, tok := range s.Tokens {
		if len(s.Policy[t]) != vocab || len(s.Reference[t]) != vocab {
			return fmt.Errorf("token %d: logit rows of length %d (policy) and %d (reference), want %d", t, len(s.Policy[t]), len(s.Reference[t]), vocab)
		}
		if tok < 0 || tok >= vocab {
			return fmt.Errorf("token %d: id %d outside the vocabulary [0, %d)", t, tok, vocab)
		}
		for j := range vocab {
			if !finite(s.Policy[t][j]) || !finite(s.Reference[t][j]) {
				return fmt.Errorf("token %d: non-finite logit at vocabulary index %d", t, j)
			}
		}
	}
	return nil
}

// logSoftmaxAt returns log softmax(x)[tok] for x_j = z_j + c·(z_j − ref_j),
// with the usual max shift so large logits cannot overflow.
func logSoftmaxAt(z, ref []float64, c float64, tok int) float64 {
	x := func(j int) float64 { return z[j] + c*(z[j]-ref[j]) }
	hi := math.Inf(-1)
	for j := range z {
		hi = max(hi, x(j))
	}
	var sum float64
	for j := range z {
		sum += math.Exp(x(j) - hi)
	}
	return x(tok) - hi - math.Log(sum)
}

// EpsilonStep is the ε-DPO decision for one preference pair.
type EpsilonStep struct {
	// Logit is the DPO logit h = [log π(y_w) − log π(y_l)] − [log π_ref(y_w)
	// − log π_ref(y_l)] under the current policy (sums over tokens, nats).
	Logit float64
	// LogitDown is h under the policy estimated for β/(1+ε) (Lee et al.'s p).
	LogitDown float64
	// LogitUp is h under the policy estimated for β/(1−ε) (Lee et al.'s n).
	LogitUp float64
	// Step is s: +1 when LogitDown > Logit > LogitUp (the pair's preference
	// confidence grows monotonically as β goes down, so relax its KL penalty),
	// −1 for LogitUp > Logit > LogitDown, 0 otherwise (ties included).
	Step int
	// Beta is the pair's KL weight β_i = β/(1 + ε·s).
	Beta float64
}

// EpsilonDPOStep computes the ε-DPO step of one pair from the logits of its
// chosen and rejected responses, for base KL weight beta > 0 and perturbation
// epsilon in (0, 1) (defaults DefaultBeta and DefaultEpsilon). The reference
// log-ratio is the same in all three logits, so it cannot change s; it is
// subtracted so the three values are true DPO logits a trainer can reuse.
func EpsilonDPOStep(chosen, rejected Sequence, beta, epsilon float64) (EpsilonStep, error) {
	if !(beta > 0) || math.IsInf(beta, 1) {
		return EpsilonStep{}, fmt.Errorf("beta must be a positive finite number, got %g", beta)
	}
	w, err := PerturbedLogProbs(chosen, epsilon)
	if err != nil {
		return EpsilonStep{}, fmt.Errorf("chosen: %w", err)
	}
	l, err := PerturbedLogProbs(rejected, epsilon)
	if err != nil {
		return EpsilonStep{}, fmt.Errorf("rejected: %w", err)
	}
	refRatio := sum(w.Reference) - sum(l.Reference)
	st := EpsilonStep{
		Logit:     sum(w.Policy) - sum(l.Policy) - refRatio,
		LogitDown: sum(w.Down) - sum(l.Down) - refRatio,
		LogitUp:   sum(w.Up) - sum(l.Up) - refRatio,
	}
	switch {
	case st.LogitDown > st.Logit && st.Logit > st.LogitUp:
		st.Step = 1
	case st.LogitUp > st.Logit && st.Logit > st.LogitDown:
		st.Step = -1
	}
	st.Beta = beta / (1 + epsilon*float64(st.Step))
	return st, nil
}

// Loss is the pair's ε-DPO loss −log σ(β_i·h) = log(1 + e^(−β_i·h)) in
// nats: the DPO loss with the pair's own KL weight (a trainer holds β_i
// constant when it takes the gradient, as Lee et al. do).
func (s EpsilonStep) Loss() float64 {
	// log(1 + e^x) for x = −β_i·h, without overflow for large x.
	x := -s.Beta * s.Logit
	return max(x, 0) + math.Log1p(math.Exp(-math.Abs(x)))
}

// NextBeta is the base β for the next training step. Lee et al. move the
// base β after each batch according to the batch's per-pair decisions; this
// system takes the mean of the per-pair β_i (EpsilonStep.Beta). With an empty
// batch β stays as it is. (The authors' released trainer computes
// β/(1 + ε·mean(s)) instead, which agrees with the mean of β_i to first order
// in ε.)
func NextBeta(beta float64, pairBetas []float64) float64 {
	if len(pairBetas) == 0 {
		return beta
	}
	return sum(pairBetas) / float64(len(pairBetas))
}

func sum(v []float64) float64 {
	var k compensated
	for _, x := range v {
		k.add(x)
	}
	return k.value()
}
