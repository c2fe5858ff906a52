package metric

import (
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
)

// Item is one pair of a selection pool as scoring sees it.
type Item struct {
	// ID identifies the pair (pairs.id); it breaks score ties and seeds Random.
	ID int64
	// ExplicitMargin is m_ex = r_w − r_l.
	ExplicitMargin float64
	// ImplicitMargin is the implicit margin the pool uses (SimPO or DPO
	// form); only its magnitude |m_im| enters the scores.
	ImplicitMargin float64
}

// Scored is an Item with its pool-relative scores. Rank and Selected are set
// by Select; Score leaves them zero.
type Scored struct {
	// ID is the Item's ID.
	ID int64
	// ExplicitZ is z(m_ex) over the pool.
	ExplicitZ float64
	// ImplicitZ is z(|m_im|) over the pool.
	ImplicitZ float64
	// AlignmentPotential is ExplicitZ − w·ImplicitZ, whatever the metric.
	AlignmentPotential float64
	// Score is the value of the Spec's metric; higher ranks first.
	Score float64
	// Rank is the 1-based position by Score descending, ties by ID ascending.
	Rank int
	// Selected marks the top k ranks.
	Selected bool
}

// Scorer scores the items of one pool once the pool's moments are known. It
// is immutable after NewScorer and safe for concurrent use.
type Scorer struct {
	spec              Spec
	explicit, implAbs Moments
}

// NewScorer computes the pool moments of the explicit margins and of the
// implicit margins' magnitudes (explicit[i] and implicit[i] belong to item i;
// the slices must have equal length and finite values) and returns a Scorer
// for spec's metric and weight. Ratio and Count are not looked at.
//
// The z-scores use the population standard deviation, computed in float64
// with a compensated two-pass algorithm; a quantity whose values are all
// equal has std 0 and z = 0 for every item.
func NewScorer(explicit, implicit []float64, spec Spec) (*Scorer, error) {
	if err := spec.validateScoring(); err != nil {
		return nil, err
	}
	if len(explicit) != len(implicit) {
		return nil, fmt.Errorf("%d explicit margins but %d implicit margins", len(explicit), len(implicit))
	}
	for i := range explicit {
		if !finite(explicit[i]) || !finite(implicit[i]) {
			return nil, fmt.Errorf("item %d: margins must be finite, got explicit %g and implicit %g", i, explicit[i], implicit[i])
		}
	}
	return &Scorer{
		spec:     spec,
		explicit: momentsOf(len(explicit), func(i int) float64 { return explicit[i] }),
		implAbs:  momentsOf(len(implicit), func(i int) float64 { return math.Abs(implicit[i]) }),
	}, nil
}

// Explicit returns the pool moments of m_ex.
func (s *Scorer) Explicit() Moments { return s.explicit }

// ImplicitAbs returns the pool moments of |m_im|.
func (s *Scorer) ImplicitAbs() Moments { return s.implAbs }

// Score scores one item of the pool the Scorer was built from. Rank and
// Selected are left zero.
func (s *Scorer) Score(it Item) Scored {
	ez := s.explicit.Z(it.ExplicitMargin)
	iz := s.implAbs.Z(math.Abs(it.ImplicitMargin))
	ap := ez - s.spec.ImplicitWeight*iz
	out := Scored{ID: it.ID, ExplicitZ: ez, ImplicitZ: iz, AlignmentPotential: ap}
	switch s.spec.Metric {
	case AlignmentPotential:
		out.Score = ap
	case ExplicitMargin:
		out.Score = ez
	case ImplicitMargin:
		out.Score = -iz
	case Random:
		out.Score = RandomScore(s.spec.Seed, it.ID)
	}
	return out
}

// Score scores a whole pool with spec's metric and weight, in input order.
// An empty pool gives an empty result; a pool of one has all z-scores 0. The
// error reports an invalid metric or weight, or a non-finite margin.
func Score(items []Item, spec Spec) ([]Scored, error) {
	explicit := make([]float64, len(items))
	implicit := make([]float64, len(items))
	for i, it := range items {
		explicit[i], implicit[i] = it.ExplicitMargin, it.ImplicitMargin
	}
	sc, err := NewScorer(explicit, implicit, spec)
	if err != nil {
		return nil, err
	}
	out := make([]Scored, len(items))
	for i, it := range items {
		out[i] = sc.Score(it)
	}
	return out, nil
}

// randomDenominator is 16^13 = 2^52, the range of 13 hex digits.
const randomDenominator = 1 << 52

// RandomScore is the Random metric: a uniform number in [0, 1) that depends
// on (seed, id) only, so Go and SQL agree exactly. Definition: take the MD5
// of the ASCII string "<seed>:<id>" (both in decimal, a minus sign for
// negatives, e.g. "42:7"), read the first 13 hex digits of the digest as an
// unsigned integer u, and return u / 16^13. All 52 bits fit a float64
// mantissa, so the division is exact. In PostgreSQL:
//
//	('x' || substr(md5(seed::text || ':' || id::text), 1, 13))::bit(52)::bigint / 4503599627370496.0
func RandomScore(seed, id int64) float64 {
	var buf [41]byte
	b := strconv.AppendInt(buf[:0], seed, 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, id, 10)
	sum := md5.Sum(b)
	u := binary.BigEndian.Uint64(sum[:8]) >> 12 // first 52 bits = 13 hex digits
	return float64(u) / randomDenominator
}
