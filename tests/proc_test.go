package tests

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// process is an external command (sh, go run, shmfs) running in its own
// process group, so that signals reach everything it started. Its stdout
// is read line by line (unless it goes to a file); stderr lines go to the
// test log and are kept for Stderr.
type process struct {
	name   string
	cmd    *exec.Cmd
	stdout chan string // nil when stdout goes to a file
	stderr chan string
	done   chan struct{}
	err    error

	mu     sync.Mutex
	out    strings.Builder // stdout (as lines) and stderr, for failure messages
	stdOut strings.Builder // stdout alone (as lines)
	errOut strings.Builder // stderr alone
}

// procSpec says where and how a process runs.
type procSpec struct {
	dir    string
	env    []string // added to cleanEnviron()
	stdout *os.File // raw stdout instead of lines
}

// startProcess starts name with args. At test cleanup a process still
// running gets SIGKILL (to its whole group) and is reaped.
func startProcess(t *testing.T, s procSpec, name string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = s.dir
	cmd.Env = append(cleanEnviron(), s.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &process{name: strings.Join(append([]string{name}, args...), " "), cmd: cmd,
		stderr: make(chan string, 1<<12), done: make(chan struct{})}
	var pipes []io.Reader
	var chans []chan string
	if s.stdout != nil {
		cmd.Stdout = s.stdout
	} else {
		so, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		p.stdout = make(chan string, 1<<16)
		pipes, chans = append(pipes, so), append(chans, p.stdout)
	}
	se, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	pipes, chans = append(pipes, se), append(chans, p.stderr)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	var wg sync.WaitGroup
	for i := range pipes {
		wg.Add(1)
		isErr := chans[i] == p.stderr
		go func() {
			defer wg.Done()
			p.read(t, pipes[i], chans[i], isErr)
		}()
	}
	go func() {
		wg.Wait()
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.exited() {
			return
		}
		p.signal(syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s: not reaped 10 s after SIGKILL", p.name)
		}
	})
	return p
}

func (p *process) read(t *testing.T, r io.Reader, ch chan string, isErr bool) {
	defer close(ch)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		if isErr {
			p.out.WriteString("stderr: ")
			p.errOut.WriteString(line + "\n")
		} else {
			p.stdOut.WriteString(line + "\n")
		}
		p.out.WriteString(line + "\n")
		p.mu.Unlock()
		if isErr {
			func() {
				defer func() { _ = recover() }() // the test may have ended
				t.Logf("%s: %s", p.name, line)
			}()
		}
		select {
		case ch <- line:
		default: // nobody reads this many lines: keep only the output
		}
	}
}

// pid is the process id, which is also its process group id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// signal sends sig to the process group.
func (p *process) signal(sig syscall.Signal) { _ = syscall.Kill(-p.pid(), sig) }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// output returns everything seen on stdout (as lines) and stderr.
func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// stdoutText returns everything seen on stdout (as lines).
func (p *process) stdoutText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdOut.String()
}

// stderrText returns everything seen on stderr.
func (p *process) stderrText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.errOut.String()
}

// wait waits up to timeout for the process to exit and returns its exit
// code (-1 if a signal killed it).
func (p *process) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s: did not exit within %v; output so far:\n%s", p.name, timeout, p.output())
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	default:
		t.Fatalf("%s: %v", p.name, p.err)
		return -1
	}
}

// line returns the next stdout line, failing after timeout.
func (p *process) line(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-p.stdout:
		if !ok {
			t.Fatalf("%s: stdout ended; output:\n%s", p.name, p.output())
		}
		return l
	case <-time.After(timeout):
		t.Fatalf("%s: no line within %v; output so far:\n%s", p.name, timeout, p.output())
	}
	return ""
}

// expectStderr waits for a stderr line containing s.
func (p *process) expectStderr(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-p.stderr:
			if !ok {
				t.Fatalf("%s: stderr ended before %q; output:\n%s", p.name, s, p.output())
			}
			if strings.Contains(l, s) {
				return
			}
		case <-deadline:
			t.Fatalf("%s: no %q on stderr within %v; output so far:\n%s", p.name, s, timeout, p.output())
		}
	}
}

// runSh runs one shell command line in dir to completion and returns its
// stdout; it fails the test unless sh exits 0 within timeout.
func runSh(t *testing.T, dir string, vars []string, line string, timeout time.Duration) string {
	t.Helper()
	p := startProcess(t, procSpec{dir: dir, env: vars}, "sh", "-c", line)
	var out strings.Builder
	deadline := time.After(timeout)
	for lines := p.stdout; lines != nil; {
		select {
		case l, ok := <-lines:
			if !ok {
				lines = nil
				continue
			}
			out.WriteString(l + "\n")
		case <-deadline:
			t.Fatalf("sh -c %q: not done within %v; output so far:\n%s", line, timeout, p.output())
		}
	}
	if code := p.wait(t, timeout); code != 0 {
		t.Fatalf("sh -c %q: exit status %d; output:\n%s", line, code, p.output())
	}
	return out.String()
}

// groupHasOpen reports whether a process of group pgid has a file open
// whose path is path or lies under it: how a test knows that a background
// reader has opened its data file (and so subscribed) before publishing.
func groupHasOpen(pgid int, path string) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(st, ')')
		if i < 0 || i+2 > len(st) {
			continue
		}
		f := strings.Fields(string(st[i+2:])) // state ppid pgrp ...
		if len(f) < 3 || f[2] != strconv.Itoa(pgid) {
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
