package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/proc"
)

// User is a throwaway local user made by NewUser; Options.User runs a
// process as it.
type User struct {
	Name     string
	UID, GID uint32
}

// NewUser creates a local user without a home directory (and its own
// group), named shmfst<hex>, and removes both at test cleanup, also when
// the test failed. Processes started as the user afterwards are ended by
// their own cleanups, which run first. It needs root: elsewhere it skips
// the test (fails it in CI, RequireCI).
func NewUser(t testing.TB) *User {
	t.Helper()
	if os.Geteuid() != 0 {
		RequireCI(t, "creating a user needs root")
	}
	for _, cmd := range []string{"useradd", "userdel"} {
		if _, err := exec.LookPath(cmd); err != nil {
			RequireCI(t, cmd+" not installed (Debian: passwd)")
		}
	}
	name := fmt.Sprintf("shmfst%08x", uint32(proc.RandomID()))
	// Other tests (and other test binaries) add users too: useradd fails
	// while another one holds the lock of /etc/passwd.
	CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		r := Run(t, 30*time.Second, Options{}, "useradd", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name)
		if r.Err == nil {
			return nil
		}
		if !strings.Contains(r.Stderr, "lock") {
			t.Fatalf("useradd %s: %v: %s", name, r.Err, r.Stderr)
		}
		return fmt.Errorf("useradd %s: %v: %s", name, r.Err, r.Stderr)
	})
	t.Cleanup(func() {
		CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
			r := Run(t, 30*time.Second, Options{}, "userdel", name)
			if r.Err == nil {
				return nil
			}
			if !strings.Contains(r.Stderr, "lock") {
				t.Errorf("userdel %s: %v: %s", name, r.Err, r.Stderr)
				return nil
			}
			return fmt.Errorf("userdel %s: %v: %s", name, r.Err, r.Stderr)
		})
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("user %s was added but: %v", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		t.Fatalf("user %s: uid %q gid %q", name, u.Uid, u.Gid)
	}
	return &User{Name: name, UID: uint32(uid), GID: uint32(gid)}
}

// binCopy is the copy of the test binary that other users may execute: go
// test builds it in a temporary directory only its owner can enter. It is
// made once per test binary and removed by RunTests.
var binCopy struct {
	mu    sync.Mutex
	owned bool // RunTests runs the tests and removes the copy
	dir   string
	path  string
}

// binaryCopy returns the path of that copy, made on first use.
func binaryCopy(t testing.TB) string {
	t.Helper()
	binCopy.mu.Lock()
	defer binCopy.mu.Unlock()
	if binCopy.path != "" {
		return binCopy.path
	}
	if !binCopy.owned {
		t.Fatal("testutil: a child as another user needs a TestMain that calls testutil.Main or testutil.RunTests (they remove the copy of the test binary)")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "shmfs-testbin")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, filepath.Base(exe))
	// cp writes the copy, not this process: a file this process had open
	// for writing could be inherited by a concurrent fork and make
	// executing it fail with ETXTBSY.
	if r := Run(t, time.Minute, Options{}, "cp", exe, path); r.Err != nil {
		os.RemoveAll(dir)
		t.Fatalf("copy the test binary for another user: %v: %s", r.Err, r.Stderr)
	}
	if err := os.Chmod(path, 0o755); err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	binCopy.dir, binCopy.path = dir, path
	return path
}

func removeBinaryCopy() {
	binCopy.mu.Lock()
	defer binCopy.mu.Unlock()
	if binCopy.dir != "" {
		os.RemoveAll(binCopy.dir)
		binCopy.dir, binCopy.path = "", ""
	}
}
