package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRunAsOwnerChild is the child process of TestRunAsOwner: with
// SELFPLAY_TEST_RUNAS_CHILD set it applies SELFPLAY_RUN_AS_OWNER_OF as the
// binary does at start, writes a file into the folder and prints whom it
// runs as. Run alone it checks that it is not a child and stops.
func TestRunAsOwnerChild(t *testing.T) {
	if os.Getenv("SELFPLAY_TEST_RUNAS_CHILD") == "" {
		require.Empty(t, os.Getenv(runAsOwnerEnv), "only TestRunAsOwner's children set the variable")
		return
	}
	note, err := runAsOwner()
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(3)
	}
	dir := os.Getenv("SELFPLAY_TEST_RUNAS_DIR")
	if os.Getuid() == 0 || note != "" {
		require.Empty(t, os.Getenv(runAsOwnerEnv), "applied once: child processes do not apply it again")
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "written"), []byte("x"), 0o644))
	fmt.Printf("UID %d GID %d NOTE %s\n", os.Getuid(), os.Getgid(), note)
}

// runChild runs TestRunAsOwnerChild in a new process with
// SELFPLAY_RUN_AS_OWNER_OF=dir and returns its output.
func runChild(t *testing.T, dir string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRunAsOwnerChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SELFPLAY_TEST_RUNAS_CHILD=1", runAsOwnerEnv+"="+dir, "SELFPLAY_TEST_RUNAS_DIR="+dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func owner(t *testing.T, path string) (uint32, uint32) {
	t.Helper()
	info, err := os.Stat(path)
	require.NoError(t, err)
	st := info.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

// TestRunAsOwner: compose starts the orchestrator as root with
// SELFPLAY_RUN_AS_OWNER_OF=/app/exports, and the process becomes the owner
// of the bind-mounted ./exports, so what it writes there belongs to the
// user who owns the checkout. As a non-root user (SELFPLAY_UID set, or
// tests run unprivileged) nothing changes.
func TestRunAsOwner(t *testing.T) {
	base := t.TempDir()
	// The children may run as another user: they must reach the folders.
	require.NoError(t, os.Chmod(filepath.Dir(base), 0o755))
	require.NoError(t, os.Chmod(base, 0o755))

	owned := filepath.Join(base, "owned")
	require.NoError(t, os.Mkdir(owned, 0o755))
	if os.Getuid() == 0 {
		require.NoError(t, os.Chown(owned, 4242, 4343))
		out, err := runChild(t, owned)
		require.NoError(t, err, out)
		require.Contains(t, out, "UID 4242 GID 4343 NOTE running as uid 4242, gid 4343: the owner of "+owned)
		uid, gid := owner(t, filepath.Join(owned, "written"))
		require.Equal(t, [2]uint32{4242, 4343}, [2]uint32{uid, gid}, "the file belongs to the folder's owner")

		// A folder root owns (a checkout cloned by root, or one docker
		// created): the process stays root, as its owner is.
		rootDir := filepath.Join(base, "root")
		require.NoError(t, os.Mkdir(rootDir, 0o755))
		out, err = runChild(t, rootDir)
		require.NoError(t, err, out)
		require.Contains(t, out, "UID 0 GID 0 NOTE running as root: "+rootDir+" belongs to root")
	} else {
		out, err := runChild(t, owned)
		require.NoError(t, err, out)
		require.Contains(t, out, fmt.Sprintf("UID %d GID %d NOTE \n", os.Getuid(), os.Getgid()), "not root: nothing changes")
	}

	// A missing folder is an error naming the variable, before anything runs.
	missing := filepath.Join(base, "missing")
	out, err := runChild(t, missing)
	if os.Getuid() == 0 {
		require.Error(t, err)
		require.Contains(t, out, "ERROR "+runAsOwnerEnv+"="+missing+": ")
		require.True(t, strings.Contains(out, "no such file or directory"), out)
	} else {
		require.Error(t, err, "the child cannot write into a missing folder: %s", out)
	}
}
