package store_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// readerRole returns a role name unique to the test and drops the role
// when the test ends (roles are cluster-wide; the test database is dropped
// after this cleanup runs).
func readerRole(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "reader_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = pool.Exec(ctx, `DROP OWNED BY `+name)
		_, _ = pool.Exec(ctx, `DROP ROLE IF EXISTS `+name)
	})
	return name
}

// readerPassword is a fresh password for a role a test creates.
func readerPassword() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "rpw-" + hex.EncodeToString(b)
}

// connectAs opens a connection to the database at dbURL as role with its
// password, which a server checking passwords (the compose PostgreSQL)
// verifies; a trusting one lets any password in.
func connectAs(t *testing.T, dbURL, role, password string) *pgx.Conn {
	t.Helper()
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	u.User = url.UserPassword(role, password)
	conn, err := pgx.Connect(context.Background(), u.String())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func requireDenied(t *testing.T, err error, what string) {
	t.Helper()
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "%s: want permission denied, got %v", what, err)
	require.Equal(t, "42501", pgErr.Code, "%s: %v", what, err) // insufficient_privilege
}

func TestReaderRoleReadsAndCannotWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, dbURL := storetest.NewPool(t)
	id := newIteration(t, pool) // a run and an iteration to read
	role := readerRole(t, pool)
	password := readerPassword()

	g, err := store.EnsureReaderRole(ctx, pool, role, password)
	require.NoError(t, err)
	require.True(t, g.Created)
	require.Equal(t, "public", g.Schema)
	require.Empty(t, g.Notes)
	var canConnect bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT has_database_privilege($1, current_database(), 'CONNECT')`, role).Scan(&canConnect))
	require.True(t, canConnect)
	for _, rel := range []string{"runs", "iterations", "prompts", "tasks", "responses", "pairs", "exports", "pair_details"} {
		require.Contains(t, g.Objects, rel)
	}

	conn := connectAs(t, dbURL, role, password)
	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pair_details`).Scan(&n))
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM iterations WHERE id = $1`, id).Scan(&n))
	require.Equal(t, 1, n, "the reader sees the rows")

	writes := map[string]string{
		"insert":   `INSERT INTO runs (name, config) VALUES ('intruder', '{}')`,
		"update":   `UPDATE iterations SET stage = 'failed'`,
		"delete":   `DELETE FROM runs`,
		"truncate": `TRUNCATE pairs`,
		"nextval":  `SELECT nextval('runs_id_seq')`,
		"ddl":      `ALTER TABLE runs ADD COLUMN x int`,
		"drop":     `DROP VIEW pair_details`,
	}
	for what, sql := range writes {
		_, err := conn.Exec(ctx, sql)
		requireDenied(t, err, what)
	}
	var stage string
	require.NoError(t, pool.QueryRow(ctx, `SELECT stage FROM iterations WHERE id = $1`, id).Scan(&stage))
	require.NotEqual(t, "failed", stage, "nothing was written")

	// A table a later migration adds is readable too (default privileges),
	// and still not writable.
	_, err = pool.Exec(ctx, `CREATE TABLE later_table (x int); INSERT INTO later_table VALUES (1)`)
	require.NoError(t, err)
	require.NoError(t, conn.QueryRow(ctx, `SELECT x FROM later_table`).Scan(&n))
	require.Equal(t, 1, n)
	_, err = conn.Exec(ctx, `INSERT INTO later_table VALUES (2)`)
	requireDenied(t, err, "insert into a later table")
}

func TestReaderRoleUpdateRestoresReadOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, dbURL := storetest.NewPool(t)
	role := readerRole(t, pool)
	password := readerPassword()
	_, err := store.EnsureReaderRole(ctx, pool, role, password)
	require.NoError(t, err)

	// Someone widens the role by hand; running migrate again (with no
	// password: the role keeps its own) narrows it.
	_, err = pool.Exec(ctx, `GRANT INSERT, DELETE ON runs TO `+role+`; ALTER ROLE `+role+` CREATEDB`)
	require.NoError(t, err)
	g, err := store.EnsureReaderRole(ctx, pool, role, "")
	require.NoError(t, err)
	require.False(t, g.Created)
	var createdb bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT rolcreatedb FROM pg_roles WHERE rolname = $1`, role).Scan(&createdb))
	require.False(t, createdb)
	_, err = connectAs(t, dbURL, role, password).Exec(ctx, `INSERT INTO runs (name, config) VALUES ('x', '{}')`)
	requireDenied(t, err, "insert after the update")
}

func TestReaderRolePasswordIsAPostgresSCRAMVerifier(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	role := readerRole(t, pool)
	const password = "correct horse battery staple"
	_, err := store.EnsureReaderRole(ctx, pool, role, password)
	require.NoError(t, err)
	var ours string
	require.NoError(t, pool.QueryRow(ctx, `SELECT rolpassword FROM pg_authid WHERE rolname = $1`, role).Scan(&ours))
	require.True(t, strings.HasPrefix(ours, "SCRAM-SHA-256$4096:"), "stored as a verifier, never as text")
	require.NotContains(t, ours, password)

	// PostgreSQL's own verifier of the same password, recomputed with its
	// salt, must come out the same: then the role logs in with it.
	theirs := readerRole(t, pool)
	_, err = pool.Exec(ctx, `SET password_encryption = 'scram-sha-256'; CREATE ROLE `+theirs+` PASSWORD '`+password+`'`)
	require.NoError(t, err)
	var pg string
	require.NoError(t, pool.QueryRow(ctx, `SELECT rolpassword FROM pg_authid WHERE rolname = $1`, theirs).Scan(&pg))
	head, _, ok := strings.Cut(strings.TrimPrefix(pg, "SCRAM-SHA-256$"), "$")
	require.True(t, ok, pg)
	iter, saltB64, ok := strings.Cut(head, ":")
	require.True(t, ok, pg)
	iterations, err := strconv.Atoi(iter)
	require.NoError(t, err)
	salt, err := base64.StdEncoding.DecodeString(saltB64)
	require.NoError(t, err)
	again, err := store.ScramVerifierWithSalt(password, salt, iterations)
	require.NoError(t, err)
	require.Equal(t, pg, again)
}

func TestReaderRoleRefusesBadNames(t *testing.T) {
	t.Parallel()
	pool, _ := storetest.NewPool(t)
	var current string
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT current_user`).Scan(&current))
	tests := []struct {
		name string
		role string
		want string
	}{
		{"quote injection", `x"; DROP TABLE runs; --`, "expected a lowercase name"},
		{"upper case", "Analyst", "expected a lowercase name"},
		{"reserved prefix", "pg_reader", "not starting with a digit or pg_"},
		{"empty", "", "expected a lowercase name"},
		{"the migrating user", current, "the user running the migration"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := store.EnsureReaderRole(context.Background(), pool, tc.role, "")
			require.ErrorContains(t, err, tc.want)
		})
	}
	var runs bool
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT to_regclass('runs') IS NOT NULL`).Scan(&runs))
	require.True(t, runs)
}

func TestMigrateReaderRoleCommand(t *testing.T) {
	t.Parallel()
	bin := selfplaytest.Binary(t)
	pool, dbURL := storetest.NewPool(t)
	role := readerRole(t, pool)
	cfg := writeMinimalConfig(t, dbURL)
	const secret = "reader-s3cret-0451"

	cmd := exec.Command(bin, "migrate", "-c", cfg, "--reader-role", role, "--reader-password-env", "TEST_READER_PASSWORD")
	cmd.Env = append(os.Environ(), "TEST_READER_PASSWORD="+secret)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "created read-only role "+role+" (password set from TEST_READER_PASSWORD)")
	require.Contains(t, string(out), "pair_details")
	require.NotContains(t, string(out), secret)

	out, err = exec.Command(bin, "migrate", "-c", cfg, "--reader-role", role).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "updated read-only role "+role+" (password unchanged)")

	out, err = exec.Command(bin, "migrate", "-c", cfg, "--reader-role", role, "--reader-password-env", "SURELY_UNSET_READER_PW").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "SURELY_UNSET_READER_PW")
	_, err = connectAs(t, dbURL, role, secret).Exec(context.Background(), `DELETE FROM runs`)
	requireDenied(t, err, "delete")
}

// TestReaderRolePasswordChecked runs on a private server that checks
// passwords (scram-sha-256, as the compose PostgreSQL does), so the
// verifier EnsureReaderRole computes is really put to the test: the role
// logs in with its password and with no other, keeps it when migrate runs
// again without one, and takes a new one.
func TestReaderRolePasswordChecked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := storetest.StartPasswordServer(t)
	dbURL := srv.NewDatabase(t)
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)

	refused := func(role, password string) {
		t.Helper()
		u, err := url.Parse(dbURL)
		require.NoError(t, err)
		u.User = url.UserPassword(role, password)
		conn, err := pgx.Connect(ctx, u.String())
		if err == nil {
			conn.Close(ctx)
		}
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr), "%s with password %q: want refused, got %v", role, password, err)
		require.Equal(t, "28P01", pgErr.Code, "invalid_password: %v", err)
	}
	// The server checks: the superuser itself needs its password.
	refused("postgres", "not-"+srv.Password)

	const role = "analyst"
	first, second := readerPassword(), readerPassword()
	_, err = store.EnsureReaderRole(ctx, pool, role, first)
	require.NoError(t, err)
	var n int
	require.NoError(t, connectAs(t, dbURL, role, first).QueryRow(ctx, `SELECT count(*) FROM runs`).Scan(&n))
	refused(role, second)
	refused(role, "")

	_, err = store.EnsureReaderRole(ctx, pool, role, "")
	require.NoError(t, err)
	require.NoError(t, connectAs(t, dbURL, role, first).QueryRow(ctx, `SELECT count(*) FROM runs`).Scan(&n), "no password given: the role keeps its own")

	_, err = store.EnsureReaderRole(ctx, pool, role, second)
	require.NoError(t, err)
	refused(role, first)
	_, err = connectAs(t, dbURL, role, second).Exec(ctx, `DELETE FROM runs`)
	requireDenied(t, err, "delete with the new password")
}
