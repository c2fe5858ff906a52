-- +goose Up
-- Which endpoint a failed task's error came from and the HTTP status it
-- answered with (NULL when the failure was not an endpoint's, or no status
-- arrived), so failures can be grouped without parsing the error text.
ALTER TABLE tasks ADD COLUMN error_endpoint text, ADD COLUMN error_status integer;
-- Failures recorded before these columns existed: read them from the text.
UPDATE tasks
SET error_endpoint = substring(error FROM 'llm: (\S+) endpoint'),
    error_status = substring(error FROM 'llm: \S+ endpoint[^:]*: status (\d{3}):')::integer
WHERE status = 'failed';

-- +goose Down
ALTER TABLE tasks DROP COLUMN error_endpoint, DROP COLUMN error_status;
