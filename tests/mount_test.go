package tests

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/shm"
	"github.com/shmfs/shmfs/internal/testutil"
)

// requireFUSE fails (in CI) or skips a test when this host cannot mount.
func requireFUSE(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		testutil.RequireCI(t, "FUSE unavailable: "+err.Error())
	}
	f.Close()
	if os.Geteuid() != 0 {
		if _, err := os.Stat("/usr/bin/fusermount3"); err != nil {
			testutil.RequireCI(t, "not root and no fusermount3")
		}
	}
}

// mounted reports whether a fuse.shmfs filesystem is mounted on mp.
func mounted(mp string) bool {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[1] == mp && f[2] == "fuse.shmfs" {
			return true
		}
	}
	return false
}

// waitMounted waits until p (a mount of domain e) serves mp: listed in
// /proc/mounts and its .shmfs file names the domain.
func waitMounted(t *testing.T, p *testutil.Child, e env, mp string, timeout time.Duration) {
	t.Helper()
	testutil.CheckFor(t, timeout, 20*time.Millisecond, func() error {
		if done, _ := p.Exited(); done {
			t.Fatalf("%s exited before mounting; output:\n%s", p.Name(), p.Transcript())
		}
		if !mounted(mp) {
			return fmt.Errorf("%s not in /proc/mounts", mp)
		}
		b, err := os.ReadFile(mp + "/.shmfs")
		if err != nil {
			return err
		}
		if !strings.HasPrefix(string(b), "domain: "+e.domain+"\n") {
			return fmt.Errorf("%s/.shmfs = %q, want domain %s", mp, b, e.domain)
		}
		return nil
	})
}

// startMountProcess starts a process that mounts mp for domain e and makes
// sure, at test cleanup, that it is gone and mp unmounted even when the
// test failed half-way: SIGINT, then SIGKILL (Options.StopSignal), then a
// lazy unmount and a sweep of the domain's leftovers (which only a failed
// test leaves; a passing one is checked clean by testutil.Domain before
// that could hide anything).
func startMountProcess(t *testing.T, e env, mp, dir, name string, args ...string) *testutil.Child {
	t.Helper()
	// Registered before the process starts, so it runs after the
	// process's cleanup has ended it.
	t.Cleanup(func() {
		if mounted(mp) {
			t.Errorf("%s still mounted at cleanup; detaching", mp)
			_ = syscall.Unmount(mp, syscall.MNT_DETACH)
		}
		if t.Failed() {
			_, _ = shm.Sweep(e.domain, false)
		}
	})
	o := options(dir, e.vars())
	o.StopSignal = syscall.SIGINT
	return testutil.Start(t, o, name, args...)
}

// startMount runs `shmfs mount mp` for domain e and waits until it serves.
func startMount(t *testing.T, e env, mp string) *testutil.Child {
	t.Helper()
	p := startMountProcess(t, e, mp, repoRoot, shmfsBin, "mount", mp)
	waitMounted(t, p, e, mp, 20*time.Second)
	return p
}

// stopMount interrupts the mount like Ctrl-C and checks the README's
// promise: it unmounts, exits 0 within 10 s and leaves /dev/shm clean.
func stopMount(t *testing.T, p *testutil.Child, e env, mp string) {
	t.Helper()
	p.Signal(syscall.SIGINT)
	if code := p.ExitCode(t, 10*time.Second); code != 0 {
		t.Errorf("%s: exit status %d after SIGINT, want 0; output:\n%s", p.Name(), code, p.Transcript())
	}
	if mounted(mp) {
		t.Errorf("%s still mounted after the mount process exited", mp)
	}
	if left := testutil.ShmObjects(e.domain); len(left) > 0 {
		t.Errorf("mount left %d objects in /dev/shm: %v", len(left), left)
	}
}
