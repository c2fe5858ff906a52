-- +goose Up
-- Deleting rows that pairs point at reads pairs once per deleted row: a
-- response (its chosen and rejected references, checked when a run,
-- iteration or pool entry is deleted and its responses go with it) and a
-- pair (pair_learning's rows, deleted with it). Without indexes on those
-- columns each check reads the whole table, so deleting a run took the
-- square of its size: 30 s for 20,000 pairs, against 0.9 s with them
-- (4.5 s for 100,000; BenchmarkDeleteRun).
CREATE INDEX pairs_chosen_idx ON pairs (chosen_id);
CREATE INDEX pairs_rejected_idx ON pairs (rejected_id);
CREATE INDEX pair_learning_pair_idx ON pair_learning (pair_id);

-- +goose Down
DROP INDEX pair_learning_pair_idx;
DROP INDEX pairs_rejected_idx;
DROP INDEX pairs_chosen_idx;
