package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a receiving process: a re-executed copy of the binary running
// ChildMain. The sender talks to it by lines: commands on its stdin,
// answers on its stdout ("up", "ready", "warm", "lat ...", "got ...", or
// "error ..."). Its stderr is kept for error messages.
type child struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // stdout, line by line; closed at its end
	done  chan struct{}

	mu     sync.Mutex
	stderr strings.Builder // guarded by mu; the first 4 KiB
}

// errChild: a child process failed or said something unexpected.
var errChild = errors.New("bench: receiver process")

// startChild starts the child kind with args; files become its fds 3, 4, ...
// (and are closed here once the child has them).
func (r *runner) startChild(kind string, files []*os.File, args ...string) (*child, error) {
	argv := append(append(append([]string{}, r.opt.ChildArgs...), kind), args...)
	cmd := exec.Command(r.opt.Exe, argv...)
	cmd.ExtraFiles = files
	c := &child{name: kind, cmd: cmd, lines: make(chan string, 16), done: make(chan struct{})}
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = (*childStderr)(c)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w %s: %w", errChild, kind, err)
	}
	for _, f := range files {
		f.Close()
	}
	r.kids = append(r.kids, c)
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// childStderr keeps the beginning of a child's stderr.
type childStderr child

func (w *childStderr) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := 4096 - w.stderr.Len(); room > 0 {
		w.stderr.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}

func (c *child) stderrText() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.TrimSpace(c.stderr.String())
}

// tell writes one command line.
func (c *child) tell(format string, a ...any) error {
	if _, err := fmt.Fprintf(c.stdin, format+"\n", a...); err != nil {
		return fmt.Errorf("%w %s: %w", errChild, c.name, err)
	}
	return nil
}

// expect returns the fields of the next line, which must start with word.
func (c *child) expect(word string, timeout time.Duration) ([]string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case line, ok := <-c.lines:
		if !ok {
			// The child ended; its stderr says why.
			select {
			case <-c.done:
			case <-time.After(time.Second):
			}
			msg := c.stderrText()
			if msg == "" {
				msg = "exited"
			}
			return nil, fmt.Errorf("%w %s: %s (waiting for %q)", errChild, c.name, msg, word)
		}
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "error" {
			return nil, fmt.Errorf("%w %s: %s", errChild, c.name, strings.TrimPrefix(line, "error "))
		}
		if len(f) == 0 || f[0] != word {
			return nil, fmt.Errorf("%w %s: said %q, want %q", errChild, c.name, line, word)
		}
		return f[1:], nil
	case <-t.C:
		return nil, fmt.Errorf("%w %s: no %q within %v", errChild, c.name, word, timeout)
	}
}

// stop closes the child's stdin (it then releases what it holds and
// exits) and waits; a child still running after 10 s is killed.
func (c *child) stop() {
	c.stdin.Close()
	select {
	case <-c.done:
		return
	case <-time.After(10 * time.Second):
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}
