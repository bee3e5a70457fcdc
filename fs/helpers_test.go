package fs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
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

// subscribers counts the registered subscribers of topic. It asks the
// backend, not the mount.
func (e *env) subscribers(topic string) int {
	ti, _ := e.srv.fs.be.Topic(topic)
	return len(ti.Subscribers)
}

// waitSubscribers waits until topic has n subscribers.
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

// shErr runs a shell script in a child (in its own process group, so that
// the timeout also ends what it started) and returns its stdout, with its
// stderr after it when it fails, and its exit error; it fails the test
// after timeout.
func (e *env) shErr(script string, timeout time.Duration) (string, error) {
	e.t.Helper()
	r := testutil.Run(e.t, timeout, e.options(), "sh", "-c", script)
	if r.Err != nil {
		return r.Stdout + r.Stderr, r.Err
	}
	return r.Stdout, nil
}

// start runs a long-running program (cat, python3, ...) in a child.
func (e *env) start(name string, args ...string) *testutil.Child {
	e.t.Helper()
	return testutil.Start(e.t, e.options(), name, args...)
}

// options run a child with the mount's domain and port, and M set to the
// mountpoint.
func (e *env) options() testutil.Options {
	return testutil.Options{Env: append(append([]string(nil), e.vars...), "M="+e.mp)}
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

func signalNotify(c chan os.Signal) { signal.Notify(c, syscall.SIGTERM) }
