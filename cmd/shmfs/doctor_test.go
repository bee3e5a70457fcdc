package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmfs/shmfs/internal/testutil"
)

// doctorLine returns the line of doctor's output about what, and the fix
// lines right after it.
func doctorLine(out, what string) (line string, fixes []string) {
	ls := strings.Split(out, "\n")
	for i, l := range ls {
		if len(l) > 6 && strings.HasPrefix(l[6:], what+":") {
			for _, f := range ls[i+1:] {
				fx, ok := strings.CutPrefix(f, "      fix: ")
				if !ok {
					break
				}
				fixes = append(fixes, fx)
			}
			return l, fixes
		}
	}
	return "", nil
}

// emptyMounts returns a mount table without shmfs mounts, so that other
// tests' mounts do not affect the result.
func emptyMounts(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "mounts")
	if err := os.WriteFile(p, []byte("proc /proc proc rw 0 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// With everything in place (/dev/null stands in for /dev/fuse: both are
// character devices) the checks that this test controls pass, and the exit
// status is 1 exactly when a line says FAIL.
func TestDoctorHealthy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := runShmfs(t, 30*time.Second, append(e.vars(), "SHMFS_DEV_FUSE=/dev/null", "SHMFS_PROC_MOUNTS="+emptyMounts(t)), "", "doctor")
	for _, what := range []string{"/dev/null", fmt.Sprintf("registration port %d", e.port), "stale objects", "shmfs mounts"} {
		if l, _ := doctorLine(r.stdout, what); !strings.HasPrefix(l, "ok") {
			t.Errorf("doctor: %s: %q, want ok; output:\n%s", what, l, r.stdout)
		}
	}
	want := 0
	if strings.Contains("\n"+r.stdout, "\nFAIL") {
		want = 1
	}
	if r.code != want {
		t.Errorf("doctor: exit %d, want %d with output:\n%s", r.code, want, r.stdout)
	}
}

// A missing /dev/fuse is a problem with a fix; exit status 1.
func TestDoctorMissingFuse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := runShmfs(t, 30*time.Second, append(e.vars(), "SHMFS_DEV_FUSE=/nonexistent/fuse", "SHMFS_PROC_MOUNTS="+emptyMounts(t)), "", "doctor")
	l, fixes := doctorLine(r.stdout, "/nonexistent/fuse")
	if r.code != 1 || !strings.HasPrefix(l, "FAIL") || !strings.Contains(l, "missing") || len(fixes) == 0 || !strings.Contains(fixes[0], "modprobe fuse") {
		t.Errorf("doctor: exit %d, line %q, fixes %q; output:\n%s", r.code, l, fixes, r.stdout)
	}
	if !strings.Contains(r.stderr, "shmfs: doctor: ") {
		t.Errorf("doctor failure without an error line: %q", r.stderr)
	}
}

// A registration port held by a program that does not share it fails.
func TestDoctorPortInUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c, err := net.ListenPacket("udp4", "127.255.255.255:"+strconv.Itoa(e.port)) // no SO_REUSEADDR
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := runShmfs(t, 30*time.Second, append(e.vars(), "SHMFS_PROC_MOUNTS="+emptyMounts(t)), "", "doctor")
	l, fixes := doctorLine(r.stdout, fmt.Sprintf("registration port %d", e.port))
	if r.code != 1 || !strings.HasPrefix(l, "FAIL") || !strings.Contains(l, "address already in use") || len(fixes) == 0 || !strings.Contains(fixes[0], "--port") {
		t.Errorf("doctor: exit %d, line %q, fixes %q; output:\n%s", r.code, l, fixes, r.stdout)
	}
}

// A shmfs mount whose daemon is gone (stat gives ENOTCONN) is reported with
// the command that removes it. The stale mount is real: a FUSE mount whose
// /dev/fuse descriptor was closed without serving it.
func TestDoctorStaleMount(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		testutil.RequireCI(t, "making a stale FUSE mount needs root")
	}
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		testutil.RequireCI(t, "no /dev/fuse: "+err.Error())
	}
	dir := filepath.Join(t.TempDir(), "stale mount") // a space: /proc/mounts escapes it
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	err = unix.Mount("shmfs:test", dir, "fuse.shmfs", unix.MS_NOSUID|unix.MS_NODEV,
		fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0", fd))
	unix.Close(fd) // the "daemon" is gone
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("umount %s: %v", dir, err)
		}
	})
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("the mount is not stale")
	}
	mounts := filepath.Join(t.TempDir(), "mounts")
	table := "proc /proc proc rw 0 0\nshmfs:test " + strings.ReplaceAll(dir, " ", `\040`) + " fuse.shmfs rw,nosuid,nodev 0 0\n"
	if err := os.WriteFile(mounts, []byte(table), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	r := runShmfs(t, 30*time.Second, append(e.vars(), "SHMFS_PROC_MOUNTS="+mounts), "", "doctor")
	l, fixes := doctorLine(r.stdout, "shmfs mounts")
	if r.code != 1 || !strings.HasPrefix(l, "FAIL") || !strings.Contains(l, dir) || len(fixes) != 1 || fixes[0] != "umount -l '"+dir+"'" {
		t.Errorf("doctor: exit %d, line %q, fixes %q; output:\n%s", r.code, l, fixes, r.stdout)
	}
}
