// Package storetest gives tests their own migrated PostgreSQL database on
// the real server. SELFPLAY_TEST_DATABASE_URL names the server (default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable). Each call
// of NewDatabase creates a fresh database cloned from a migrated template
// and drops it when the test ends. A server that does not answer fails the
// test with the command that starts it; it never skips.
package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/selfplay/selfplay/migrations"
	"github.com/selfplay/selfplay/store"
)

// DefaultURL is the local test server.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// StartHint says how to start the local PostgreSQL.
const StartHint = "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, or point SELFPLAY_TEST_DATABASE_URL at a server"

// ServerURL is the URL of the test server's maintenance database.
func ServerURL() string {
	if u := os.Getenv("SELFPLAY_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

var (
	templateMu   sync.Mutex
	templateName string // "" until made, and again once it went missing
)

// adminConn connects to the maintenance database.
func adminConn(ctx context.Context, t testing.TB) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		t.Fatalf("PostgreSQL for tests is not answering at %s: %v\n%s", redacted(ServerURL()), err, StartHint)
	}
	return conn
}

func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(bad URL)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// withDatabase returns the server URL pointed at another database.
func withDatabase(name string) string {
	u, _ := url.Parse(ServerURL())
	u.Path = "/" + name
	return u.String()
}

// migrationsHash names the template after the migrations' content, so a
// changed migration gets a new template.
func migrationsHash() string {
	h := sha256.New()
	_ = fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := fs.ReadFile(migrations.FS, path)
		h.Write([]byte(path))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// ensureTemplate creates (once per server and migration set) a migrated
// template database. It is a cache shared by test processes and kept.
func ensureTemplate(ctx context.Context, t testing.TB) string {
	templateMu.Lock()
	defer templateMu.Unlock()
	if templateName == "" {
		name, err := buildTemplate(ctx, t)
		if err != nil {
			t.Fatalf("prepare migrated template database: %v", err)
		}
		templateName = name
	}
	return templateName
}

// forgetTemplate makes the next ensureTemplate look for the template again:
// a test process of a checkout with other migrations, on the same server,
// drops templates it takes as stale, ours included.
func forgetTemplate() {
	templateMu.Lock()
	templateName = ""
	templateMu.Unlock()
}

// buildTemplate makes the template of the current migrations unless the
// server has it.
func buildTemplate(ctx context.Context, t testing.TB) (string, error) {
	name := "selfplay_tmpl_" + migrationsHash()
	conn := adminConn(ctx, t)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(4242001)`); err != nil {
		return "", err
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(4242001)`)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)`, name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	building := name + "_build"
	_, _ = conn.Exec(ctx, `DROP DATABASE IF EXISTS `+building)
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+building); err != nil {
		return "", err
	}
	pool, err := pgxpool.New(ctx, withDatabase(building))
	if err != nil {
		return "", err
	}
	_, err = store.Migrate(ctx, pool)
	pool.Close()
	if err != nil {
		return "", err
	}
	_, _ = conn.Exec(ctx, `DROP DATABASE IF EXISTS `+name)
	if _, err := conn.Exec(ctx, `ALTER DATABASE `+building+` RENAME TO `+name); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, `ALTER DATABASE `+name+` WITH is_template true`); err != nil {
		return "", err
	}
	dropStaleTemplates(ctx, conn, name)
	return name, nil
}

// NewDatabase creates a fresh, migrated database for this test and returns
// its URL. The database is dropped when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := "selfplay_test_" + randomSuffix()
	conn := adminConn(ctx, t)
	defer conn.Close(ctx)
	create := func() error {
		tmpl := ensureTemplate(ctx, t)
		// Copies from one template are serialised: PostgreSQL refuses to
		// copy a template another session is connected to.
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(4242002)`); err != nil {
			return err
		}
		_, err := conn.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s TEMPLATE %s`, name, tmpl))
		_, _ = conn.Exec(ctx, `SELECT pg_advisory_unlock(4242002)`)
		return err
	}
	err := create()
	var pgErr *pgconn.PgError
	for try := 0; try < 3 && errors.As(err, &pgErr) && pgErr.Code == "3D000"; try++ { // invalid_catalog_name
		// The template went missing (see forgetTemplate): make it again.
		forgetTemplate()
		err = create()
	}
	if err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() { DropDatabase(t, name) })
	return withDatabase(name)
}

// NewEmptyDatabase creates a fresh database with no schema (for migration
// tests) and returns its URL; it is dropped when the test ends.
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := "selfplay_test_" + randomSuffix()
	conn := adminConn(ctx, t)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() { DropDatabase(t, name) })
	return withDatabase(name)
}

// DropDatabase drops a test database, closing other sessions on it first.
func DropDatabase(t testing.TB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		t.Errorf("drop test database %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
		t.Errorf("drop test database %s: %v", name, err)
	}
}

// NewPool returns a pool on a fresh migrated database, closed at cleanup.
func NewPool(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	dbURL := NewDatabase(t)
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, dbURL
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// SeedPairs inserts one pair per margin into an iteration, with a prompt
// and two one-token responses each, entirely inside the database (fast
// enough for a million rows). mex[i] and mim[i] are the explicit and
// implicit margins of pair i; reward 1+mex and 1 go to chosen and rejected.
func SeedPairs(t testing.TB, db store.DBTX, iterationID int64, mex, mim []float64) {
	t.Helper()
	_, err := db.Exec(context.Background(), `
WITH m AS (SELECT * FROM unnest($2::float8[], $3::float8[]) WITH ORDINALITY AS m(mex, mim, ord)),
pr AS (INSERT INTO prompts (hash, messages, source)
       SELECT $1::text || '-' || ord, jsonb_build_array(jsonb_build_object('role', 'user', 'content', 'seeded prompt ' || ord)), 'seed'
       FROM m RETURNING id, hash),
pm AS (SELECT pr.id AS prompt_id, m.* FROM pr JOIN m ON pr.hash = $1::text || '-' || m.ord),
c AS (INSERT INTO responses (iteration_id, prompt_id, sample_index, content, token_count, logprob_sum, reward)
      SELECT $4, prompt_id, 0, 'chosen ' || ord, 1, 0, 1 + mex FROM pm RETURNING id, prompt_id),
r AS (INSERT INTO responses (iteration_id, prompt_id, sample_index, content, token_count, logprob_sum, reward)
      SELECT $4, prompt_id, 1, 'rejected ' || ord, 1, 0, 1 FROM pm RETURNING id, prompt_id),
ip AS (INSERT INTO iteration_prompts (iteration_id, prompt_id) SELECT $4, prompt_id FROM pm)
INSERT INTO pairs (iteration_id, prompt_id, chosen_id, rejected_id, explicit_margin, implicit_margin)
SELECT $4, pm.prompt_id, c.id, r.id, pm.mex, pm.mim
FROM pm JOIN c USING (prompt_id) JOIN r USING (prompt_id)`,
		"seed-"+randomSuffix(), mex, mim, iterationID)
	if err != nil {
		t.Fatalf("seed pairs: %v", err)
	}
}

// dropStaleTemplates removes templates made from older migrations; one in
// use (by a test process of an older checkout) is left alone.
func dropStaleTemplates(ctx context.Context, conn *pgx.Conn, current string) {
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'selfplay\_tmpl\_%' AND datname <> $1`, current)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, n := range names {
		if _, err := conn.Exec(ctx, `ALTER DATABASE `+n+` WITH is_template false`); err == nil {
			if _, err := conn.Exec(ctx, `DROP DATABASE `+n); err != nil {
				_, _ = conn.Exec(ctx, `ALTER DATABASE `+n+` WITH is_template true`)
			}
		}
	}
}
