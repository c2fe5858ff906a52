package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// checkExportDir makes sure the orchestrator can write into export.dir
// before any work starts, so a folder it may not write — in compose, a
// ./exports that belongs to another user than SELFPLAY_UID — fails at
// once, saying what to do, instead of at the first iteration's export.
func checkExportDir(dir string) error {
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		var f *os.File
		if f, err = os.CreateTemp(dir, ".selfplay-write-check-*"); err == nil {
			f.Close()
			return os.Remove(f.Name())
		}
	}
	msg := fmt.Sprintf("export.dir %s: cannot write there as uid %d, gid %d", dir, os.Getuid(), os.Getgid())
	if info, serr := os.Stat(dir); serr == nil {
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			msg += fmt.Sprintf(" (the folder belongs to uid %d, gid %d)", st.Uid, st.Gid)
		}
	}
	if errors.Is(err, fs.ErrPermission) {
		msg += "; run as its owner (with docker compose: leave SELFPLAY_UID unset and the orchestrator becomes the owner of ./exports, or set SELFPLAY_UID and SELFPLAY_GID to the owner's; see docs/operations.md) or make it writable"
	}
	return fmt.Errorf("%s: %w", msg, err)
}
