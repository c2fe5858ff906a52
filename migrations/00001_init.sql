-- +goose Up
CREATE TABLE runs (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    config      jsonb NOT NULL,
    -- Random per run row: part of every task message id, so a stream that
    -- outlives its database never mistakes a new run's tasks for old ones.
    nonce       text NOT NULL DEFAULT md5(random()::text || clock_timestamp()::text),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE iterations (
    id               bigserial PRIMARY KEY,
    run_id           bigint NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    ordinal          integer NOT NULL CHECK (ordinal >= 0),
    name             text NOT NULL,
    stage            text NOT NULL DEFAULT 'pending' CHECK (stage IN
        ('pending', 'loading', 'generating', 'scoring', 'selecting', 'evolving',
         'exporting', 'training', 'done', 'failed')),
    policy_model     text NOT NULL,
    reference_model  text NOT NULL DEFAULT '',
    config           jsonb NOT NULL DEFAULT '{}',
    error            text,
    started_at       timestamptz,
    finished_at      timestamptz,
    UNIQUE (run_id, ordinal),
    UNIQUE (run_id, name)
);

CREATE TABLE prompts (
    id                bigserial PRIMARY KEY,
    hash              text NOT NULL UNIQUE,  -- sha256 hex of the canonical messages JSON
    messages          jsonb NOT NULL,
    source            text NOT NULL,          -- file path, or 'evolved'
    source_id         text,                   -- the "id" field of a prompts file line
    parent_prompt_id  bigint REFERENCES prompts(id),
    strategy          text,                   -- evolution strategy that produced it
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX prompts_parent_idx ON prompts (parent_prompt_id) WHERE parent_prompt_id IS NOT NULL;

CREATE TABLE iteration_prompts (
    iteration_id  bigint NOT NULL REFERENCES iterations(id) ON DELETE CASCADE,
    prompt_id     bigint NOT NULL REFERENCES prompts(id),
    PRIMARY KEY (iteration_id, prompt_id)
);

-- Tasks, responses and pairs reference the pool row of their prompt, not
-- iterations and prompts separately: every foreign-key check takes a share
-- lock on the row it finds, and hundreds of tasks a second all share-locking
-- the one iterations row is what PostgreSQL does slowest (multixacts). The
-- pool row is the task's own, and itself references both.
CREATE TABLE tasks (
    iteration_id  bigint NOT NULL,
    prompt_id     bigint NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('generate', 'evolve')),
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    attempts      integer NOT NULL DEFAULT 0,     -- deliveries a worker started
    publications  integer NOT NULL DEFAULT 0,     -- re-publications after a lost message
    outcome       text,   -- generate: 'paired' or the no-pair reason; evolve: kept/made counts
    error         text,
    published_at  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (iteration_id, prompt_id, kind),
    FOREIGN KEY (iteration_id, prompt_id) REFERENCES iteration_prompts ON DELETE CASCADE,
    CHECK (status <> 'failed' OR error IS NOT NULL)
);
CREATE INDEX tasks_status_idx ON tasks (iteration_id, kind, status);

CREATE TABLE responses (
    id               bigserial PRIMARY KEY,
    iteration_id     bigint NOT NULL,
    prompt_id        bigint NOT NULL,
    sample_index     integer NOT NULL CHECK (sample_index >= 0),
    content          text NOT NULL,
    token_count      integer NOT NULL,
    logprob_sum      double precision NOT NULL,
    finish_reason    text NOT NULL DEFAULT '',
    reward           double precision,
    ref_logprob_sum  double precision,
    UNIQUE (iteration_id, prompt_id, sample_index),
    FOREIGN KEY (iteration_id, prompt_id) REFERENCES iteration_prompts ON DELETE CASCADE
);

CREATE TABLE pairs (
    id                   bigserial PRIMARY KEY,
    iteration_id         bigint NOT NULL,
    prompt_id            bigint NOT NULL,
    chosen_id            bigint NOT NULL REFERENCES responses(id),
    rejected_id          bigint NOT NULL REFERENCES responses(id),
    explicit_margin      double precision NOT NULL CHECK (explicit_margin >= 0),
    implicit_margin      double precision NOT NULL,   -- simpo (length-normalised) form
    dpo_margin           double precision,            -- when a reference scored the pair
    explicit_z           double precision,
    implicit_z           double precision,
    alignment_potential  double precision,
    metric_score         double precision,
    selected             boolean NOT NULL DEFAULT false,
    rank                 integer,
    evolve_score         double precision,
    evolve_rank          integer,
    evolve_selected      boolean NOT NULL DEFAULT false,
    UNIQUE (iteration_id, prompt_id),
    FOREIGN KEY (iteration_id, prompt_id) REFERENCES iteration_prompts ON DELETE CASCADE
)
-- Scoring rewrites every pair of an iteration: free room in each page and
-- no index on the rewritten columns let those be HOT updates, with no
-- index maintenance (a million pairs score in seconds, not a minute).
WITH (fillfactor = 45);

CREATE TABLE exports (
    iteration_id  bigint NOT NULL REFERENCES iterations(id) ON DELETE CASCADE,
    kind          text NOT NULL,     -- 'jsonl', 'manifest', ...
    path          text NOT NULL,
    rows          bigint NOT NULL,
    sha256        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (iteration_id, kind)
);

-- The table people query first: one row per pair with its texts and numbers.
CREATE VIEW pair_details AS
SELECT
    r.name                   AS run,
    i.name                   AS iteration,
    i.ordinal                AS iteration_ordinal,
    i.policy_model,
    p.id                     AS pair_id,
    p.prompt_id,
    pr.messages              AS prompt_messages,
    (SELECT m->>'content' FROM jsonb_array_elements(pr.messages) WITH ORDINALITY AS e(m, n)
      WHERE m->>'role' = 'user' ORDER BY n DESC LIMIT 1) AS prompt_text,
    pr.source                AS prompt_source,
    pr.parent_prompt_id,
    pr.strategy              AS prompt_strategy,
    c.content                AS chosen,
    x.content                AS rejected,
    c.reward                 AS chosen_reward,
    x.reward                 AS rejected_reward,
    c.token_count            AS chosen_tokens,
    x.token_count            AS rejected_tokens,
    c.logprob_sum            AS chosen_logps,
    x.logprob_sum            AS rejected_logps,
    c.ref_logprob_sum        AS ref_chosen_logps,
    x.ref_logprob_sum        AS ref_rejected_logps,
    p.explicit_margin,
    p.implicit_margin,
    p.dpo_margin,
    p.explicit_z,
    p.implicit_z,
    p.alignment_potential,
    p.metric_score,
    p.rank,
    p.selected,
    p.evolve_score,
    p.evolve_rank,
    p.evolve_selected
FROM pairs p
JOIN iterations i ON i.id = p.iteration_id
JOIN runs r ON r.id = i.run_id
JOIN prompts pr ON pr.id = p.prompt_id
JOIN responses c ON c.id = p.chosen_id
JOIN responses x ON x.id = p.rejected_id;

-- +goose Down
DROP VIEW pair_details;
DROP TABLE exports, pairs, responses, tasks, iteration_prompts, prompts, iterations, runs;
