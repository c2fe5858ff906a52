-- +goose Up
-- A task's status changes once or twice in its life. With status in an
-- index every change is a new row version in every index of tasks; without
-- it, and with room left in each page, the change is a HOT update that
-- touches no index. Every query by status reads the tasks of one
-- iteration, which the primary key's prefix finds as well; and a lookup of
-- one task can no longer be planned through an index that finds all of
-- its iteration's tasks.
DROP INDEX tasks_status_idx;
ALTER TABLE tasks SET (fillfactor = 70);

-- +goose Down
ALTER TABLE tasks RESET (fillfactor);
CREATE INDEX tasks_status_idx ON tasks (iteration_id, kind, status);
