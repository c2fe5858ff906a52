-- +goose Up
-- Near-duplicate prompts and benchmark contamination (docs/data-quality.md).

-- A prompt's MinHash signature, once per prompt and parameter set (params
-- is minhash.Params.Key, e.g. 'shingle=3,bands=20,rows=6'): prompts are
-- shared by runs, so a second run of a schedule adds no signature.
CREATE TABLE prompt_signatures (
    prompt_id bigint NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
    params    text NOT NULL,
    minhash   bigint[] NOT NULL,
    PRIMARY KEY (prompt_id, params)
);

-- The LSH index of a run: one row per band of each prompt in the run. A
-- lookup probes (run_id, band, hash) once per band of the signature. ordinal
-- is the iteration whose load or evolve tasks brought the prompt into the
-- run (a re-run of a load compares a file's prompts with those before it
-- only). It holds 20 rows per prompt (2 M for a pool of 100,000), written
-- only by the transaction that stores the prompts and their run: it has no
-- foreign keys, whose per-row checks doubled the cost of loading a large
-- pool (68 s against 31 s for 100,000 prompts under load).
CREATE TABLE prompt_bands (
    run_id    bigint NOT NULL,
    band      smallint NOT NULL,
    hash      bigint NOT NULL,
    prompt_id bigint NOT NULL,
    ordinal   int NOT NULL,
    PRIMARY KEY (run_id, band, hash, prompt_id)
);
CREATE INDEX prompt_bands_prompt_idx ON prompt_bands (run_id, prompt_id);

-- Prompts found near-duplicate or contaminated: dropped (left out of the
-- pool) or, for near-duplicates in prompt files under dedup.loaded: report,
-- kept and reported. The prompt's own text is kept here, since a dropped
-- prompt is never stored in prompts.
CREATE TABLE prompt_flags (
    id                bigserial PRIMARY KEY,
    iteration_id      bigint NOT NULL REFERENCES iterations(id) ON DELETE CASCADE,
    reason            text NOT NULL CHECK (reason IN ('near_duplicate', 'contaminated')),
    dropped           boolean NOT NULL,
    hash              text NOT NULL,
    messages          jsonb NOT NULL,
    -- the prompt row when the prompt is stored (a kept near-duplicate, an
    -- evolved prompt dropped from the pool it had entered)
    prompt_id         bigint REFERENCES prompts(id) ON DELETE SET NULL,
    -- the prompt file, or 'evolved' with parent and strategy
    source            text NOT NULL,
    source_id         text,
    parent_prompt_id  bigint REFERENCES prompts(id) ON DELETE SET NULL,
    strategy          text,
    -- near_duplicate: the prompt of the run it matched, the estimate from
    -- the signatures (what the threshold is compared with) and the exact
    -- Jaccard similarity of the two shingle sets, for audit
    matched_prompt_id bigint REFERENCES prompts(id) ON DELETE SET NULL,
    estimated_jaccard double precision,
    exact_jaccard     double precision,
    -- contaminated: the benchmark prompt it shares an n-gram with
    benchmark_file    text,
    benchmark_row     int,
    created_at        timestamptz NOT NULL DEFAULT now()
);
-- One flag per prompt, origin and reason in an iteration: a re-run of a
-- load or of the contamination check adds nothing.
CREATE UNIQUE INDEX prompt_flags_once ON prompt_flags
    (iteration_id, hash, coalesce(parent_prompt_id, 0), coalesce(strategy, ''), reason);

-- Flags with names and texts, for people writing SQL.
CREATE VIEW prompt_flag_details AS
SELECT r.name AS run, i.name AS iteration, i.ordinal AS iteration_ordinal,
       f.reason, f.dropped,
       CASE WHEN f.strategy IS NULL THEN 'loaded' ELSE 'evolved' END AS origin,
       f.source, f.source_id, f.strategy, f.parent_prompt_id, f.prompt_id,
       last_user_message(f.messages) AS prompt_text,
       f.matched_prompt_id, last_user_message(m.messages) AS matched_text,
       f.estimated_jaccard, f.exact_jaccard,
       f.benchmark_file, f.benchmark_row, f.id AS flag_id, f.created_at
FROM prompt_flags f
JOIN iterations i ON i.id = f.iteration_id
JOIN runs r ON r.id = i.run_id
LEFT JOIN prompts m ON m.id = f.matched_prompt_id;

-- +goose Down
DROP VIEW prompt_flag_details;
DROP TABLE prompt_flags;
DROP TABLE prompt_bands;
DROP TABLE prompt_signatures;
