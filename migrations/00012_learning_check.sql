-- +goose Up
-- The learning check (docs/learning.md): after the train hook has served
-- the next policy, a sample of the iteration's pairs is teacher-forced
-- under it, one `learn` task per pair, in a stage of its own between
-- training and done.
ALTER TABLE iterations DROP CONSTRAINT iterations_stage_check;
ALTER TABLE iterations ADD CONSTRAINT iterations_stage_check CHECK (stage IN
    ('pending', 'loading', 'generating', 'scoring', 'selecting', 'evolving',
     'exporting', 'training', 'checking', 'done', 'failed'));
ALTER TABLE tasks DROP CONSTRAINT tasks_kind_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_kind_check CHECK (kind IN ('generate', 'evolve', 'learn'));

-- One check per iteration: the model that scored the sample and how, fixed
-- when the stage first starts (a resumed check uses the same), and its
-- summary once every task settled (metric.LearningSummary as JSON).
CREATE TABLE learning_checks (
    iteration_id  bigint PRIMARY KEY REFERENCES iterations(id) ON DELETE CASCADE,
    model         text NOT NULL,       -- the new policy, as the policy endpoint serves it
    implicit      text NOT NULL CHECK (implicit IN ('simpo', 'dpo')),
    beta          double precision NOT NULL,
    sample        integer NOT NULL CHECK (sample > 0),
    seed          bigint NOT NULL,
    pairs         integer NOT NULL,    -- pairs in the iteration's pool
    sampled       integer NOT NULL,    -- learn tasks made
    summary       jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);

-- A pair teacher-forced under the new policy: its log-probs of chosen and
-- rejected, its implicit margin in the run's form (simpo: length-normalised
-- by the stored token counts; dpo: β-scaled log-ratio against the stored
-- reference log-probs), the margin before training, and delta = new − old.
CREATE TABLE pair_learning (
    iteration_id      bigint NOT NULL REFERENCES learning_checks(iteration_id) ON DELETE CASCADE,
    pair_id           bigint NOT NULL REFERENCES pairs(id) ON DELETE CASCADE,
    model             text NOT NULL,
    chosen_logps      double precision NOT NULL,
    rejected_logps    double precision NOT NULL,
    implicit_margin   double precision NOT NULL,
    old_implicit_margin double precision NOT NULL,
    delta             double precision NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (iteration_id, pair_id)
);

-- The checked pairs beside their selection and margins, for SQL by hand.
-- learned: the new implicit margin agrees in sign with the explicit margin
-- (positive: the policy now prefers the chosen reply).
CREATE VIEW pair_learning_details AS
SELECT r.name AS run, i.name AS iteration, i.ordinal AS iteration_ordinal,
       l.model, c.implicit AS implicit_form,
       p.id AS pair_id, p.prompt_id, p.selected, p.rank,
       p.explicit_margin, p.alignment_potential, p.metric_score,
       l.old_implicit_margin, l.implicit_margin, l.delta,
       l.implicit_margin > 0 AS learned,
       l.chosen_logps, l.rejected_logps,
       i.run_id, l.iteration_id
FROM pair_learning l
JOIN learning_checks c ON c.iteration_id = l.iteration_id
JOIN pairs p ON p.id = l.pair_id
JOIN iterations i ON i.id = l.iteration_id
JOIN runs r ON r.id = i.run_id;

-- +goose Down
DROP VIEW pair_learning_details;
DROP TABLE pair_learning;
DROP TABLE learning_checks;
DELETE FROM tasks WHERE kind = 'learn';
ALTER TABLE tasks DROP CONSTRAINT tasks_kind_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_kind_check CHECK (kind IN ('generate', 'evolve'));
UPDATE iterations SET stage = 'training' WHERE stage = 'checking';
ALTER TABLE iterations DROP CONSTRAINT iterations_stage_check;
ALTER TABLE iterations ADD CONSTRAINT iterations_stage_check CHECK (stage IN
    ('pending', 'loading', 'generating', 'scoring', 'selecting', 'evolving',
     'exporting', 'training', 'done', 'failed'));
