package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/proc"
)

// Options says how a process runs (Start, StartChildWith, Run). The zero
// value runs it in the test's directory and environment, stdout read line
// by line, in the test's process group, as the test's user.
type Options struct {
	Dir      string    // working directory; "" is the test's
	Env      []string  // added to the environment (a later KEY=value wins)
	CleanEnv bool      // start from the environment without SHMFS_* variables
	Stdin    io.Reader // nil reads /dev/null
	// Stdout gets the raw stdout (e.g. an *os.File) instead of Line,
	// Lines and Output. Leave it nil, not a typed nil, for lines.
	Stdout io.Writer
	// Group puts the process in its own process group: Signal, Kill and
	// the cleanup reach everything it started.
	Group bool
	// User runs the process as that user (NewUser); the test must be root.
	User *User
	// StopSignal, when set, is sent first at cleanup (for a process that
	// should release what it holds); the test fails if the process is
	// still running 10 s later, and then it gets SIGKILL.
	StopSignal syscall.Signal
	// Unshare: namespaces the process gets of its own (CLONE_NEW* flags,
	// e.g. CLONE_NEWNS to mount a private /dev/shm); the test must be
	// root. With CLONE_NEWNS every mount is made private first.
	Unshare uintptr
}

// Child is a process a test started: a re-executed copy of the test binary
// (StartChild) or a command (Start). Its stdout is read line by line (Line,
// Expect, Lines) and kept (Output); its stderr goes to the test log line by
// line and is kept (Stderr, ExpectStderr). At test cleanup it is killed
// (with Options.Group, its whole group) and reaped.
type Child struct {
	// Cmd is the started command; signal and wait through the methods
	// (they know about the process group and the reaping goroutine).
	Cmd *exec.Cmd

	name           string
	group          bool
	stdout, stderr *stream
	all            transcript
	done           chan struct{} // closed when it exited, its output ended and it was reaped
	err            error         // the exit error, once done is closed
	abandon        chan struct{} // closed at cleanup: Lines stops feeding

	linesOnce sync.Once
	lines     chan string
}

// StartChild runs the child function name (see Main) in a new process of
// the test binary, with env added to the environment and args after "--"
// (ChildArgs).
func StartChild(t testing.TB, name string, env []string, args ...string) *Child {
	t.Helper()
	return StartChildWith(t, Options{Env: env}, name, args...)
}

// StartChildWith is StartChild with all options. With o.User it runs a
// copy of the test binary that the other user may execute.
func StartChildWith(t testing.TB, o Options, name string, args ...string) *Child {
	t.Helper()
	exe := os.Args[0]
	if o.User != nil {
		exe = binaryCopy(t)
	}
	o.Env = append([]string{childEnv + "=" + name}, o.Env...)
	return start(t, o, name, exe, append([]string{"-test.run=^$", "--"}, args...))
}

// Start runs the command name (looked up in PATH) with args.
func Start(t testing.TB, o Options, name string, args ...string) *Child {
	t.Helper()
	return start(t, o, label(name, args), name, args)
}

// Result is what a process run to completion by Run printed and how it
// ended.
type Result struct {
	Stdout, Stderr string // byte for byte
	Code           int    // exit status; -N when signal N killed it
	Err            error  // the exit error; nil on exit status 0
}

// Run runs the command name in its own process group to completion and
// returns its output and exit status. After timeout it fails the test (and
// the cleanup kills the group).
func Run(t testing.TB, timeout time.Duration, o Options, name string, args ...string) Result {
	t.Helper()
	o.Group = true
	c := Start(t, o, name, args...)
	err := c.Wait(t, timeout)
	code, werr := exitCode(err)
	if werr != nil {
		t.Fatalf("%s: %v", c.name, werr)
	}
	return Result{Stdout: c.Output(), Stderr: c.Stderr(), Code: code, Err: err}
}

func start(t testing.TB, o Options, label, path string, args []string) *Child {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Dir = o.Dir
	env := os.Environ()
	if o.CleanEnv {
		env = cleanEnviron()
	}
	cmd.Env = append(env, o.Env...)
	cmd.Stdin = o.Stdin
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: o.Group, Unshareflags: o.Unshare}
	if o.User != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: o.User.UID, Gid: o.User.GID, Groups: []uint32{}}
	}
	c := &Child{Cmd: cmd, name: label, group: o.Group, done: make(chan struct{}), abandon: make(chan struct{})}
	c.stdout = newStream(&c.all, "", nil)
	c.stderr = newStream(&c.all, "stderr: ", func(l string) { logLine(t, label+": "+l) })
	type pipe struct {
		r io.Reader
		s *stream
	}
	var pipes []pipe
	if o.Stdout != nil {
		cmd.Stdout = o.Stdout
		c.stdout.close()
	} else {
		r, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		pipes = append(pipes, pipe{r, c.stdout})
	}
	r, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	pipes = append(pipes, pipe{r, c.stderr})
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", label, err)
	}
	var wg sync.WaitGroup
	for _, p := range pipes {
		wg.Go(func() {
			_, _ = io.Copy(p.s, p.r)
			p.s.close()
		})
	}
	go func() {
		wg.Wait() // Wait closes the pipes: read them to the end first
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() { c.cleanup(t, o.StopSignal) })
	return c
}

// cleanup ends the process unless it exited: stop first if set, then
// SIGKILL; it fails the test if that takes more than 10 s each.
func (c *Child) cleanup(t testing.TB, stop syscall.Signal) {
	defer close(c.abandon)
	if stop != 0 && !c.exited() {
		c.Signal(stop)
		select {
		case <-c.done:
			return
		case <-time.After(10 * time.Second):
			t.Errorf("%s: still running 10 s after %v at cleanup; killing it", c.name, stop)
		}
	}
	c.Kill()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Errorf("%s: not reaped 10 s after SIGKILL", c.name)
	}
}

// logLine writes to the test log unless the test has ended.
func logLine(t testing.TB, line string) {
	defer func() { _ = recover() }() // Log panics after the test ended
	t.Log(line)
}

// cleanEnviron is this process's environment without shmfs settings, so
// that a developer's SHMFS_DOMAIN never leaks into a test.
func cleanEnviron() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SHMFS_") {
			out = append(out, kv)
		}
	}
	return out
}

// Name is the child function's name or the command line (shortened), as
// failure messages and the test log show it.
func (c *Child) Name() string { return c.name }

// PID is the process id (with Options.Group also its process group id).
func (c *Child) PID() int { return c.Cmd.Process.Pid }

// Line returns the next stdout line, or fails the test after timeout or
// when stdout ended.
func (c *Child) Line(t testing.TB, timeout time.Duration) string {
	t.Helper()
	return c.line(t, c.stdout, "stdout", timeout)
}

// StderrLine returns the next stderr line, or fails the test after timeout
// or when stderr ended.
func (c *Child) StderrLine(t testing.TB, timeout time.Duration) string {
	t.Helper()
	return c.line(t, c.stderr, "stderr", timeout)
}

func (c *Child) line(t testing.TB, s *stream, what string, timeout time.Duration) string {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	l, ok, eof := s.take(timer.C, nil)
	switch {
	case ok:
		return l
	case eof:
		t.Fatalf("%s: %s ended (%s) before a line; output:\n%s", c.name, what, c.status(time.Second), c.Transcript())
	default:
		t.Fatalf("%s: no %s line within %v; output so far:\n%s", c.name, what, timeout, c.Transcript())
	}
	return ""
}

// Expect reads stdout lines until one equals want, or fails after timeout.
func (c *Child) Expect(t testing.TB, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if c.Line(t, time.Until(deadline)) == want {
			return
		}
	}
}

// ExpectStderr reads stderr lines until one contains substr, or fails
// after timeout.
func (c *Child) ExpectStderr(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(c.StderrLine(t, time.Until(deadline)), substr) {
			return
		}
	}
}

// ReadLines returns the next n stdout lines, or fails after timeout.
func (c *Child) ReadLines(t testing.TB, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	out := make([]string, 0, n)
	for len(out) < n {
		out = append(out, c.Line(t, time.Until(deadline)))
	}
	return out
}

// Lines returns a channel of the stdout lines, closed when stdout ends,
// for tests that watch children from their own goroutines (Line and
// Expect fail the test and so belong to the test goroutine). A line goes
// either to Lines or to Line/Expect, never to both.
func (c *Child) Lines() <-chan string {
	c.linesOnce.Do(func() {
		c.lines = make(chan string)
		go func() {
			defer close(c.lines)
			for {
				l, ok, _ := c.stdout.take(nil, c.abandon)
				if !ok {
					return
				}
				select {
				case c.lines <- l:
				case <-c.abandon:
					return
				}
			}
		}()
	})
	return c.lines
}

// Output returns everything printed on stdout so far, byte for byte.
func (c *Child) Output() string { return c.stdout.text() }

// Stderr returns everything printed on stderr so far, byte for byte.
func (c *Child) Stderr() string { return c.stderr.text() }

// Transcript returns stdout and stderr so far, line by line in the order
// they arrived, stderr lines prefixed "stderr: ": for failure messages.
func (c *Child) Transcript() string { return c.all.String() }

// Wait waits for the process to exit and returns its exit error (nil on
// exit status 0; an *exec.ExitError otherwise). It fails the test after
// timeout.
func (c *Child) Wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-c.done:
		return c.err
	case <-time.After(timeout):
		t.Fatalf("%s: did not exit within %v; output so far:\n%s", c.name, timeout, c.Transcript())
	}
	return nil
}

// ExitCode waits like Wait and returns the exit status, or -N when signal
// N killed the process.
func (c *Child) ExitCode(t testing.TB, timeout time.Duration) int {
	t.Helper()
	code, err := exitCode(c.Wait(t, timeout))
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	return code
}

// exitCode turns an exit error into an exit status (-N for signal N).
func exitCode(err error) (int, error) {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	default:
		return -1, err
	}
}

// Stop sends SIGTERM and fails the test unless the process then exits
// with status 0 within timeout.
func (c *Child) Stop(t testing.TB, timeout time.Duration) {
	t.Helper()
	c.Signal(syscall.SIGTERM)
	if err := c.Wait(t, timeout); err != nil {
		t.Errorf("%s: %v after SIGTERM, want exit status 0; output:\n%s", c.name, err, c.Transcript())
	}
}

// status describes how the process ended, waiting up to timeout for it.
func (c *Child) status(timeout time.Duration) string {
	select {
	case <-c.done:
		if c.err == nil {
			return "exit status 0"
		}
		return c.err.Error()
	case <-time.After(timeout):
		return "still running"
	}
}

// Signal sends sig to the process (with Options.Group, to its group). It
// does nothing once the process was reaped.
func (c *Child) Signal(sig syscall.Signal) {
	if c.exited() {
		return
	}
	if c.group {
		_ = syscall.Kill(-c.PID(), sig)
		return
	}
	_ = c.Cmd.Process.Signal(sig)
}

// Kill sends SIGKILL (the process cannot clean up).
func (c *Child) Kill() { c.Signal(syscall.SIGKILL) }

// SignalThreads sends sig to every thread of the process (tgkill), so that
// a thread blocked in a system call (a FUSE read) gets it.
func (c *Child) SignalThreads(sig syscall.Signal) {
	pid := c.PID()
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, d := range tasks {
		if tid, err := strconv.Atoi(d.Name()); err == nil {
			_ = syscall.Tgkill(pid, tid, sig)
		}
	}
}

// Identity returns the process identity (pid and start time).
func (c *Child) Identity(t testing.TB) proc.Identity {
	t.Helper()
	st, _, err := proc.Stat(c.PID())
	if err != nil {
		t.Fatal(err)
	}
	return proc.Identity{PID: int32(c.PID()), StartTime: st}
}

// Done is closed when the process has exited, its output ended and it was
// reaped.
func (c *Child) Done() <-chan struct{} { return c.done }

// Exited reports whether the process has exited and, if so, its exit error
// (nil on status 0). It does not wait.
func (c *Child) Exited() (bool, error) {
	select {
	case <-c.done:
		return true, c.err
	default:
		return false, nil
	}
}

func (c *Child) exited() bool {
	done, _ := c.Exited()
	return done
}

// HasOpen reports whether the process, or one it started (also in a
// session of its own, as script(1) does), or with Options.Group any process
// of its group, has path, or a file under it, open: how a test knows that a
// background reader has opened its file before it publishes.
func (c *Child) HasOpen(path string) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if e.Name() != strconv.Itoa(c.PID()) && !(c.group && c.inGroup(e.Name())) && !c.isAncestorOf(e.Name()) {
			continue
		}
		fds, _ := os.ReadDir("/proc/" + e.Name() + "/fd")
		for _, fd := range fds {
			l, err := os.Readlink("/proc/" + e.Name() + "/fd/" + fd.Name())
			if err == nil && (l == path || strings.HasPrefix(l, path+"/")) {
				return true
			}
		}
	}
	return false
}

// isAncestorOf reports whether c started process pid (a /proc entry),
// directly or through others.
func (c *Child) isAncestorOf(pid string) bool {
	me := strconv.Itoa(c.PID())
	for range 64 { // bounded: a loop in a changing process table
		f := statFields(pid)
		if len(f) < 2 || f[1] == "0" || f[1] == "1" {
			return false
		}
		if f[1] == me {
			return true
		}
		pid = f[1]
	}
	return false
}

// statFields returns the fields of /proc/PID/stat after the command name:
// state ppid pgrp ...
func statFields(pid string) []string {
	st, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(st, ')')
	if i < 0 || i+2 > len(st) {
		return nil
	}
	return strings.Fields(string(st[i+2:]))
}

// inGroup reports whether process pid (a /proc entry) is in c's group.
func (c *Child) inGroup(pid string) bool {
	f := statFields(pid)
	return len(f) >= 3 && f[2] == strconv.Itoa(c.PID())
}
