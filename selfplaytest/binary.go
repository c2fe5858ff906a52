// Package selfplaytest builds the selfplay binary for tests that run it as
// separate processes (migrations from several processes, the end-to-end
// loop, fault tests).
package selfplaytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildOut  []byte
)

// Binary builds ./cmd/selfplay once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "selfplay-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "selfplay")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/selfplay")
		cmd.Dir = moduleRoot()
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build selfplay: %v\n%s", buildErr, buildOut)
	}
	return binPath
}

// moduleRoot is the repository root, found from this file's location.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// Root is the repository root, for tests that read its files.
func Root() string { return moduleRoot() }
