package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/mounttab"
	"github.com/shmfs/shmfs/internal/testutil"
)

// isShmfsMount reports whether dir is a fuse.shmfs mountpoint now.
func isShmfsMount(dir string) bool {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 3 && mounttab.Unescape(fs[1]) == dir && fs[2] == "fuse.shmfs" {
			return true
		}
	}
	return false
}

// mount serves the filesystem until SIGINT, then unmounts and exits 0.
func TestMount(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testutil.RequireCI(t, "no /dev/fuse")
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
	if !isShmfsMount(dir) {
		t.Fatalf("%s is not a fuse.shmfs mount after 'mounted'", dir)
	}
	// Publishing with pub makes the topic appear as a directory.
	startShmfs(t, e.vars(), "pub", "--rate", "10", "--repeat", "0", "seen", "x")
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if _, err := os.Stat(filepath.Join(dir, "seen")); err != nil {
			return fmt.Errorf("topic directory: %w", err)
		}
		return nil
	})
	m.Signal(syscall.SIGINT)
	if code := m.ExitCode(t, 20*time.Second); code != 0 {
		t.Errorf("mount: exit %d after SIGINT; output:\n%s", code, m.Transcript())
	}
	if isShmfsMount(dir) {
		t.Errorf("%s still mounted after mount exited", dir)
	}
}

// requireMount skips (fails in CI) when this host cannot mount.
func requireMount(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testutil.RequireCI(t, "no /dev/fuse")
	}
	if os.Geteuid() != 0 {
		testutil.RequireCI(t, "mount tests run as root (non-root: tests/nonroot_test.go)")
	}
}

// Mountpoints that cannot work fail with one line naming the cause and
// the fix, before anything is mounted or created; a non-empty one works
// with a warning.
func TestMountpointErrors(t *testing.T) {
	t.Parallel()
	requireMount(t)
	e := newEnv(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := runShmfs(t, 20*time.Second, e.vars(), "", "mount", file)
	if r.code != 1 || r.stderr != "shmfs: mount: unusable mountpoint: "+file+" is not a directory (not a directory); mount on a directory\n" {
		t.Errorf("mount on a file: exit %d, stderr %q", r.code, r.stderr)
	}

	mp := filepath.Join(dir, "mnt")
	m := startShmfs(t, e.vars(), "mount", mp)
	m.ExpectStderr(t, "mounted domain", 20*time.Second)
	t.Cleanup(func() {
		if isShmfsMount(mp) {
			_ = syscall.Unmount(mp, syscall.MNT_DETACH)
		}
	})
	// Inside the mount: refused before mkdir, which would declare a topic.
	inner := filepath.Join(mp, "inner")
	r = runShmfs(t, 20*time.Second, e.vars(), "", "mount", inner)
	want := "shmfs: mount: unusable mountpoint: " + inner + " is inside the shmfs mount " + mp + ", which would have to serve itself; choose a directory outside it\n"
	if r.code != 1 || r.stderr != want {
		t.Errorf("mount inside the mount: exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}
	if out := runShmfs(t, 10*time.Second, e.vars(), "", "ls", "--wait", "300ms").stdout; strings.Contains(out, "inner") {
		t.Errorf("mount inside the mount declared a topic: %q", out)
	}
	r = runShmfs(t, 20*time.Second, e.vars(), "", "mount", mp)
	if r.code != 1 || !strings.Contains(r.stderr, "already has a live shmfs mount") || !strings.Contains(r.stderr, "shmfs umount "+mp) || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("second mount on %s: exit %d, stderr %q", mp, r.code, r.stderr)
	}

	full := filepath.Join(dir, "full")
	if err := os.MkdirAll(filepath.Join(full, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := startShmfs(t, e.vars(), "mount", full)
	f.ExpectStderr(t, "shmfs: mount: warning: mountpoint "+full+" is not empty: its 1 entries are hidden while shmfs is mounted on it", 20*time.Second)
	f.ExpectStderr(t, "mounted domain", 20*time.Second)
	t.Cleanup(func() {
		if isShmfsMount(full) {
			_ = syscall.Unmount(full, syscall.MNT_DETACH)
		}
	})
}

// --background returns once the filesystem is mounted; 'shmfs umount'
// stops it while a reader blocks (which gets end of file), where umount(8)
// would say "target is busy". The banner says so.
func TestMountBackgroundAndUmount(t *testing.T) {
	t.Parallel()
	requireMount(t)
	e := newEnv(t)
	mp := filepath.Join(t.TempDir(), "mnt")
	t.Cleanup(func() {
		if isShmfsMount(mp) {
			t.Errorf("%s still mounted at cleanup", mp)
			_ = syscall.Unmount(mp, syscall.MNT_DETACH)
		}
	})
	r := runShmfs(t, 30*time.Second, e.vars(), "", "mount", "--background", mp)
	if r.code != 0 || !isShmfsMount(mp) {
		t.Fatalf("mount --background: exit %d, mounted %v, stderr %q", r.code, isShmfsMount(mp), r.stderr)
	}
	if !strings.Contains(r.stderr, "served in the background by pid") || !strings.Contains(r.stderr, "stop: 'shmfs umount "+mp+"' (umount works only while no file is open)") {
		t.Errorf("banner: %q", r.stderr)
	}
	if err := os.Mkdir(filepath.Join(mp, "t"), 0o755); err != nil {
		t.Fatal(err)
	}
	cat := testutil.Start(t, testutil.Options{}, "cat", filepath.Join(mp, "t", "data"))
	testutil.WaitBlockedInRead(t, cat.PID(), 10*time.Second)
	if u := testutil.Run(t, 10*time.Second, testutil.Options{}, "umount", mp); u.Code == 0 || !strings.Contains(u.Stderr, "busy") {
		t.Errorf("umount(8) with a blocked reader: exit %d, stderr %q (expected busy)", u.Code, u.Stderr)
	}
	if r := runShmfs(t, 20*time.Second, e.vars(), "", "umount", mp); r.code != 0 || r.stderr != "" {
		t.Fatalf("shmfs umount: exit %d, stderr %q", r.code, r.stderr)
	}
	if isShmfsMount(mp) {
		t.Errorf("%s still mounted after shmfs umount", mp)
	}
	if code := cat.ExitCode(t, 10*time.Second); code != 0 {
		t.Errorf("cat exit %d after shmfs umount, want 0 (end of file)", code)
	}
	if r := runShmfs(t, 20*time.Second, e.vars(), "", "umount", mp); r.code != 1 || r.stderr != "shmfs: umount: no shmfs mount on "+mp+"\n" {
		t.Errorf("second shmfs umount: exit %d, stderr %q", r.code, r.stderr)
	}
	if left := testutil.ShmObjects(e.domain); len(left) > 0 {
		t.Errorf("the background server left %v in /dev/shm", left)
	}
}
