package cli

import (
	"fmt"
	"os"
	"syscall"
)

// runAsOwnerEnv names a folder whose owner the process becomes at start
// when it starts as root. Compose sets it on the orchestrator, which starts
// as root unless SELFPLAY_UID says otherwise: the process then writes the
// exports as whoever owns ./exports on the host (the user who cloned the
// checkout), with no uid to configure, and drops root before it does
// anything else.
const runAsOwnerEnv = "SELFPLAY_RUN_AS_OWNER_OF"

// runAsOwner applies SELFPLAY_RUN_AS_OWNER_OF. It does nothing when the
// variable is unset or the process is not root (an explicit user, such as
// compose's SELFPLAY_UID, wins). As root it switches the group, the
// supplementary groups and the user to the folder's owner, in that order;
// a folder root owns leaves the process root, as the one who owns it is.
// It returns a line saying whom the process now runs as, or "" when
// nothing changed.
func runAsOwner() (string, error) {
	dir := os.Getenv(runAsOwnerEnv)
	if dir == "" || os.Getuid() != 0 {
		return "", nil
	}
	// Applied once: the processes this one starts (the train hook's
	// `selfplay lm train`) run as whoever this one becomes.
	os.Unsetenv(runAsOwnerEnv)
	info, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("%s=%s: %w (it names the folder whose owner the process runs as)", runAsOwnerEnv, dir, err)
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return "", fmt.Errorf("%s=%s: the folder's owner cannot be read on this system", runAsOwnerEnv, dir)
	}
	if st.Uid == 0 {
		return fmt.Sprintf("running as root: %s belongs to root (%s)", dir, runAsOwnerEnv), nil
	}
	uid, gid := int(st.Uid), int(st.Gid)
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return "", fmt.Errorf("%s: set supplementary groups to %d: %w", runAsOwnerEnv, gid, err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return "", fmt.Errorf("%s: set gid %d: %w", runAsOwnerEnv, gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return "", fmt.Errorf("%s: set uid %d: %w", runAsOwnerEnv, uid, err)
	}
	return fmt.Sprintf("running as uid %d, gid %d: the owner of %s (%s)", uid, gid, dir, runAsOwnerEnv), nil
}
