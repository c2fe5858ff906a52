-- +goose Up
-- Scoring rewrites every pair of an iteration in place. Migration 4's
-- trigger that copies a pair's rewards was BEFORE INSERT OR UPDATE OF
-- chosen_id, rejected_id, and any row-level BEFORE UPDATE trigger, even one
-- whose columns an update does not set, makes PostgreSQL fetch and lock
-- each row before updating it: a second WAL record per pair, and a
-- million-pair scoring statement 1.2 times as long (README, Performance). Rewards are
-- copied when a pair is inserted, which is the only way selfplay writes a
-- pair's responses; changing them afterwards is refused (insert a new pair
-- instead), so a copy can never go stale. The refusal is a statement-level
-- trigger with a column list: it fires only for an UPDATE that sets those
-- columns, and costs other updates nothing.
DROP TRIGGER pairs_copy_rewards ON pairs;
CREATE TRIGGER pairs_copy_rewards BEFORE INSERT ON pairs
    FOR EACH ROW EXECUTE FUNCTION pairs_copy_rewards();

-- +goose StatementBegin
CREATE FUNCTION pairs_refuse_new_responses() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a pair''s chosen_id and rejected_id are fixed when it is stored'
        USING ERRCODE = 'feature_not_supported',
              HINT = 'Insert a new pair instead: its rewards are copied from its responses then.';
END
$$;
-- +goose StatementEnd
CREATE TRIGGER pairs_refuse_new_responses BEFORE UPDATE OF chosen_id, rejected_id ON pairs
    FOR EACH STATEMENT EXECUTE FUNCTION pairs_refuse_new_responses();

-- +goose Down
DROP TRIGGER pairs_refuse_new_responses ON pairs;
DROP FUNCTION pairs_refuse_new_responses();
DROP TRIGGER pairs_copy_rewards ON pairs;
CREATE TRIGGER pairs_copy_rewards BEFORE INSERT OR UPDATE OF chosen_id, rejected_id ON pairs
    FOR EACH ROW EXECUTE FUNCTION pairs_copy_rewards();
