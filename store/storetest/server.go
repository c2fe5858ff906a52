package storetest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store"
)

// pgBin finds the PostgreSQL server binaries (Debian layout), or
// SELFPLAY_TEST_PG_BIN.
func pgBin(t testing.TB) string {
	if dir := os.Getenv("SELFPLAY_TEST_PG_BIN"); dir != "" {
		return dir
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(matches) == 0 {
		t.Fatalf("no PostgreSQL server binaries (pg_ctl) found under /usr/lib/postgresql: install Debian's postgresql package or set SELFPLAY_TEST_PG_BIN")
	}
	return filepath.Dir(matches[len(matches)-1])
}

// Server is a private PostgreSQL instance a test starts, for scenarios
// that restart the database (which must not disturb other tests) or that
// need a server checking passwords.
type Server struct {
	URL string
	// Password is the postgres superuser's password, also in URL; empty
	// when the server trusts every connection.
	Password string
	// Port is the TCP port on 127.0.0.1 the server listens on once started.
	Port int
	// SocketDir is the directory of the server's Unix socket.
	SocketDir string
	dir       string
	bin       string
	t         testing.TB
}

// StartServer initialises and starts a private PostgreSQL instance on a
// free port with trust authentication; it is stopped and removed when the
// test ends. initdb and postgres run as the postgres user.
func StartServer(t testing.TB) *Server {
	t.Helper()
	s := NewServer(t, "")
	s.Start()
	return s
}

// StartPasswordServer is StartServer with password authentication, like
// the official postgres image given POSTGRES_PASSWORD: every TCP
// connection must prove the password with scram-sha-256, and one without
// it or with another is refused (SQLSTATE 28P01). The postgres
// superuser's password is random, in Password and URL.
func StartPasswordServer(t testing.TB) *Server {
	t.Helper()
	s := NewServer(t, "pw-"+randomSuffix())
	s.Start()
	return s
}

// NewServer initialises a private PostgreSQL instance on a free port
// without starting it (Start does), for tests of what happens before the
// server is up. A non-empty password makes it check passwords
// (scram-sha-256) with that password for the postgres superuser; an empty
// one makes it trust every connection.
func NewServer(t testing.TB, password string) *Server {
	t.Helper()
	bin := pgBin(t)
	dir, err := os.MkdirTemp("", "selfplay-pg-")
	if err != nil {
		t.Fatal(err)
	}
	port := selfplaytest.FreePort(t)
	user := url.User("postgres")
	if password != "" {
		user = url.UserPassword("postgres", password)
	}
	u := url.URL{Scheme: "postgres", User: user, Host: fmt.Sprintf("127.0.0.1:%d", port), Path: "/postgres", RawQuery: "sslmode=disable"}
	s := &Server{dir: dir, bin: bin, Port: port, SocketDir: dir, Password: password, t: t, URL: u.String()}
	if out, err := exec.Command("chown", "postgres:postgres", dir).CombinedOutput(); err != nil {
		t.Fatalf("chown %s: %v\n%s", dir, err, out)
	}
	t.Cleanup(func() {
		_ = exec.Command("runuser", "-u", "postgres", "--", filepath.Join(bin, "pg_ctl"), "-D", filepath.Join(dir, "data"), "stop", "-m", "immediate", "-w").Run()
		os.RemoveAll(dir)
	})
	initdb := []string{"-D", filepath.Join(dir, "data"), "-U", "postgres", "--no-sync", "-E", "UTF8"}
	if password == "" {
		initdb = append(initdb, "-A", "trust")
	} else {
		// initdb reads the superuser's password from a file the postgres
		// user can read; it is removed straight after.
		pwfile := filepath.Join(dir, "pwfile")
		if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("chown", "postgres:postgres", pwfile).CombinedOutput(); err != nil {
			t.Fatalf("chown %s: %v\n%s", pwfile, err, out)
		}
		initdb = append(initdb, "--auth=scram-sha-256", "--pwfile="+pwfile)
		defer os.Remove(pwfile)
	}
	s.asPostgres("initdb", initdb...)
	return s
}

func (s *Server) asPostgres(tool string, args ...string) {
	s.t.Helper()
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(s.bin, tool)}, args...)...)
	cmd.Dir = s.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("%s %v: %v\n%s", tool, args, err, out)
	}
}

func (s *Server) ctl(args ...string) {
	s.t.Helper()
	s.asPostgres("pg_ctl", append([]string{"-D", filepath.Join(s.dir, "data"), "-l", filepath.Join(s.dir, "log")}, args...)...)
}

// Start starts the server and waits until it accepts connections.
func (s *Server) Start() {
	s.t.Helper()
	s.start("127.0.0.1")
}

// StartSocketOnly starts the server listening on its Unix socket only, not
// on TCP — as the official postgres image's temporary server does while it
// runs the first start's init scripts.
func (s *Server) StartSocketOnly() {
	s.t.Helper()
	s.start("")
}

func (s *Server) start(listen string) {
	s.t.Helper()
	s.ctl("start", "-w", "-t", "60", "-o", "-p "+strconv.Itoa(s.Port)+" -k "+s.dir+" -c listen_addresses='"+listen+"' -c fsync=off")
}

// NewDatabase creates a fresh, migrated database on this server and
// returns its URL (with the server's credentials). It goes with the
// server when the test ends.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		t.Fatalf("private PostgreSQL at 127.0.0.1:%d: %v", s.Port, err)
	}
	defer conn.Close(ctx)
	name := "selfplay_test_" + randomSuffix()
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	u, _ := url.Parse(s.URL)
	u.Path = "/" + name
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := store.Migrate(ctx, pool); err != nil {
		t.Fatalf("migrate %s: %v", name, err)
	}
	return u.String()
}

// Stop stops the server (fast shutdown: sessions are disconnected).
func (s *Server) Stop() {
	s.t.Helper()
	s.ctl("stop", "-m", "fast", "-w", "-t", "60")
}

// Pid is the process id of the running server's postmaster, the parent
// of its backends (read from postmaster.pid).
func (s *Server) Pid() int {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, "data", "postmaster.pid"))
	if err != nil {
		s.t.Fatalf("private PostgreSQL: %v", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		s.t.Fatalf("private PostgreSQL: postmaster.pid: %v", err)
	}
	return pid
}

// Restart stops the server, waits for down, and starts it again.
func (s *Server) Restart(down time.Duration) {
	s.t.Helper()
	s.Stop()
	time.Sleep(down)
	s.Start()
}
