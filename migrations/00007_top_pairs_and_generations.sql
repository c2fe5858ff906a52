-- +goose Up
-- The best-ranked selected pairs of each iteration, in rank order: the
-- first 10,000 ranks of the stored selection (all of it when smaller).
-- Scoring writes them beside the ranks in pairs. An index on pairs (rank)
-- would answer top-N queries as well, but scoring rewrites rank for every
-- pair, and with an index on it those updates are no longer HOT updates:
-- a million new pairs scored 2.6 times as long (README, Performance).
-- Writing 10,000 rows here costs scoring a few milliseconds.
CREATE TABLE top_pairs (
    iteration_id bigint NOT NULL REFERENCES iterations(id) ON DELETE CASCADE,
    rank         integer NOT NULL CHECK (rank >= 1),
    pair_id      bigint NOT NULL,
    PRIMARY KEY (iteration_id, rank)
);

INSERT INTO top_pairs (iteration_id, rank, pair_id)
SELECT iteration_id, rank, id FROM pairs WHERE selected AND rank <= 10000;

-- How many rewrites separate a prompt from its original: 0 for a prompt
-- that was loaded, its parent's plus 1 for an evolved one. A prompt's
-- parent is set when it is inserted and never changes, so the number is
-- set then too (a trigger, for every way a prompt is inserted), and the
-- deepest evolved prompts of a run are found by index instead of by
-- walking every lineage.
ALTER TABLE prompts ADD COLUMN generation integer NOT NULL DEFAULT 0;

-- Prompts already stored: parents have smaller ids than their children
-- (a parent is stored before its rewrites), but a walk from the roots
-- does not depend on it.
WITH RECURSIVE walk AS (
    SELECT id, 0 AS generation FROM prompts WHERE parent_prompt_id IS NULL
  UNION ALL
    SELECT c.id, w.generation + 1 FROM walk w JOIN prompts c ON c.parent_prompt_id = w.id
)
UPDATE prompts p SET generation = w.generation FROM walk w WHERE w.id = p.id AND w.generation > 0;

-- +goose StatementBegin
CREATE FUNCTION prompts_set_generation() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    NEW.generation := coalesce((SELECT generation + 1 FROM prompts WHERE id = NEW.parent_prompt_id), 0);
    RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER prompts_set_generation BEFORE INSERT ON prompts
    FOR EACH ROW WHEN (NEW.parent_prompt_id IS NOT NULL) EXECUTE FUNCTION prompts_set_generation();

CREATE INDEX prompts_generation_idx ON prompts (generation DESC, id) WHERE generation > 0;

-- A prompt's rewrites with their ids and strategies, read from the index
-- alone: the report counts the rewrites of an iteration's evolve tasks
-- that reached the next pool, by strategy, without reading the prompts
-- (prompts are never updated, so the index costs inserts only).
CREATE INDEX prompts_parent_strategy_idx ON prompts (parent_prompt_id) INCLUDE (id, strategy)
    WHERE parent_prompt_id IS NOT NULL;
DROP INDEX prompts_parent_idx;

-- +goose Down
CREATE INDEX prompts_parent_idx ON prompts (parent_prompt_id) WHERE parent_prompt_id IS NOT NULL;
DROP INDEX prompts_parent_strategy_idx;
DROP INDEX prompts_generation_idx;
DROP TRIGGER prompts_set_generation ON prompts;
DROP FUNCTION prompts_set_generation();
ALTER TABLE prompts DROP COLUMN generation;
DROP TABLE top_pairs;
