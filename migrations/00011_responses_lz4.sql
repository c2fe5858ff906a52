-- +goose Up
-- A response is kilobytes of text, which PostgreSQL compresses when a row
-- passes 2 KB. Its default method, pglz, took a quarter of the database's
-- CPU while workers stored 5 × 512-token responses (BenchmarkControlPlane,
-- docs/performance.md); lz4 compresses several times faster. Values stored
-- before keep their method (both read back the same). A PostgreSQL built
-- without lz4 refuses the method (feature_not_supported): it keeps pglz.
-- +goose StatementBegin
DO $$
BEGIN
    ALTER TABLE responses ALTER COLUMN content SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this PostgreSQL has no lz4: responses stay compressed with pglz';
END
$$;
-- +goose StatementEnd

-- +goose Down
ALTER TABLE responses ALTER COLUMN content SET COMPRESSION default;
