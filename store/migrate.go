package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/selfplay/selfplay/migrations"
)

// versionTable is goose's bookkeeping table.
const versionTable = "goose_db_version"

// ErrSchemaBehind is returned by CheckSchema when migrations are missing.
var ErrSchemaBehind = errors.New("database schema is behind")

func provider(pool *pgxpool.Pool) (*goose.Provider, *sql.DB, error) {
	db := stdlib.OpenDBFromPool(pool)
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS,
		goose.WithSessionLocker(locker), goose.WithTableName(versionTable))
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return p, db, nil
}

// Migrate applies every pending embedded migration. It holds a PostgreSQL
// advisory lock while it works, so several processes may run it at once;
// running it again when up to date does nothing. It returns the versions
// applied.
func Migrate(ctx context.Context, pool *pgxpool.Pool) ([]int64, error) {
	p, db, err := provider(pool)
	if err != nil {
		return nil, fmt.Errorf("prepare migrations: %w", err)
	}
	defer db.Close()
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	var applied []int64
	for _, r := range results {
		applied = append(applied, r.Source.Version)
	}
	return applied, nil
}

// LatestVersion is the newest migration embedded in this binary.
func LatestVersion() (int64, error) {
	var latest int64
	files, err := migrations.FS.ReadDir(".")
	if err != nil {
		return 0, err
	}
	for _, f := range files {
		v, err := goose.NumericComponent(f.Name())
		if err == nil && v > latest {
			latest = v
		}
	}
	return latest, nil
}

// SchemaVersion reports the newest migration applied to the database, 0
// when none has been.
func SchemaVersion(ctx context.Context, db DBTX) (int64, error) {
	var v int64
	err := db.QueryRow(ctx, `SELECT coalesce(max(version_id), 0) FROM `+versionTable+` WHERE is_applied`).Scan(&v)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return 0, nil
	}
	return v, err
}

// CheckSchema returns ErrSchemaBehind, with a message saying to run
// `selfplay migrate`, when the database lacks migrations this binary has.
func CheckSchema(ctx context.Context, db DBTX) error {
	have, err := SchemaVersion(ctx, db)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	want, err := LatestVersion()
	if err != nil {
		return err
	}
	if have < want {
		return fmt.Errorf("%w (version %d, this binary needs %d): run `selfplay migrate -c FILE` first", ErrSchemaBehind, have, want)
	}
	return nil
}
