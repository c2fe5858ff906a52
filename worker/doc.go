// Package worker consumes task messages from JetStream and does the
// per-prompt work of an iteration: generate (sample, reward, score under a
// reference, pair, store) and evolve (rewrite a selected prompt with each
// strategy, filter, store the new prompts). Workers are stateless: every
// task's results are written in one transaction, and its message is
// acknowledged only after that commit, so redeliveries and races never
// duplicate a row.
package worker
