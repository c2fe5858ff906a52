// Package metric holds the pure arithmetic of selfplay (DESIGN §1): pairing a
// prompt's sampled responses best-vs-worst, the explicit and implicit reward
// margins, z-scores over a selection pool, the alignment-potential metric of
// Huang et al. (ICML 2025) and its baselines, deterministic selection, and the
// per-pair KL step of ε-DPO (Lee et al.).
//
// Everything here is a function of its arguments: no I/O, no clocks, no
// global state, so every function is safe for concurrent use. The SQL in
// package store computes the same scores and is tested against these
// functions; the definitions that SQL must reproduce bit for bit (the random
// baseline) or to within rounding (z-scores) are spelled out in the doc
// comments of RandomScore and Scorer.
//
// The flow for one iteration is:
//
//	pair, reason, err := metric.MakePair(samples, metric.DefaultBeta) // per prompt
//	scored, err := metric.Score(items, spec)                          // per pool
//	err = metric.Select(scored, spec)                                 // ranks and flags
//
// Pools too large to hold as []Scored (the `selfplay score` command) use the
// columnar pieces directly: NewScorer, Scorer.Score, RankBy and SelectCount.
package metric
