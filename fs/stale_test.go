package fs

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
	"golang.org/x/sys/unix"
)

// A daemon started right after the previous one was SIGKILLed mounts
// again: the kernel still answers stat of the dead mount from its
// attribute cache for a while (here: warmed just before the kill), so a
// stale mount is recognised by statfs, which always asks the daemon.
func TestRestartRightAfterKill(t *testing.T) {
	requireFUSE(t)
	domain, port := testutil.Domain(t), testutil.Port(t)
	mp := t.TempDir()
	e := &env{t: t, kind: "core", mp: mp, vars: []string{"SHMFS_DOMAIN=" + domain, fmt.Sprintf("SHMFS_PORT=%d", port)}}
	t.Cleanup(func() {
		if mounted(mp) {
			_ = unix.Unmount(mp, unix.MNT_DETACH)
		}
	})
	for round := range 3 {
		d := testutil.StartChild(t, "serve", e.vars, "core", mp)
		d.Expect(t, "ready", 10*time.Second)
		e.sh(`stat "$M" >/dev/null`, 5*time.Second) // the root's attributes are cached now
		d.Kill()
		_ = d.Wait(t, 5*time.Second)
		next := testutil.StartChildWith(t, testutil.Options{Env: e.vars, StopSignal: syscall.SIGTERM}, "serve", "core", mp)
		next.Expect(t, "ready", 10*time.Second)
		next.Signal(syscall.SIGTERM)
		next.Expect(t, "unmounted", 10*time.Second)
		if err := next.Wait(t, 5*time.Second); err != nil {
			t.Fatalf("round %d: daemon after the restart: %v", round, err)
		}
	}
}
