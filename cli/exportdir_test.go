package cli

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestRunRefusesAnExportDirItCannotWrite: `selfplay run` as a user who may
// not write export.dir (nobody, with a folder of root's, as compose's
// orchestrator with a ./exports of another user) stops before any work and
// names the folder, both owners and the fix.
func TestRunRefusesAnExportDirItCannotWrite(t *testing.T) {
	t.Parallel()
	if os.Getuid() != 0 {
		t.Fatalf("this test runs selfplay as another user, which needs root (uid %d)", os.Getuid())
	}
	const nobody = 65534
	// Everything nobody must read: the binary and the schedule, in a
	// folder anyone can enter; the export folder is root's, 0755.
	dir, err := os.MkdirTemp("", "selfplay-exportdir-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	src, err := os.Open(selfplaytest.Binary(t))
	require.NoError(t, err)
	defer src.Close()
	bin := filepath.Join(dir, "selfplay")
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())
	exports := filepath.Join(dir, "exports")
	require.NoError(t, os.Mkdir(exports, 0o755))
	cfg := filepath.Join(dir, "selfplay.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`database: {url: %q}
export: {dir: %q}
iterations: [{name: a, policy_model: m, prompts: {files: [p.jsonl]}}]
`, storetest.NewDatabase(t), exports)), 0o644))

	cmd := exec.Command(bin, "run", "-c", cfg)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "%s", out)
	require.Contains(t, string(out), fmt.Sprintf("export.dir %s: cannot write there as uid %d, gid %d (the folder belongs to uid 0, gid 0)", exports, nobody, nobody))
	require.Contains(t, string(out), "SELFPLAY_UID and SELFPLAY_GID")
	require.Contains(t, string(out), "permission denied")
	entries, err := os.ReadDir(exports)
	require.NoError(t, err)
	require.Empty(t, entries)
}
