// Package report makes the per-iteration HTML report: a single
// self-contained file (inline CSS and SVG, no scripts, nothing fetched)
// that shows an iteration of a run the way a researcher judges it —
//
//   - the reward distribution of chosen vs rejected responses;
//   - explicit margin vs |implicit margin|, selected pairs highlighted;
//   - the alignment-potential histogram with the selection cut-off;
//   - the outcomes of the prompts (paired, each no-pair reason, failed)
//     with the most frequent failure reasons;
//   - prompt evolution: rewrites made and kept per strategy, and why the
//     others were dropped;
//   - across the run's iterations, the mean reward of chosen responses and
//     the selected set's mean margins;
//   - the top selected pairs in full.
//
// Every number comes from SQL over the run (Load), never from logs; the
// charts are drawn server-side as SVG by this package. The orchestrator
// writes report.html next to each export; `selfplay report` writes one on
// demand.
package report
