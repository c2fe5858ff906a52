package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/selfplay/selfplay/config"
)

// DBTX is what queries need: a *pgxpool.Pool, a *pgx.Conn and a pgx.Tx all
// satisfy it.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Errors callers test with errors.Is.
var (
	ErrNotFound  = errors.New("not found")
	ErrDuplicate = errors.New("already exists")
)

// translate maps driver errors to the package's sentinel errors.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fmt.Errorf("%w: %w", ErrDuplicate, err)
	}
	return err
}

// Open connects a pool to the database at dbURL and pings it. An
// unreachable server is an error naming the host, with the password
// redacted, and saying what to check.
func Open(ctx context.Context, dbURL string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("database.url %s: %w", config.RedactURL(dbURL), scrub(err, dbURL))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, &pingError{fmt.Errorf("connect to PostgreSQL at %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, scrub(err, dbURL))}
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "28") { // invalid authorization
			return nil, &pingError{fmt.Errorf("PostgreSQL at %s:%d refused user %q: %w; check the user and password in database.url or SELFPLAY_DATABASE_URL",
				cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.User, scrub(err, dbURL))}
		}
		return nil, &pingError{fmt.Errorf("PostgreSQL at %s:%d (database %q) is not answering: %w; check that it runs and that database.url or SELFPLAY_DATABASE_URL is right",
			cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, scrub(err, dbURL))}
	}
	return pool, nil
}

// scrub removes the password from an error that might quote the URL.
func scrub(err error, raw string) error {
	u, perr := url.Parse(raw)
	if perr != nil {
		return errors.New("invalid connection string")
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" {
		return err
	}
	return scrubbed{err: err, secret: pw}
}

type scrubbed struct {
	err    error
	secret string
}

func (s scrubbed) Error() string {
	return strings.ReplaceAll(s.err.Error(), s.secret, config.Redacted)
}

func (s scrubbed) Unwrap() error { return s.err }
