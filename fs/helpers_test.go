package fs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

// requireFUSE skips (fails in CI) when FUSE cannot be mounted here.
func requireFUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testutil.RequireCI(t, "no /dev/fuse: "+err.Error())
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			testutil.RequireCI(t, "not root and no fusermount3")
		}
	}
}

// env is one mount served by the test process, with its own domain and
// port. The test process never touches the mount itself: everything that
// reads or writes it runs in a child process.
type env struct {
	t    testing.TB
	kind string // "fake" or "core"
	mp   string
	srv  *Server
	fake *fakeBroker
	vars []string // environment of children: SHMFS_DOMAIN, SHMFS_PORT
	// busyOK: the test expects Unmount to report ErrBusy.
	busyOK bool
}

var kinds = []string{"fake", "core"}

// each runs fn as a subtest against the fake backend and the real core.
func each(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, k := range kinds {
		t.Run(k, func(t *testing.T) { fn(t, newEnv(t, k, MountOptions{})) })
	}
}

func newEnv(t testing.TB, kind string, o MountOptions) *env {
	t.Helper()
	requireFUSE(t)
	mp := t.TempDir()
	domain, port := testutil.Domain(t), testutil.Port(t)
	e := &env{t: t, kind: kind, mp: mp, vars: []string{"SHMFS_DOMAIN=" + domain, "SHMFS_PORT=" + strconv.Itoa(port)}}
	o.Config = core.Config{Domain: domain, Port: port}
	var err error
	if kind == "fake" {
		e.fake = newFakeBroker()
		e.srv, err = mount(context.Background(), mp, o, e.fake)
	} else {
		e.srv, err = Mount(context.Background(), mp, o)
	}
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := e.srv.Unmount(); err != nil && !(e.busyOK && errors.Is(err, ErrBusy)) {
			t.Errorf("unmount: %v", err)
		}
	})
	return e
}

// path returns a path inside the mount (for children only).
func (e *env) path(elem ...string) string { return filepath.Join(append([]string{e.mp}, elem...)...) }

// subscribers counts the registered subscribers of topic, without the
// mount's monitors. It asks the backend, not the mount.
func (e *env) subscribers(topic string) int {
	ti, _ := e.srv.fs.be.Topic(topic)
	e.srv.fs.mu.Lock()
	var mon uint64
	if t := e.srv.fs.topics[topic]; t != nil {
		t.mu.Lock()
		mon = t.monID
		t.mu.Unlock()
	}
	e.srv.fs.mu.Unlock()
	n := 0
	for _, s := range ti.Subscribers {
		if s.ID != mon {
			n++
		}
	}
	return n
}

// waitSubscribers waits until topic has n subscribers besides monitors.
func (e *env) waitSubscribers(topic string, n int) {
	e.t.Helper()
	testutil.CheckFor(e.t, 5*time.Second, 5*time.Millisecond, func() error {
		if k := e.subscribers(topic); k != n {
			return fmt.Errorf("topic %q has %d subscribers, want %d", topic, k, n)
		}
		return nil
	})
}

// sh runs a shell script in a child and returns its stdout; it fails the
// test on a non-zero exit or after timeout.
func (e *env) sh(script string, timeout time.Duration) string {
	e.t.Helper()
	out, err := e.shErr(script, timeout)
	if err != nil {
		e.t.Fatalf("sh %q: %v\n%s", script, err, out)
	}
	return out
}

func (e *env) shErr(script string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Env = append(os.Environ(), append(e.vars, "M="+e.mp)...)
	// The timeout must hold even if a grandchild keeps the output pipes
	// open after sh was killed.
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

// proc is a long-running program in a child process (cat, python3, ...).
type proc struct {
	cmd   *exec.Cmd
	lines chan string
	mu    sync.Mutex
	out   bytes.Buffer
	done  chan struct{}
	err   error
}

func (e *env) start(name string, args ...string) *proc {
	e.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), append(e.vars, "M="+e.mp)...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	p := &proc{cmd: cmd, lines: make(chan string, 1<<15), done: make(chan struct{})}
	go func() {
		r := bufio.NewReaderSize(stdout, 1<<16)
		for {
			l, err := r.ReadString('\n')
			p.mu.Lock()
			p.out.WriteString(l)
			p.mu.Unlock()
			if err != nil {
				break
			}
			p.lines <- strings.TrimSuffix(l, "\n")
		}
		close(p.lines)
		p.err = cmd.Wait()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// line returns the next line of output or fails after timeout.
func (p *proc) line(t testing.TB, timeout time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("%s exited (%v) early; output:\n%.2000s", p.cmd.Args, p.wait(t, time.Second), p.output())
		}
		return l
	case <-time.After(timeout):
		t.Fatalf("%s: no line within %v; output:\n%.2000s", p.cmd.Args, timeout, p.output())
	}
	return ""
}

// wait waits for exit and returns the exit error (nil on status 0).
func (p *proc) wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v", p.cmd.Args, timeout)
	}
	return nil
}

// signalAll sends sig to every thread of pid (tgkill), so that a thread
// blocked in a FUSE read gets it.
func signalAll(pid int, sig syscall.Signal) {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, d := range tasks {
		tid, err := strconv.Atoi(d.Name())
		if err == nil {
			_ = syscall.Tgkill(pid, tid, sig)
		}
	}
}

var errNoLine = errors.New("no such line")

// field returns the value of "key: value" in a header text.
func field(text, key string) (string, error) {
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, key+": "); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("%w: %q in\n%s", errNoLine, key, text)
}

// publisher creates a publisher outside the mount (in the test process,
// through the same backend or core Node the mount uses).
func (e *env) publisher(topic string) publisher {
	e.t.Helper()
	p, err := e.srv.fs.be.NewPublisher(topic, "")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = p.Close() })
	return p
}

// mounted reports whether mp is in this process's mount table (read from
// /proc, not through the mount).
func mounted(mp string) bool {
	for _, m := range mounts() {
		if m.point == mp {
			return true
		}
	}
	return false
}

// stopChild ends a child with SIGTERM (so that it closes its publishers and
// subscribers) and waits for it.
func stopChild(t testing.TB, c *testutil.Child) {
	t.Helper()
	_ = c.Cmd.Process.Signal(syscall.SIGTERM)
	if err := c.Wait(t, 5*time.Second); err != nil {
		t.Errorf("child: %v", err)
	}
}

// waitEventReaders waits until n events files of topic are open.
func (e *env) waitEventReaders(topic string, n int) {
	e.t.Helper()
	testutil.CheckFor(e.t, 5*time.Second, 5*time.Millisecond, func() error {
		k := 0
		e.srv.fs.mu.Lock()
		if t := e.srv.fs.topics[topic]; t != nil {
			t.mu.Lock()
			k = len(t.events)
			t.mu.Unlock()
		}
		e.srv.fs.mu.Unlock()
		if k != n {
			return fmt.Errorf("topic %q has %d events readers, want %d", topic, k, n)
		}
		return nil
	})
}

// waitSubscribersRemote waits until registration knows n subscribers of
// topic (in any process).
func (e *env) waitSubscribersRemote(topic string, n int) {
	e.t.Helper()
	testutil.CheckFor(e.t, 5*time.Second, 5*time.Millisecond, func() error {
		ti, _ := e.srv.fs.be.Topic(topic)
		if len(ti.Subscribers) != n {
			return fmt.Errorf("topic %q has %d subscribers, want %d", topic, len(ti.Subscribers), n)
		}
		return nil
	})
}

func signalNotify(c chan os.Signal) { signal.Notify(c, syscall.SIGTERM) }
