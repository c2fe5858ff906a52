package store

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// roleName is what EnsureReaderRole accepts: a lowercase SQL identifier
// analysts can type without quotes.
var roleName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ReaderGrant is what EnsureReaderRole did: the role and schema, and the
// tables and views the role can now read.
type ReaderGrant struct {
	Role    string
	Schema  string
	Created bool     // false when an existing role was updated
	Objects []string // tables and views of Schema, sorted
	Notes   []string // what could not be done and is left to the database's owner
}

// EnsureReaderRole creates the read-only role name, or brings an existing
// one back to read-only: it can log in (LOGIN, no other role attributes),
// connect to the current database, use the current schema, and SELECT from
// every table and view in it — including those later migrations create, by
// default privileges of the user running this — and nothing else: any
// INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES or TRIGGER privilege and
// CREATE on the schema are revoked. A non-empty password is set as a
// SCRAM-SHA-256 verifier computed here, so the clear text never reaches the
// server (or its statement log); an empty one leaves the role's password as
// it is. Superuser roles and the current user are refused. Roles are
// cluster-wide, so the same name across databases is one role. Safe to run
// concurrently: one transaction holding an advisory lock.
func EnsureReaderRole(ctx context.Context, db interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}, name, password string) (ReaderGrant, error) {
	if !roleName.MatchString(name) || strings.HasPrefix(name, "pg_") {
		return ReaderGrant{}, fmt.Errorf("reader role %q: expected a lowercase name of letters, digits and '_' (at most 63, not starting with a digit or pg_)", name)
	}
	if strings.ContainsRune(password, 0) {
		return ReaderGrant{}, fmt.Errorf("reader role %s: the password contains a NUL byte", name)
	}
	g := ReaderGrant{Role: name}
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		// Two migrations creating the same role would race on CREATE ROLE.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('selfplay reader role'))`); err != nil {
			return err
		}
		var current string
		if err := tx.QueryRow(ctx, `SELECT current_user, current_schema()`).Scan(&current, &g.Schema); err != nil {
			return err
		}
		if name == current {
			return fmt.Errorf("reader role %s is the user running the migration; pick another name", name)
		}
		var super *bool
		if err := tx.QueryRow(ctx, `SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = $1)`, name).Scan(&super); err != nil {
			return err
		}
		if super != nil && *super {
			return fmt.Errorf("reader role %s exists and is a superuser; pick another name", name)
		}
		g.Created = super == nil
		role := pgx.Identifier{name}.Sanitize()
		schema := pgx.Identifier{g.Schema}.Sanitize()
		attrs := " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
		if password != "" {
			verifier, err := scramVerifier(password)
			if err != nil {
				return err
			}
			attrs += " PASSWORD '" + verifier + "'" // base64 and '$:': nothing to escape
		}
		verb := "ALTER"
		if g.Created {
			verb = "CREATE"
		}
		var dbName string
		if err := tx.QueryRow(ctx, `SELECT current_database()`).Scan(&dbName); err != nil {
			return err
		}
		for _, stmt := range []string{
			verb + " ROLE " + role + " WITH" + attrs,
			"REVOKE CREATE ON SCHEMA " + schema + " FROM " + role,
			"GRANT USAGE ON SCHEMA " + schema + " TO " + role,
			"REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA " + schema + " FROM " + role,
			"REVOKE USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA " + schema + " FROM " + role,
			"GRANT SELECT ON ALL TABLES IN SCHEMA " + schema + " TO " + role,
			"ALTER DEFAULT PRIVILEGES IN SCHEMA " + schema + " REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON TABLES FROM " + role,
			"ALTER DEFAULT PRIVILEGES IN SCHEMA " + schema + " GRANT SELECT ON TABLES TO " + role,
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				// The statement may hold the verifier; name only its start.
				return fmt.Errorf("%s: %w", strings.SplitN(stmt, " WITH", 2)[0], err)
			}
		}
		// PUBLIC may connect to a database unless its owner revoked that;
		// a migrating user that does not own the database cannot grant
		// CONNECT, which is then the owner's to do, not a failure.
		if err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
			_, err := sp.Exec(ctx, "GRANT CONNECT ON DATABASE "+pgx.Identifier{dbName}.Sanitize()+" TO "+role)
			return err
		}); err != nil {
			g.Notes = append(g.Notes, fmt.Sprintf("could not grant CONNECT on database %s (%v); if PUBLIC may not connect, its owner must grant it", dbName, err))
		}
		rows, err := tx.Query(ctx, `
			SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p') ORDER BY c.relname`, g.Schema)
		if err != nil {
			return err
		}
		g.Objects, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return ReaderGrant{}, fmt.Errorf("reader role %s: %w", name, err)
	}
	return g, nil
}

// scramIterations is PostgreSQL's default scram_iterations.
const scramIterations = 4096

// scramVerifier computes the SCRAM-SHA-256 verifier PostgreSQL stores for a
// password (RFC 5802/7677, as in PostgreSQL's scram_build_secret), with a
// fresh random salt. The password is used as its UTF-8 bytes, without
// SASLprep normalisation, which changes nothing for passwords that are
// already in NFKC form (any ASCII password).
func scramVerifier(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	return scramVerifierWithSalt(password, salt, scramIterations)
}

func scramVerifierWithSalt(password string, salt []byte, iterations int) (string, error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("derive key: %w", err)
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	server := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(stored[:]), b64(server)), nil
}
