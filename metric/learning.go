package metric

import (
	"fmt"
	"math"
)

// ImplicitMarginOf is the implicit margin of chosen over rejected in form:
// simpo, log π(y_w|x)/|y_w| − log π(y_l|x)/|y_l| from LogProb and Tokens;
// dpo, β·[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))],
// which needs RefLogProb on both. MakePair computes the same two margins.
func ImplicitMarginOf(form ImplicitForm, beta float64, chosen, rejected Sample) (float64, error) {
	switch form {
	case ImplicitSimPO:
		if chosen.Tokens <= 0 || rejected.Tokens <= 0 {
			return 0, fmt.Errorf("the simpo margin needs positive token counts, got %d and %d", chosen.Tokens, rejected.Tokens)
		}
		return simpoMargin(chosen, rejected), nil
	case ImplicitDPO:
		if chosen.RefLogProb == nil || rejected.RefLogProb == nil {
			return 0, fmt.Errorf("the dpo margin needs reference log-probs of chosen and rejected")
		}
		return dpoMargin(beta, chosen, rejected), nil
	}
	return 0, fmt.Errorf("unknown implicit margin form %q: want %q or %q", form, ImplicitSimPO, ImplicitDPO)
}

func simpoMargin(w, l Sample) float64 {
	return w.LogProb/float64(w.Tokens) - l.LogProb/float64(l.Tokens)
}

func dpoMargin(beta float64, w, l Sample) float64 {
	return beta * ((w.LogProb - *w.RefLogProb) - (l.LogProb - *l.RefLogProb))
}

// LearningRow is one pair of a learning check: what it was before training
// and how its implicit margin moved under the new policy.
type LearningRow struct {
	PairID   int64
	Selected bool
	// ExplicitMargin is m_ex (> 0 for every pair).
	ExplicitMargin float64
	// OldImplicit and NewImplicit are the implicit margin (the run's form)
	// before and after training; Delta is NewImplicit − OldImplicit.
	OldImplicit, NewImplicit, Delta float64
	// AlignmentPotential is the pair's stored AP (the run's implicit_weight).
	AlignmentPotential float64
	// Random is the random metric's score of the pair (RandomScore with the
	// selection seed).
	Random float64
}

// The metrics whose scores a learning check correlates with Δ, in the
// order reports show them.
var LearningMetrics = []Metric{AlignmentPotential, ExplicitMargin, ImplicitMargin, Random}

// metricScore is the pair's score under a metric, up to a monotone map:
// Spearman's coefficient only sees order, so explicit_margin is m_ex
// itself and implicit_margin −|m_im| (their z-scores order the same way).
func (r LearningRow) metricScore(m Metric) float64 {
	switch m {
	case AlignmentPotential:
		return r.AlignmentPotential
	case ExplicitMargin:
		return r.ExplicitMargin
	case ImplicitMargin:
		return -math.Abs(r.OldImplicit)
	}
	return r.Random
}

// Correlation is Spearman's ρ of Δ with one metric's score over the checked
// pairs, with its 95% bootstrap interval; nil fields when undefined.
type Correlation struct {
	Rho      *float64  `json:"rho"`
	Interval *Interval `json:"ci95"`
}

// GroupStats summarise the checked pairs of one side of the selection.
type GroupStats struct {
	N int `json:"n"`
	// MeanDelta is the mean of Δ; nil when N is 0.
	MeanDelta *float64 `json:"mean_delta"`
	// LearnedBefore and Learned are the shares of pairs whose implicit
	// margin agreed in sign with the explicit margin (was positive) before
	// training and after it; nil when N is 0.
	LearnedBefore *float64 `json:"learned_before"`
	Learned       *float64 `json:"learned"`
}

// LearningSummary is what a learning check reports.
type LearningSummary struct {
	// Model is the new policy the pairs were teacher-forced under; Implicit
	// the margin's form.
	Model    string `json:"model"`
	Implicit string `json:"implicit"`
	// Pairs in the iteration's pool, of them Sampled checked (Checked have
	// a result; the rest failed).
	Pairs   int `json:"pairs"`
	Sampled int `json:"sampled"`
	Checked int `json:"checked"`
	// Selected and NotSelected split the checked pairs by the training
	// selection.
	Selected    GroupStats `json:"selected"`
	NotSelected GroupStats `json:"not_selected"`
	// Spearman of Δ with each metric's score (LearningMetrics), over all
	// checked pairs; the intervals from BootstrapResamples resamples with
	// BootstrapSeed.
	Spearman      map[Metric]Correlation `json:"spearman"`
	Resamples     int                    `json:"bootstrap_resamples"`
	BootstrapSeed uint64                 `json:"bootstrap_seed"`
}

// SummarizeLearning computes a learning check's summary over its rows;
// seed seeds the bootstrap (resamples of them, BootstrapResamples in the
// pipeline).
func SummarizeLearning(rows []LearningRow, resamples int, seed uint64) LearningSummary {
	s := LearningSummary{Checked: len(rows), Spearman: map[Metric]Correlation{}, Resamples: resamples, BootstrapSeed: seed}
	var sel, not []LearningRow
	for _, r := range rows {
		if r.Selected {
			sel = append(sel, r)
		} else {
			not = append(not, r)
		}
	}
	s.Selected, s.NotSelected = groupStats(sel), groupStats(not)
	delta := make([]float64, len(rows))
	for i, r := range rows {
		delta[i] = r.Delta
	}
	for _, m := range LearningMetrics {
		score := make([]float64, len(rows))
		for i, r := range rows {
			score[i] = r.metricScore(m)
		}
		var c Correlation
		if rho, ok := Spearman(score, delta); ok {
			c.Rho = &rho
		}
		if iv, ok := SpearmanBootstrap(score, delta, resamples, seed); ok {
			c.Interval = &iv
		}
		s.Spearman[m] = c
	}
	return s
}

func groupStats(rows []LearningRow) GroupStats {
	g := GroupStats{N: len(rows)}
	if len(rows) == 0 {
		return g
	}
	var sum float64
	var before, after int
	for _, r := range rows {
		sum += r.Delta
		if r.OldImplicit > 0 {
			before++
		}
		if r.NewImplicit > 0 {
			after++
		}
	}
	n := float64(len(rows))
	mean, b, a := sum/n, float64(before)/n, float64(after)/n
	g.MeanDelta, g.LearnedBefore, g.Learned = &mean, &b, &a
	return g
}
