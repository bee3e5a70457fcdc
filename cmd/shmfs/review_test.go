package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

// Review tests: each one shows a bug (it fails until the code is fixed) or
// pins behaviour no other test covers.

// TestReviewSubTypeMismatchKeepsListening: 'sub --type T' refuses
// publishers of another type (docs/cli.md), and core reports such a
// publisher once ("its messages are ignored") and goes on receiving. Bug:
// sub treats that report as fatal and exits 1 at the first publisher of
// another type, so it never gets the messages of the right type that
// follow (and its "--type" hint on timeout is unreachable).
func TestReviewSubTypeMismatchKeepsListening(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sub := startShmfs(t, e.vars(), "sub", "-v", "--type", "a", "--count", "1", "--timeout", "30s", "typed")
	sub.ExpectStderr(t, "subscribed", 20*time.Second)
	if r := runShmfs(t, 30*time.Second, e.vars(), "", "pub", "--type", "b", "typed", "wrong"); r.code != 0 {
		t.Fatalf("pub --type b: exit %d: %s", r.code, r.stderr)
	}
	if r := runShmfs(t, 30*time.Second, e.vars(), "", "pub", "--type", "a", "typed", "right"); r.code != 0 {
		t.Fatalf("pub --type a: exit %d: %s", r.code, r.stderr)
	}
	if l := sub.Line(t, 20*time.Second); l != "right" {
		t.Fatalf("sub printed %q, want %q", l, "right")
	}
	if code := sub.ExitCode(t, 20*time.Second); code != 0 {
		t.Errorf("sub: exit %d, want 0; output:\n%s", code, sub.Transcript())
	}
	// The warning says "shmfs: sub: " once.
	if w := sub.Stderr(); !strings.Contains(w, "shmfs: sub: warning: topic type mismatch: ") || strings.Count(w, "shmfs:") != strings.Count(w, "\n") {
		t.Errorf("sub's warning repeats a prefix or lacks the cause:\n%s", w)
	}
}

// TestReviewPortInUseErrorNamesFix: an error names the cause and the fix
// (README, docs/cli.md). Bug: when another program holds the registration
// port without SO_REUSEADDR, every command that joins the domain fails
// with only "bind: address already in use", without saying to pick
// another port (--port / SHMFS_PORT) or to run 'shmfs doctor'.
func TestReviewPortInUseErrorNamesFix(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c, err := net.ListenPacket("udp4", "127.255.255.255:"+strconv.Itoa(e.port)) // no SO_REUSEADDR
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, args := range [][]string{{"ls"}, {"sub", "--timeout", "1s", "t"}, {"pub", "t", "x"}} {
		r := runShmfs(t, 20*time.Second, e.vars(), "", args...)
		msg := strings.TrimSpace(r.stderr)
		if r.code != 1 || !strings.Contains(msg, "address already in use") || strings.Contains(msg, "\n") {
			t.Errorf("shmfs %s: exit %d, stderr %q; want exit 1 and one line naming the cause", args[0], r.code, msg)
		}
		if !strings.Contains(msg, "--port") && !strings.Contains(msg, "SHMFS_PORT") && !strings.Contains(msg, "shmfs doctor") {
			t.Errorf("shmfs %s: error names no fix (--port, SHMFS_PORT or 'shmfs doctor'): %q", args[0], msg)
		}
	}
}

// TestReviewMountEndsOnOutsideUnmount: 'shmfs mount' serves "until it is
// unmounted from outside (umount MP)" (docs/cli.md): then it exits 0 and
// releases its shared memory (testutil.Domain checks /dev/shm).
func TestReviewMountEndsOnOutsideUnmount(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testutil.RequireCI(t, "no /dev/fuse")
	}
	if os.Geteuid() != 0 {
		testutil.RequireCI(t, "unmounting from the test needs root")
	}
	e := newEnv(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m := startShmfs(t, e.vars(), "mount", dir)
	t.Cleanup(func() {
		if isShmfsMount(dir) {
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	m.ExpectStderr(t, "mounted domain", 20*time.Second)
	// A publisher of the mount (memory file in /dev/shm) that lingers.
	if r := testutil.Run(t, 20*time.Second, testutil.Options{}, "sh", "-c", `mkdir "$0/t" && echo hi > "$0/t/data"`, dir); r.Err != nil {
		t.Fatalf("write through the mount: %v %s%s", r.Err, r.Stdout, r.Stderr)
	}
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if err := syscall.Unmount(dir, 0); err != nil {
			return fmt.Errorf("umount %s: %w", dir, err)
		}
		return nil
	})
	if code := m.ExitCode(t, 10*time.Second); code != 0 {
		t.Errorf("mount: exit %d after umount from outside; output:\n%s", code, m.Transcript())
	}
	if isShmfsMount(dir) {
		t.Errorf("%s still mounted", dir)
	}
}
