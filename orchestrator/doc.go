// Package orchestrator drives a run: it creates the run and its iterations
// from the schedule, and moves each iteration through its stages —
// loading → generating → scoring → selecting → evolving → exporting →
// training → checking → done — persisting the stage before doing its work, so a
// restarted orchestrator resumes where the last one stopped. Every stage is
// idempotent. A PostgreSQL advisory lock keeps a second orchestrator of the
// same run out.
//
// Stages in detail:
//   - loading: prompt files (all-or-nothing) and/or the prompts the previous
//     iteration evolved form the pool;
//   - generating: one generate task per pool prompt, published to JetStream,
//     waited for; tasks whose messages were lost are re-published;
//   - scoring: the training metric's z-scores, AP, score, rank and selection
//     flag, written by one SQL statement;
//   - selecting: the evolve metric's score, rank and selection flag;
//   - evolving: one evolve task per prompt selected for evolution, when the
//     next iteration takes evolved prompts;
//   - exporting: train.jsonl and manifest.json of the selected pairs;
//   - training: the train hook, then waiting for the next policy model;
//   - checking: with learning_check.enabled, one learn task per sampled
//     pair teacher-forces it under the new policy; the summary goes into
//     the manifest, the report and learning_checks.
package orchestrator
