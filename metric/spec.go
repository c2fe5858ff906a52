package metric

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/selfplay/selfplay/internal/similar"
)

// Metric names the score that orders a selection pool.
type Metric string

// The metrics of DESIGN §1.1. All are "higher is better".
const (
	// AlignmentPotential is AP = z(m_ex) − w·z(|m_im|), the paper's metric.
	AlignmentPotential Metric = "alignment_potential"
	// ExplicitMargin is z(m_ex): prefer large reward-model margins.
	ExplicitMargin Metric = "explicit_margin"
	// ImplicitMargin is −z(|m_im|): prefer pairs the policy cannot yet tell apart.
	ImplicitMargin Metric = "implicit_margin"
	// Random is a uniform number in [0, 1) fixed by (seed, id); see RandomScore.
	Random Metric = "random"
)

// Metrics lists every metric in documentation order.
var Metrics = []Metric{AlignmentPotential, ExplicitMargin, ImplicitMargin, Random}

// Defaults of the paper, used as this system's defaults (DESIGN §1.1).
const (
	// DefaultImplicitWeight is w of AP for training selection.
	DefaultImplicitWeight = 1.0
	// DefaultEvolveImplicitWeight is w of AP when choosing prompts to evolve.
	DefaultEvolveImplicitWeight = 2.5
	// DefaultRatio is the fraction of pairs kept for training.
	DefaultRatio = 0.4
	// DefaultEvolveRatio is the fraction of prompts chosen for evolution.
	DefaultEvolveRatio = 0.25
	// MaxImplicitWeight bounds w so that AP stays finite for any pool
	// (|z| ≤ √(N−1), so w·z cannot overflow).
	MaxImplicitWeight = 1e6
)

// ParseMetric parses a metric name such as "alignment_potential". Surrounding
// space is ignored; anything else must match exactly, and the error lists the
// valid names and suggests the closest one.
func ParseMetric(s string) (Metric, error) {
	name := strings.TrimSpace(s)
	for _, m := range Metrics {
		if string(m) == name {
			return m, nil
		}
	}
	names := make([]string, len(Metrics))
	for i, m := range Metrics {
		names[i] = string(m)
	}
	msg := fmt.Sprintf("unknown metric %q: want one of %s", s, strings.Join(names, ", "))
	if m, ok := closestMetric(name); ok {
		msg += fmt.Sprintf(" (did you mean %q?)", m)
	}
	return "", fmt.Errorf("%s", msg)
}

// closestMetric finds the metric a misspelt name most likely meant: the same
// name up to case and '-'/' ' for '_', a unique prefix, or one within a small
// edit distance.
func closestMetric(name string) (Metric, bool) {
	norm := strings.ToLower(strings.NewReplacer("-", "_", " ", "_").Replace(name))
	if norm == "" {
		return "", false
	}
	best, bestDist := Metric(""), 4 // suggest only within 3 edits
	for _, m := range Metrics {
		if norm == string(m) || strings.HasPrefix(string(m), norm) {
			return m, true
		}
		if d := similar.Distance(norm, string(m)); d < bestDist {
			best, bestDist = m, d
		}
	}
	return best, best != ""
}

// Spec says how a pool is scored and how much of it is selected. The zero
// value is not valid: set Metric and exactly one of Ratio or Count (see
// DefaultSpec for the paper's training-selection settings).
type Spec struct {
	// Metric orders the pool.
	Metric Metric
	// ImplicitWeight is w in AP = z(m_ex) − w·z(|m_im|), in [0,
	// MaxImplicitWeight]. 0 is meaningful (AP then orders like
	// explicit_margin); DefaultImplicitWeight is 1.0.
	ImplicitWeight float64
	// Ratio is the fraction of the pool to keep, in (0, 1]; k = ⌊Ratio·N⌋
	// (see SelectCount). Leave 0 when Count is set.
	Ratio float64
	// Count keeps the top Count items (all of them when N < Count). Leave 0
	// when Ratio is set.
	Count int
	// Seed fixes the Random metric; any value, 42 in the CLI.
	Seed int64
}

// DefaultSpec is the paper's training selection: alignment potential with
// w = 1.0, keeping the top 40%, seed 42.
func DefaultSpec() Spec {
	return Spec{Metric: AlignmentPotential, ImplicitWeight: DefaultImplicitWeight, Ratio: DefaultRatio, Seed: 42}
}

// validateScoring checks the fields Score uses.
func (s Spec) validateScoring() error {
	if !slices.Contains(Metrics, s.Metric) {
		if _, err := ParseMetric(string(s.Metric)); err != nil {
			return err
		}
		return fmt.Errorf("metric %q has surrounding space", s.Metric)
	}
	if math.IsNaN(s.ImplicitWeight) || s.ImplicitWeight < 0 || s.ImplicitWeight > MaxImplicitWeight {
		return fmt.Errorf("implicit weight %g out of range: want 0 <= w <= %g (the paper uses 1.0 for training and 2.5 for evolution)", s.ImplicitWeight, float64(MaxImplicitWeight))
	}
	return nil
}

// validateSelection checks the fields Select uses.
func (s Spec) validateSelection() error {
	switch {
	case s.Ratio != 0 && s.Count != 0:
		return fmt.Errorf("set a selection ratio or a count, not both (ratio %g, count %d)", s.Ratio, s.Count)
	case s.Count < 0:
		return fmt.Errorf("selection count %d must be positive", s.Count)
	case s.Count > 0:
		return nil
	case s.Ratio == 0:
		return fmt.Errorf("set a selection ratio in (0, 1] or a positive count")
	case !(s.Ratio > 0 && s.Ratio <= 1):
		return fmt.Errorf("selection ratio %g out of range: want 0 < ratio <= 1 (e.g. 0.4 keeps the top 40%%)", s.Ratio)
	}
	return nil
}

// Validate reports the first problem with s, in words a user can act on.
func (s Spec) Validate() error {
	if err := s.validateScoring(); err != nil {
		return err
	}
	return s.validateSelection()
}
