-- +goose Up
-- The deployment: one random token per database. Task subjects and the
-- workers' consumer are named from it, so deployments sharing a NATS server
-- and a stream name never see each other's messages. The database it was
-- made for (its oid and the server's system identifier) is kept with it: a
-- copy (CREATE DATABASE … TEMPLATE, a restored dump) is another database
-- and gets a token of its own the first time it is read
-- (store.DeploymentToken).
CREATE TABLE deployment (
    singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    token              text NOT NULL DEFAULT left(md5(random()::text || clock_timestamp()::text), 16),
    db_oid             bigint,
    system_identifier  bigint
);
INSERT INTO deployment DEFAULT VALUES;

-- A task's losses: how many times JetStream held no deliverable message for
-- it while it was pending (the consumer had nothing queued or in flight).
-- publications stays the message id's generation and only ever grows, so a
-- re-publication is never dropped as a duplicate; losses start again at 0
-- when a failed task is retried.
ALTER TABLE tasks ADD COLUMN losses integer NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE tasks DROP COLUMN losses;
DROP TABLE deployment;
