// Package testutil holds black-box helpers for shmfs tests: re-executing the
// test binary as child processes, polling instead of sleeping, private
// domains and ports, and a check that /dev/shm was left clean.
package testutil

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
)

const childEnv = "SHMFS_TEST_CHILD"

// Main is called from a package's TestMain. When the binary was started by
// StartChild it runs the named child function and exits with its result;
// otherwise it runs the tests.
func Main(m *testing.M, children map[string]func(args []string) int) {
	if name := os.Getenv(childEnv); name != "" {
		fn, ok := children[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "testutil: unknown child %q\n", name)
			os.Exit(3)
		}
		os.Exit(fn(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// ChildArgs returns the arguments given to StartChild (after "--").
func ChildArgs(args []string) []string {
	for i, a := range args {
		if a == "--" {
			return args[i+1:]
		}
	}
	return nil
}

// Child is a re-executed copy of the test binary.
type Child struct {
	Cmd   *exec.Cmd
	lines chan string
	mu    sync.Mutex
	out   strings.Builder // all stdout, for failure messages
	done  chan struct{}
	err   error
}

// StartChild runs the child function name in a new process. Its stdout is
// read line by line (Line, Expect); its stderr goes to the test log. The
// child is killed and reaped at test cleanup.
func StartChild(t testing.TB, name string, env []string, args ...string) *Child {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(append(os.Environ(), childEnv+"="+name), env...)
	return StartCommand(t, name, cmd)
}

// StartCommand runs another program (cmd, not yet started) with the same
// handling as StartChild: stdout read line by line, stderr (unless cmd sets
// it) to the test log prefixed with name, killed and reaped at cleanup.
func StartCommand(t testing.TB, name string, cmd *exec.Cmd) *Child {
	t.Helper()
	if cmd.Stderr == nil {
		cmd.Stderr = &testWriter{t: t, prefix: name + ": "}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	c := &Child{Cmd: cmd, lines: make(chan string, 1<<16), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			c.mu.Lock()
			c.out.WriteString(sc.Text() + "\n")
			c.mu.Unlock()
			c.lines <- sc.Text()
		}
		close(c.lines)
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.Kill()
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			t.Errorf("child %s not reaped", name)
		}
	})
	return c
}

// Line returns the next stdout line, or fails the test after timeout.
func (c *Child) Line(t testing.TB, timeout time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			t.Fatalf("child exited (%v) before printing a line; output:\n%s", c.waitErr(), c.Output())
		}
		return l
	case <-time.After(timeout):
		t.Fatalf("no line from child within %v; output so far:\n%s", timeout, c.Output())
	}
	return ""
}

// Expect reads lines until one equals want, or fails after timeout.
func (c *Child) Expect(t testing.TB, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		l := c.Line(t, time.Until(deadline))
		if l == want {
			return
		}
	}
}

// Output returns everything the child printed on stdout so far.
func (c *Child) Output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// Wait waits for the child to exit and returns its error (nil on exit 0).
func (c *Child) Wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-c.done:
		return c.err
	case <-time.After(timeout):
		t.Fatalf("child did not exit within %v; output:\n%s", timeout, c.Output())
	}
	return nil
}

func (c *Child) waitErr() error {
	select {
	case <-c.done:
		return c.err
	case <-time.After(time.Second):
		return nil
	}
}

// Kill sends SIGKILL (the child cannot clean up).
func (c *Child) Kill() { _ = c.Cmd.Process.Signal(syscall.SIGKILL) }

// Identity returns the child's process identity.
func (c *Child) Identity(t testing.TB) proc.Identity {
	st, _, err := proc.Stat(c.Cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return proc.Identity{PID: int32(c.Cmd.Process.Pid), StartTime: st}
}

type testWriter struct {
	t      testing.TB
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			break
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		func() {
			defer func() { _ = recover() }() // test may have ended
			w.t.Log(w.prefix + line)
		}()
	}
	return len(p), nil
}

var _ io.Writer = (*testWriter)(nil)

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
