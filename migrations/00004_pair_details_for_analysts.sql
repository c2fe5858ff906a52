-- +goose Up
-- Trigram indexes make `ILIKE '%words%'` on prompt texts an index search.
-- pg_trgm ships with PostgreSQL (contrib) and is a trusted extension: the
-- owner of the database, or any role with CREATE on it, may install it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- The content of the last user message of a chat, NULL when it has none:
-- the prompt's text. One expression of immutable functions, so it can be
-- indexed, and PostgreSQL inlines it wherever it is called.
CREATE FUNCTION last_user_message(messages jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN jsonb_path_query_array(messages, '$[*] ? (@.role == "user")') -> -1 ->> 'content';

CREATE INDEX prompts_text_trgm_idx ON prompts USING gin (last_user_message(messages) gin_trgm_ops);

-- No index on rank (or on any column scoring writes): scoring's updates
-- would no longer be HOT updates. With an index on (iteration_id, rank),
-- scoring a million new pairs took 2.6 times as long (README, Performance).

-- A prompt's pairs in every iteration, found from the prompt.
CREATE INDEX pairs_prompt_idx ON pairs (prompt_id);

-- Each pair carries its responses' rewards, so sums and histograms of
-- rewards over an iteration read pairs alone instead of looking up two
-- responses of 1–2 KB per pair. The database fills them from the responses
-- whatever inserts the pair (a response's reward is written with it and
-- never changed), and here for the pairs already stored.
ALTER TABLE pairs ADD COLUMN chosen_reward double precision, ADD COLUMN rejected_reward double precision;
UPDATE pairs p SET chosen_reward = c.reward, rejected_reward = x.reward
FROM responses c, responses x WHERE c.id = p.chosen_id AND x.id = p.rejected_id;

-- +goose StatementBegin
CREATE FUNCTION pairs_copy_rewards() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    NEW.chosen_reward := (SELECT reward FROM responses WHERE id = NEW.chosen_id);
    NEW.rejected_reward := (SELECT reward FROM responses WHERE id = NEW.rejected_id);
    RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER pairs_copy_rewards BEFORE INSERT OR UPDATE OF chosen_id, rejected_id ON pairs
    FOR EACH ROW EXECUTE FUNCTION pairs_copy_rewards();

-- The same rows and columns as before, and the ids beside the names. The
-- joins are LEFT JOINs to rows that always exist (NOT NULL columns and
-- foreign keys to primary keys), so they return what inner joins did, and
-- the planner drops each join whose columns a query does not read: a count
-- or an average over pair columns reads pairs alone.
CREATE OR REPLACE VIEW pair_details AS
SELECT
    r.name                   AS run,
    i.name                   AS iteration,
    i.ordinal                AS iteration_ordinal,
    i.policy_model,
    p.id                     AS pair_id,
    p.prompt_id,
    pr.messages              AS prompt_messages,
    last_user_message(pr.messages) AS prompt_text,
    pr.source                AS prompt_source,
    pr.parent_prompt_id,
    pr.strategy              AS prompt_strategy,
    c.content                AS chosen,
    x.content                AS rejected,
    p.chosen_reward,
    p.rejected_reward,
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
    p.evolve_selected,
    i.run_id,
    p.iteration_id
FROM pairs p
LEFT JOIN iterations i ON i.id = p.iteration_id
LEFT JOIN runs r ON r.id = i.run_id
LEFT JOIN prompts pr ON pr.id = p.prompt_id
LEFT JOIN responses c ON c.id = p.chosen_id
LEFT JOIN responses x ON x.id = p.rejected_id;

-- +goose Down
DROP VIEW pair_details;
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
DROP TRIGGER pairs_copy_rewards ON pairs;
DROP FUNCTION pairs_copy_rewards();
ALTER TABLE pairs DROP COLUMN chosen_reward, DROP COLUMN rejected_reward;
DROP INDEX pairs_prompt_idx, prompts_text_trgm_idx;
DROP FUNCTION last_user_message(jsonb);
-- pg_trgm stays: other objects may use it, and it costs nothing unused.
