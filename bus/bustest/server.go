package bustest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/selfplay/selfplay/selfplaytest"
)

// ServerBinary is the nats-server used for private servers:
// SELFPLAY_TEST_NATS_SERVER, else /usr/sbin/nats-server.
func ServerBinary() string {
	if b := os.Getenv("SELFPLAY_TEST_NATS_SERVER"); b != "" {
		return b
	}
	return "/usr/sbin/nats-server"
}

// Server is a private nats-server with JetStream file storage that a test
// starts, for scenarios that restart NATS.
type Server struct {
	URL   string
	port  int
	store string
	args  []string
	cmd   *exec.Cmd
	t     testing.TB
}

// StartServer starts a private nats-server on a free loopback port with
// JetStream storing in a temporary folder, plus any extra arguments; it is
// killed when the test ends.
func StartServer(t testing.TB, extra ...string) *Server {
	t.Helper()
	if _, err := os.Stat(ServerBinary()); err != nil {
		t.Fatalf("nats-server not found at %s: install Debian's nats-server package or set SELFPLAY_TEST_NATS_SERVER", ServerBinary())
	}
	port := selfplaytest.FreePort(t)
	s := &Server{port: port, store: t.TempDir(), t: t, URL: fmt.Sprintf("nats://127.0.0.1:%d", port), args: extra}
	t.Cleanup(s.Stop)
	s.Start()
	return s
}

// Start starts the server and waits until it accepts connections.
func (s *Server) Start() {
	s.t.Helper()
	args := append([]string{"-a", "127.0.0.1", "-p", strconv.Itoa(s.port), "-js", "-sd", s.store}, s.args...)
	s.cmd = exec.Command(ServerBinary(), args...)
	logf, err := os.Create(filepath.Join(s.store, fmt.Sprintf("server-%d.log", time.Now().UnixNano())))
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start nats-server: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			s.t.Fatalf("nats-server did not start on port %d:\n%s", s.port, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop terminates the server (SIGTERM, then SIGKILL) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

// Pid is the running server's process id, 0 when it is stopped.
func (s *Server) Pid() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Restart stops the server, waits for down, and starts it again with the
// same JetStream storage.
func (s *Server) Restart(down time.Duration) {
	s.t.Helper()
	s.Stop()
	time.Sleep(down)
	s.Start()
}

// Kill ends the server with SIGKILL (no shutdown of any kind) and waits.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Cluster is a JetStream cluster of private nats-servers on loopback.
type Cluster struct {
	Servers []*Server
}

// URL lists every member's client URL, comma-separated, as nats.url does.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		urls[i] = s.URL
	}
	return strings.Join(urls, ",")
}

// StartCluster starts n nats-servers with JetStream that route to each
// other as one cluster (a stream with replicas n can live on it), and
// waits until JetStream has a meta leader.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	routePorts := make([]int, n)
	routes := make([]string, n)
	for i := range n {
		routePorts[i] = selfplaytest.FreePort(t)
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", routePorts[i])
	}
	name := fmt.Sprintf("selfplay-test-%d", time.Now().UnixNano())
	c := &Cluster{}
	for i := range n {
		c.Servers = append(c.Servers, StartServer(t, "--server_name", fmt.Sprintf("%s-n%d", name, i),
			"--cluster_name", name, "--cluster", routes[i], "--routes", strings.Join(routes, ",")))
	}
	c.waitForLeader(t)
	return c
}

// waitForLeader waits until the cluster answers JetStream requests.
func (c *Cluster) waitForLeader(t testing.TB) {
	t.Helper()
	nc, err := nats.Connect(c.URL(), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect to the test cluster: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the test JetStream cluster has no leader after a minute: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
