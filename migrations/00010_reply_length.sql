-- +goose Up
-- Reply length (issue 23, part 1). Each pair carries its replies' token
-- counts, as it carries their rewards (migration 4): the length statistics
-- and the length-controlled margin of an iteration then read pairs alone.
-- The trigger that copies the rewards when a pair is inserted copies the
-- counts too (a pair's responses never change: migration 8).
ALTER TABLE pairs ADD COLUMN chosen_tokens integer, ADD COLUMN rejected_tokens integer,
    -- explicit_margin − slope·(chosen_tokens − rejected_tokens), slope the
    -- iteration's fit of reward on length (length_fits): the margin with
    -- the length effect removed. Written by every training scoring whatever
    -- scoring.length_control says, so the run can be re-selected either
    -- way; NULL when the fit is undefined (every reply the same length).
    ADD COLUMN residual_margin double precision;
UPDATE pairs p SET chosen_tokens = c.token_count, rejected_tokens = x.token_count
FROM responses c, responses x WHERE c.id = p.chosen_id AND x.id = p.rejected_id;

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION pairs_copy_rewards() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    SELECT reward, token_count INTO NEW.chosen_reward, NEW.chosen_tokens FROM responses WHERE id = NEW.chosen_id;
    SELECT reward, token_count INTO NEW.rejected_reward, NEW.rejected_tokens FROM responses WHERE id = NEW.rejected_id;
    RETURN NEW;
END
$$;
-- +goose StatementEnd

-- The least-squares fit of reward on reply length (tokens) over all of an
-- iteration's rewarded responses, written by each training scoring.
CREATE TABLE length_fits (
    iteration_id  bigint PRIMARY KEY REFERENCES iterations(id) ON DELETE CASCADE,
    responses     bigint NOT NULL,           -- rewarded responses fitted
    slope         double precision,          -- reward per token; NULL when undefined
    intercept     double precision,
    r2            double precision,          -- 0 when every reward is equal
    control       text NOT NULL CHECK (control IN ('none', 'residual')),
    applied       boolean NOT NULL,          -- the residual margin scored the selection
    note          text NOT NULL DEFAULT '',  -- why the fit is undefined, when it is
    fitted_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT applied OR (control = 'residual' AND slope IS NOT NULL))
);

-- Reply length statistics of an iteration, one row per group: every
-- rewarded response (all), the chosen and rejected replies of its pairs,
-- and those of the pairs selected for training. Written with the fit.
CREATE TABLE length_stats (
    iteration_id  bigint NOT NULL REFERENCES iterations(id) ON DELETE CASCADE,
    reply_group   text NOT NULL CHECK (reply_group IN
        ('all', 'chosen', 'rejected', 'selected_chosen', 'selected_rejected')),
    replies       bigint NOT NULL,
    mean_tokens   double precision,          -- NULL for an empty group
    sd_tokens     double precision,          -- population standard deviation
    min_tokens    integer,
    max_tokens    integer,
    PRIMARY KEY (iteration_id, reply_group)
);

-- Both, by run and iteration name: one row per iteration and group.
CREATE VIEW length_details AS
SELECT r.name AS run, i.name AS iteration, i.ordinal AS iteration_ordinal,
       s.reply_group, s.replies, s.mean_tokens, s.sd_tokens, s.min_tokens, s.max_tokens,
       f.slope, f.intercept, f.r2, f.responses AS fitted_responses, f.control, f.applied, f.note,
       i.run_id, s.iteration_id
FROM length_stats s
JOIN iterations i ON i.id = s.iteration_id
JOIN runs r ON r.id = i.run_id
LEFT JOIN length_fits f ON f.iteration_id = s.iteration_id;

-- +goose Down
DROP VIEW length_details;
DROP TABLE length_stats, length_fits;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION pairs_copy_rewards() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    NEW.chosen_reward := (SELECT reward FROM responses WHERE id = NEW.chosen_id);
    NEW.rejected_reward := (SELECT reward FROM responses WHERE id = NEW.rejected_id);
    RETURN NEW;
END
$$;
-- +goose StatementEnd
ALTER TABLE pairs DROP COLUMN chosen_tokens, DROP COLUMN rejected_tokens, DROP COLUMN residual_margin;
