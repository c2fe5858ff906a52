// Package llamacpptest starts a real llama.cpp llama-server for tests: the
// binary Debian packages (installed by scripts/install-llama-server), serving
// a tiny llama-architecture GGUF model with synthetic weights written by
// Model, on a free loopback port, stopped when the test ends.
package llamacpptest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/selfplay/selfplay/selfplaytest"
)

// InstallCommand is what installs llama-server where Binary looks for it;
// run it from the repository root (.ci/run does).
const InstallCommand = "scripts/install-llama-server"

// Binary is the llama-server the tests run: $SELFPLAY_LLAMA_SERVER when
// set, else bin/llama-server in $SELFPLAY_LLAMACPP_DIR (default
// /opt/selfplay-llamacpp), where InstallCommand puts it.
func Binary() string {
	if b := os.Getenv("SELFPLAY_LLAMA_SERVER"); b != "" {
		return b
	}
	dir := os.Getenv("SELFPLAY_LLAMACPP_DIR")
	if dir == "" {
		dir = "/opt/selfplay-llamacpp"
	}
	return filepath.Join(dir, "bin", "llama-server")
}

// Options configure a llama-server for a test.
type Options struct {
	// Model is the GGUF model served (Model{} is seed 0).
	Model Model
	// Alias is the model's name in requests and /v1/models; default "tiny".
	Alias string
	// Slots is llama-server's --parallel, the most choices one request may
	// ask for (its n limit); default 4.
	Slots int
}

// Server is a running llama-server.
type Server struct {
	// URL is the base URL, e.g. "http://127.0.0.1:41234", no /v1.
	URL string
	// Alias is the served model name.
	Alias string
	// LogPath holds the server's output.
	LogPath string
}

// Start writes opts.Model into the test's temporary folder and serves it
// with llama-server on a free loopback port until the test ends. A missing
// binary fails the test with the command that installs it.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Alias == "" {
		opts.Alias = "tiny"
	}
	if opts.Slots <= 0 {
		opts.Slots = 4
	}
	bin := Binary()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("llamacpptest: llama-server not found at %s (%v); install it with `%s` from the repository root "+
			"(or set SELFPLAY_LLAMA_SERVER to a llama-server binary)", bin, err, InstallCommand)
	}
	dir := t.TempDir()
	model, err := opts.Model.Write(dir)
	if err != nil {
		t.Fatalf("llamacpptest: %v", err)
	}
	// A port that was free a moment ago may be taken by the time the
	// server binds it; the server then exits, and another port is tried.
	var lastErr error
	for attempt := range 3 {
		srv, err := start(t, bin, model, dir, attempt, opts)
		if err == nil {
			return srv
		}
		lastErr = err
	}
	t.Fatalf("llamacpptest: %v", lastErr)
	return nil
}

func start(t testing.TB, bin, model, dir string, attempt int, opts Options) (*Server, error) {
	port := selfplaytest.FreePort(t)
	logPath := filepath.Join(dir, fmt.Sprintf("llama-server-%d.log", attempt))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	// One thread: the machine is shared, and the model is tiny. A context
	// of 1024 tokens per slot holds the judge's prompt and a reply.
	//
	// --ubatch-size 1 makes every answer independent of what else the
	// server is doing. llama.cpp is not batch-invariant: a token computed
	// in a ubatch with other tokens (its own prompt's, or another slot's
	// decode step) goes through matrix products of another shape, whose
	// float32 sums run in another order, and its log-prob differs in the
	// last digits (a 6-token reply's sum by 3e-3 here). With one token a
	// ubatch, every product is one row, and with --parallel set the KV
	// cache is one stream per slot (not unified), so a token's attention
	// reads only its own sequence's cells: the same request gives the same
	// bits alone, beside others, or after its prefix was cached. Tests can
	// then compare stored log-probs with a replay exactly.
	cmd := exec.Command(bin,
		"--model", model, "--alias", opts.Alias,
		"--host", "127.0.0.1", "--port", strconv.Itoa(port),
		"--parallel", strconv.Itoa(opts.Slots), "--ctx-size", strconv.Itoa(1024*opts.Slots),
		"--ubatch-size", "1", "--no-kv-unified",
		"--threads", "1", "--threads-batch", "1", "--no-webui", "--log-colors", "off",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	stop := func() {
		select {
		case <-done:
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	srv := &Server{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Alias: opts.Alias, LogPath: logPath}
	if err := waitHealthy(srv.URL, done); err != nil {
		stop()
		return nil, fmt.Errorf("%w\n--- llama-server output:\n%s", err, tail(logPath, 30))
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("--- llama-server output (last 30 lines):\n%s", tail(logPath, 30))
		}
	})
	return srv, nil
}

// waitHealthy polls /health until the model is loaded (200), the process
// exits, or a minute passes on a machine too loaded to load a 0.5 MB model.
func waitHealthy(base string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("llama-server exited before it was ready")
		case <-ctx.Done():
			return fmt.Errorf("llama-server not ready at %s: %v", base, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
