package metric

import (
	"fmt"
	"math"
	"strings"
)

// DefaultBeta is the KL weight β used for the DPO-form implicit margin and as
// the base β of ε-DPO when nothing else is configured (0.01, as in Lee et al.).
const DefaultBeta = 0.01

// Sample is one sampled response of a prompt, as the pairing step sees it.
type Sample struct {
	// Index is the sample index 0..n-1 within its prompt. Ties in reward are
	// broken by it, so indexes must be distinct.
	Index int
	// Content is the response text; chosen and rejected must differ.
	Content string
	// Tokens is the response token count |y|; a sample with Tokens <= 0 is
	// invalid and is dropped before pairing.
	Tokens int
	// LogProb is log π(y|x), the sum of the policy's token log-probs (nats).
	LogProb float64
	// RefLogProb is log π_ref(y|x) under the reference model, nil when no
	// reference scorer ran.
	RefLogProb *float64
	// Reward is the explicit reward r(x, y) from the reward model.
	Reward float64
}

// NoPairReason says why a prompt's samples yield no preference pair. The
// values are stable strings meant for storage and reports.
type NoPairReason string

// The reasons MakePair gives for not forming a pair.
const (
	// NoPairAllRewardsEqual: every valid sample has the same reward, so there
	// is no preference to learn.
	NoPairAllRewardsEqual NoPairReason = "all_rewards_equal"
	// NoPairIdenticalTexts: the chosen and rejected responses have the same
	// text (the rewards differ only by reward-model noise).
	NoPairIdenticalTexts NoPairReason = "identical_texts"
	// NoPairTooFewValidSamples: fewer than two samples survived validation.
	NoPairTooFewValidSamples NoPairReason = "too_few_valid_samples"
	// NoPairMarginNotFinite: the chosen and rejected samples are finite but
	// a margin between them overflows float64 (e.g. rewards of ±1e308). No
	// scoring could use it: Go's NewScorer and the SQL scoring reject a
	// non-finite margin, so it is never stored.
	NoPairMarginNotFinite NoPairReason = "margin_not_finite"
)

// Pair is the best-vs-worst preference pair of one prompt with its margins.
type Pair struct {
	// Chosen and Rejected are the Sample.Index values of y_w and y_l.
	Chosen, Rejected int
	// ExplicitMargin is m_ex = r(x,y_w) − r(x,y_l), always > 0 for a pair.
	ExplicitMargin float64
	// ImplicitMargin is the reference-free, length-normalised (SimPO-form)
	// margin m_im = log π(y_w|x)/|y_w| − log π(y_l|x)/|y_l|.
	ImplicitMargin float64
	// DPOMargin is β·[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log
	// π_ref(y_l))], nil unless both chosen and rejected carry RefLogProb.
	DPOMargin *float64
}

// ImplicitForm names which implicit margin a pool is scored with.
type ImplicitForm string

// The implicit-margin forms of DESIGN §1.1.
const (
	// ImplicitSimPO is the default, reference-free length-normalised margin.
	ImplicitSimPO ImplicitForm = "simpo"
	// ImplicitDPO is the β-scaled log-ratio margin; it needs a reference.
	ImplicitDPO ImplicitForm = "dpo"
)

// ParseImplicitForm parses "simpo" or "dpo" (surrounding space ignored).
func ParseImplicitForm(s string) (ImplicitForm, error) {
	switch f := ImplicitForm(strings.TrimSpace(s)); f {
	case ImplicitSimPO, ImplicitDPO:
		return f, nil
	}
	return "", fmt.Errorf("unknown implicit margin form %q: want %q or %q", s, ImplicitSimPO, ImplicitDPO)
}

// Item turns the pair into a scoring input with the given pool-wide id, using
// the implicit margin of form. It fails for ImplicitDPO when the pair has no
// DPO margin (no reference log-probs were recorded).
func (p Pair) Item(id int64, form ImplicitForm) (Item, error) {
	switch form {
	case ImplicitSimPO:
		return Item{ID: id, ExplicitMargin: p.ExplicitMargin, ImplicitMargin: p.ImplicitMargin}, nil
	case ImplicitDPO:
		if p.DPOMargin == nil {
			return Item{}, fmt.Errorf("pair %d has no DPO margin: the dpo form needs reference log-probs for chosen and rejected (configure a reference scorer or use %q)", id, ImplicitSimPO)
		}
		return Item{ID: id, ExplicitMargin: p.ExplicitMargin, ImplicitMargin: *p.DPOMargin}, nil
	}
	return Item{}, fmt.Errorf("unknown implicit margin form %q: want %q or %q", form, ImplicitSimPO, ImplicitDPO)
}

// MakePair forms the best-vs-worst pair of one prompt's samples (DESIGN §1.1).
//
// Invalid samples are dropped first: Tokens <= 0, a non-finite LogProb or
// Reward, or a non-finite RefLogProb when one is given. Of the rest, chosen is
// the highest reward and rejected the lowest reward, ties to the lowest
// Index for both: numpy's argmax and argmin, which the authors' code takes,
// return the first of equal values. When no pair can be formed the reason is
// returned and the Pair is zero; that includes a margin that overflows to
// ±Inf. beta (> 0, e.g. DefaultBeta) scales the DPO margin.
//
// The error reports a caller bug, not a data property: a non-positive or
// non-finite beta, or two samples with the same Index.
func MakePair(samples []Sample, beta float64) (Pair, NoPairReason, error) {
	if !(beta > 0) || math.IsInf(beta, 1) {
		return Pair{}, "", fmt.Errorf("beta must be a positive finite number, got %g", beta)
	}
	seen := make(map[int]bool, len(samples))
	var w, l *Sample
	valid := 0
	for i := range samples {
		s := &samples[i]
		if seen[s.Index] {
			return Pair{}, "", fmt.Errorf("sample index %d appears twice", s.Index)
		}
		seen[s.Index] = true
		if !validSample(s) {
			continue
		}
		valid++
		if w == nil || s.Reward > w.Reward || (s.Reward == w.Reward && s.Index < w.Index) {
			w = s
		}
		if l == nil || s.Reward < l.Reward || (s.Reward == l.Reward && s.Index < l.Index) {
			l = s
		}
	}
	switch {
	case valid < 2:
		return Pair{}, NoPairTooFewValidSamples, nil
	case w.Reward == l.Reward:
		return Pair{}, NoPairAllRewardsEqual, nil
	case w.Content == l.Content:
		return Pair{}, NoPairIdenticalTexts, nil
	}
	p := Pair{
		Chosen:         w.Index,
		Rejected:       l.Index,
		ExplicitMargin: w.Reward - l.Reward,
		ImplicitMargin: simpoMargin(*w, *l),
	}
	if w.RefLogProb != nil && l.RefLogProb != nil {
		m := dpoMargin(beta, *w, *l)
		p.DPOMargin = &m
	}
	if !finite(p.ExplicitMargin) || !finite(p.ImplicitMargin) || (p.DPOMargin != nil && !finite(*p.DPOMargin)) {
		return Pair{}, NoPairMarginNotFinite, nil
	}
	return p, "", nil
}

func validSample(s *Sample) bool {
	if s.Tokens <= 0 || !finite(s.LogProb) || !finite(s.Reward) {
		return false
	}
	return s.RefLogProb == nil || finite(*s.RefLogProb)
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
