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
