// Package testutil holds black-box helpers for shmfs tests: the one process
// harness (re-executed copies of the test binary and external commands, as
// the test's user or a throwaway one), polling instead of sleeping, private
// domains and ports, and a check that /dev/shm was left clean.
package testutil

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
)

const childEnv = "SHMFS_TEST_CHILD"

// Main is called from a package's TestMain. When the binary was started by
// StartChild it runs the named child function and exits with its result;
// otherwise it runs the tests (RunTests).
func Main(m *testing.M, children map[string]func(args []string) int) {
	if name := os.Getenv(childEnv); name != "" {
		fn, ok := children[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "testutil: unknown child %q\n", name)
			os.Exit(3)
		}
		os.Exit(fn(os.Args[1:]))
	}
	os.Exit(RunTests(m))
}

// RunTests runs the tests and then removes what the harness made for the
// whole test binary (the copy of it that other users may execute). A
// TestMain that does not call Main calls it instead of m.Run.
func RunTests(m *testing.M) int {
	binCopy.mu.Lock()
	binCopy.owned = true
	binCopy.mu.Unlock()
	defer removeBinaryCopy()
	return m.Run()
}

// IsChild reports whether this process was started by StartChild, so that
// a TestMain can skip its own setup (building binaries) in children before
// calling Main.
func IsChild() bool { return os.Getenv(childEnv) != "" }

// ChildArgs returns the arguments given to StartChild (after "--").
func ChildArgs(args []string) []string {
	for i, a := range args {
		if a == "--" {
			return args[i+1:]
		}
	}
	return nil
}

// CheckFor calls fn every interval until it returns nil, and fails the test
// with fn's last error when timeout passes first.
func CheckFor(t testing.TB, timeout, interval time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = fn(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(interval)
	}
}

// Domain returns a domain name that no other test (in any process) uses,
// and registers a cleanup that fails the test if any /dev/shm object of that
// domain is left behind.
func Domain(t testing.TB) string {
	t.Helper()
	d := fmt.Sprintf("t%x", proc.RandomID()&0xffffffffff)
	t.Cleanup(func() {
		if left := ShmObjects(d); len(left) > 0 {
			t.Errorf("test left %d objects in /dev/shm: %v", len(left), left)
			for _, n := range left {
				os.Remove(shmname.Path(n))
			}
		}
	})
	return d
}

// ShmObjects lists the /dev/shm names of domain d.
func ShmObjects(d string) []string {
	m, _ := filepath.Glob(shmname.Path(shmname.Prefix + d + "_*"))
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	return m
}

// Port returns a UDP port that was free a moment ago, in the dynamic range.
func Port(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// RequireCI fails (in CI) or skips (elsewhere) a test that cannot run here.
// Tests that need FUSE or network namespaces call it instead of t.Skip, so a
// CI run never passes by skipping them.
func RequireCI(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("required test cannot run in CI: %s", why)
	}
	t.Skip(why)
}
