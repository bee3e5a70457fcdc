package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

// shmfsBin is the shmfs binary built once by TestMain; the tests run it as
// child processes, the way users do.
var shmfsBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shmfs-cmd-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shmfsBin = filepath.Join(dir, "shmfs")
	build := exec.Command("go", "build", "-o", shmfsBin, "github.com/shmfs/shmfs/cmd/shmfs")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build shmfs:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is a test's domain and port, passed as environment variables.
type env struct {
	domain string
	port   int
}

func newEnv(t *testing.T) env {
	return env{domain: testutil.Domain(t), port: testutil.Port(t)}
}

func (e env) vars() []string {
	return []string{"SHMFS_DOMAIN=" + e.domain, "SHMFS_PORT=" + strconv.Itoa(e.port)}
}

// flags passes the domain and port as flags instead.
func (e env) flags() []string {
	return []string{"--domain", e.domain, "--port", strconv.Itoa(e.port)}
}

// result of a finished shmfs run.
type result struct {
	stdout, stderr string
	code           int
}

// runShmfs runs shmfs to completion (killing it after timeout) with extra
// environment variables and stdin.
func runShmfs(t *testing.T, timeout time.Duration, vars []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, shmfsBin, args...)
	cmd.Env = append(cleanEnviron(), vars...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok || ctx.Err() != nil {
			t.Fatalf("shmfs %q: %v (timeout %v)\nstdout:\n%s\nstderr:\n%s", args, err, timeout, out.String(), errb.String())
		}
		code = ee.ExitCode()
	}
	return result{out.String(), errb.String(), code}
}

// cleanEnviron is the test's environment without shmfs settings, so that a
// developer's SHMFS_DOMAIN never leaks into a test.
func cleanEnviron() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SHMFS_") {
			out = append(out, kv)
		}
	}
	return out
}

// child is a running shmfs process whose output is read line by line.
type child struct {
	cmd    *exec.Cmd
	name   string
	stdout chan string
	stderr chan string
	done   chan struct{}
	err    error

	mu  sync.Mutex
	out strings.Builder // stdout and stderr so far, for failure messages
}

// startShmfs starts shmfs in the background. At test cleanup it gets
// SIGTERM (so that it releases its shared memory) and, if it does not exit
// within 10 s, SIGKILL.
func startShmfs(t *testing.T, vars []string, args ...string) *child {
	t.Helper()
	cmd := exec.Command(shmfsBin, args...)
	cmd.Env = append(cleanEnviron(), vars...)
	so, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	se, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, name: strings.Join(args, " "), stdout: make(chan string, 1<<12),
		stderr: make(chan string, 1<<12), done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go c.read(so, c.stdout, "", &wg)
	go c.read(se, c.stderr, "stderr: ", &wg)
	go func() {
		wg.Wait()
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
			return
		case <-time.After(10 * time.Second):
			t.Errorf("shmfs %s ignored SIGTERM for 10 s", c.name)
		}
		_ = cmd.Process.Kill()
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			t.Errorf("shmfs %s not reaped", c.name)
		}
	})
	return c
}

func (c *child) read(r io.Reader, ch chan string, prefix string, wg *sync.WaitGroup) {
	defer wg.Done()
	defer close(ch)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		c.mu.Lock()
		c.out.WriteString(prefix + sc.Text() + "\n")
		c.mu.Unlock()
		ch <- sc.Text()
	}
}

func (c *child) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// line returns the next line of ch, failing after timeout.
func (c *child) line(t *testing.T, ch chan string, timeout time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-ch:
		if !ok {
			t.Fatalf("shmfs %s: output ended; all output:\n%s", c.name, c.output())
		}
		return l
	case <-time.After(timeout):
		t.Fatalf("shmfs %s: no line within %v; output so far:\n%s", c.name, timeout, c.output())
	}
	return ""
}

// expectStderr reads stderr lines until one contains want.
func (c *child) expectStderr(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if l := c.line(t, c.stderr, time.Until(deadline)); strings.Contains(l, want) {
			return
		}
	}
}

// wait waits for exit and returns the exit code.
func (c *child) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		t.Fatalf("shmfs %s did not exit within %v; output:\n%s", c.name, timeout, c.output())
	}
	if c.err == nil {
		return 0
	}
	if ee, ok := c.err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -int(ws.Signal())
		}
		return ee.ExitCode()
	}
	t.Fatalf("shmfs %s: %v", c.name, c.err)
	return -1
}

// stop sends SIGTERM and expects a clean exit 0.
func (c *child) stop(t *testing.T) {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	if code := c.wait(t, 15*time.Second); code != 0 {
		t.Errorf("shmfs %s: exit %d after SIGTERM, want 0; output:\n%s", c.name, code, c.output())
	}
}

// lines of stdout until the stream ends or n lines were read.
func (c *child) lines(t *testing.T, n int, timeout time.Duration) []string {
	t.Helper()
	var out []string
	deadline := time.Now().Add(timeout)
	for len(out) < n {
		out = append(out, c.line(t, c.stdout, time.Until(deadline)))
	}
	return out
}
