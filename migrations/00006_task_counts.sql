-- +goose Up
-- Tasks by iteration, kind, status and (generate tasks only) outcome, kept
-- as tasks change, so a metrics scrape reads a few rows per iteration
-- instead of counting every task of the run.
--
-- Each statement on tasks appends its net change per group to
-- task_count_deltas (statement triggers over transition tables: one
-- INSERT … SELECT per statement, whatever its row count, and no hot row
-- that concurrent workers would queue on). CompactTaskCounts folds the
-- deltas into task_counts; a reader sees task_counts plus the deltas not
-- folded yet, so its cost follows the work done since the last fold.
-- Evolve outcomes (counts of kept rewrites) are not kept: '' stands for
-- them, as for tasks not settled.
CREATE TABLE task_counts (
    iteration_id bigint NOT NULL,
    kind         text NOT NULL,
    status       text NOT NULL,
    outcome      text NOT NULL,
    n            bigint NOT NULL,
    PRIMARY KEY (iteration_id, kind, status, outcome)
);
CREATE TABLE task_count_deltas (
    iteration_id bigint NOT NULL,
    kind         text NOT NULL,
    status       text NOT NULL,
    outcome      text NOT NULL,
    n            bigint NOT NULL
);

-- +goose StatementBegin
CREATE FUNCTION task_counts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_count_deltas (iteration_id, kind, status, outcome, n)
        SELECT iteration_id, kind, status, CASE WHEN kind = 'generate' THEN coalesce(outcome, '') ELSE '' END, count(*)
        FROM new_tasks GROUP BY 1, 2, 3, 4;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO task_count_deltas (iteration_id, kind, status, outcome, n)
        SELECT iteration_id, kind, status, CASE WHEN kind = 'generate' THEN coalesce(outcome, '') ELSE '' END, -count(*)
        FROM old_tasks GROUP BY 1, 2, 3, 4;
    ELSE
        INSERT INTO task_count_deltas (iteration_id, kind, status, outcome, n)
        SELECT iteration_id, kind, status, outcome, sum(n) FROM (
            SELECT iteration_id, kind, status, CASE WHEN kind = 'generate' THEN coalesce(outcome, '') ELSE '' END AS outcome, -1 AS n FROM old_tasks
            UNION ALL
            SELECT iteration_id, kind, status, CASE WHEN kind = 'generate' THEN coalesce(outcome, '') ELSE '' END, 1 FROM new_tasks
        ) d GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_tasks FOR EACH STATEMENT EXECUTE FUNCTION task_counts_changed();
CREATE TRIGGER task_counts_update AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_tasks NEW TABLE AS new_tasks FOR EACH STATEMENT EXECUTE FUNCTION task_counts_changed();
CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_tasks FOR EACH STATEMENT EXECUTE FUNCTION task_counts_changed();

-- +goose StatementBegin
CREATE FUNCTION task_counts_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM task_counts;
    DELETE FROM task_count_deltas;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER task_counts_truncate AFTER TRUNCATE ON tasks
    FOR EACH STATEMENT EXECUTE FUNCTION task_counts_truncated();

INSERT INTO task_counts (iteration_id, kind, status, outcome, n)
SELECT iteration_id, kind, status, CASE WHEN kind = 'generate' THEN coalesce(outcome, '') ELSE '' END, count(*)
FROM tasks GROUP BY 1, 2, 3, 4;

-- +goose Down
DROP TRIGGER task_counts_insert ON tasks;
DROP TRIGGER task_counts_update ON tasks;
DROP TRIGGER task_counts_delete ON tasks;
DROP TRIGGER task_counts_truncate ON tasks;
DROP FUNCTION task_counts_changed();
DROP FUNCTION task_counts_truncated();
DROP TABLE task_count_deltas;
DROP TABLE task_counts;
