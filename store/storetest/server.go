package storetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/selfplay/selfplay/selfplaytest"
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
// that restart the database (which must not disturb other tests).
type Server struct {
	URL  string
	dir  string
	bin  string
	port int
	t    testing.TB
}

// StartServer initialises and starts a private PostgreSQL instance on a
// free port with trust authentication; it is stopped and removed when the
// test ends. initdb and postgres run as the postgres user.
func StartServer(t testing.TB) *Server {
	t.Helper()
	bin := pgBin(t)
	dir, err := os.MkdirTemp("", "selfplay-pg-")
	if err != nil {
		t.Fatal(err)
	}
	port := selfplaytest.FreePort(t)
	s := &Server{dir: dir, bin: bin, port: port, t: t,
		URL: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)}
	if out, err := exec.Command("chown", "postgres:postgres", dir).CombinedOutput(); err != nil {
		t.Fatalf("chown %s: %v\n%s", dir, err, out)
	}
	s.asPostgres("initdb", "-D", filepath.Join(dir, "data"), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
	t.Cleanup(func() {
		_ = exec.Command("runuser", "-u", "postgres", "--", filepath.Join(bin, "pg_ctl"), "-D", filepath.Join(dir, "data"), "stop", "-m", "immediate", "-w").Run()
		os.RemoveAll(dir)
	})
	s.Start()
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
	s.ctl("start", "-w", "-t", "60", "-o", "-p "+strconv.Itoa(s.port)+" -k "+s.dir+" -c listen_addresses=127.0.0.1 -c fsync=off")
}

// Stop stops the server (fast shutdown: sessions are disconnected).
func (s *Server) Stop() {
	s.t.Helper()
	s.ctl("stop", "-m", "fast", "-w", "-t", "60")
}

// Restart stops the server, waits for down, and starts it again.
func (s *Server) Restart(down time.Duration) {
	s.t.Helper()
	s.Stop()
	time.Sleep(down)
	s.Start()
}
