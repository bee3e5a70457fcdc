package testutil_test

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/testutil"
)

func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func([]string) int{
		"chatty": chattyChild,
		"ids":    idsChild,
		"term":   termChild,
	})
}

// chattyChild prints the numbers 0..n-1, one a line, and exits.
func chattyChild(args []string) int {
	n, _ := strconv.Atoi(testutil.ChildArgs(args)[0])
	for i := range n {
		fmt.Println(i)
	}
	return 0
}

// idsChild prints "<uid> <gid> <groups>" of its process.
func idsChild([]string) int {
	groups, err := os.Getgroups()
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println(os.Getuid(), os.Getgid(), len(groups))
	return 0
}

// termChild prints "ready", waits for SIGTERM, then creates the file named
// by its argument and exits 0.
func termChild(args []string) int {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM)
	fmt.Println("ready")
	select {
	case <-c:
	case <-time.After(time.Minute):
		return 1
	}
	if err := os.WriteFile(testutil.ChildArgs(args)[0], nil, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// A command's stdout lines (an unterminated last one too), its stderr
// lines, its raw output and its exit status.
func TestStartLinesAndStatus(t *testing.T) {
	c := testutil.Start(t, testutil.Options{}, "sh", "-c", `echo one; echo oops >&2; printf two; exit 3`)
	if l := c.Line(t, 10*time.Second); l != "one" {
		t.Errorf("first line %q, want one", l)
	}
	if l := c.Line(t, 10*time.Second); l != "two" {
		t.Errorf("second line %q, want two", l)
	}
	c.ExpectStderr(t, "oop", 10*time.Second)
	if code := c.ExitCode(t, 10*time.Second); code != 3 {
		t.Errorf("exit status %d, want 3", code)
	}
	if out, errOut := c.Output(), c.Stderr(); out != "one\ntwo" || errOut != "oops\n" {
		t.Errorf("stdout %q, stderr %q", out, errOut)
	}
	if tr := c.Transcript(); !strings.Contains(tr, "stderr: oops\n") || !strings.Contains(tr, "one\n") {
		t.Errorf("transcript %q lacks a line", tr)
	}
}

// Run returns raw stdout and stderr, the exit status and error, with stdin,
// working directory and environment as asked; CleanEnv drops SHMFS_*.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SHMFS_LEAK", "x")
	r := testutil.Run(t, 10*time.Second, testutil.Options{Dir: dir, Env: []string{"A=1", "A=2"}, CleanEnv: true, Stdin: strings.NewReader("in\nput")},
		"sh", "-c", `cat; echo; pwd; echo "$A${SHMFS_LEAK:-clean}"; echo e >&2; exit 2`)
	if want := "in\nput\n" + dir + "\n2clean\n"; r.Stdout != want || r.Stderr != "e\n" || r.Code != 2 || r.Err == nil {
		t.Errorf("Run = %+v, want stdout %q, stderr \"e\\n\", code 2 and an error", r, want)
	}
	if r := testutil.Run(t, 10*time.Second, testutil.Options{}, "sh", "-c", `echo "${SHMFS_LEAK:-clean}"`); r.Stdout != "x\n" || r.Code != 0 || r.Err != nil {
		t.Errorf("without CleanEnv: %+v, want the variable and exit 0", r)
	}
	if r := testutil.Run(t, 10*time.Second, testutil.Options{}, "sh", "-c", `kill -TERM $$`); r.Code != -int(syscall.SIGTERM) {
		t.Errorf("killed by SIGTERM: code %d, want %d", r.Code, -int(syscall.SIGTERM))
	}
}

// A child whose lines nobody reads never blocks, and no line is lost;
// Lines delivers them in order and closes at the end.
func TestUnreadLinesNeverBlock(t *testing.T) {
	const n = 200000
	c := testutil.StartChild(t, "chatty", nil, strconv.Itoa(n))
	if err := c.Wait(t, time.Minute); err != nil {
		t.Fatal(err)
	}
	i := 0
	for l := range c.Lines() {
		if l != strconv.Itoa(i) {
			t.Fatalf("line %d is %q", i, l)
		}
		i++
	}
	if i != n {
		t.Errorf("%d lines, want %d", i, n)
	}
}

// Raw stdout goes to a file; Line then reports the end of stdout.
func TestStdoutToFile(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := testutil.Start(t, testutil.Options{Stdout: f}, "sh", "-c", `printf 'raw\000bytes'`)
	if code := c.ExitCode(t, 10*time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	if b, _ := os.ReadFile(f.Name()); string(b) != "raw\x00bytes" {
		t.Errorf("file holds %q", b)
	}
	if c.Output() != "" {
		t.Errorf("Output %q, want nothing (stdout went to the file)", c.Output())
	}
}

// gone waits until process pid no longer runs (exited; a zombie that no
// one reaps counts as gone).
func gone(t *testing.T, pid int) {
	t.Helper()
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if _, state, err := proc.Stat(pid); err == nil && state != 'Z' {
			return fmt.Errorf("pid %d still runs (state %c)", pid, state)
		}
		return nil
	})
}

// With Group, Kill reaches what the process started; HasOpen sees files
// that any process of the group holds.
func TestGroupKill(t *testing.T) {
	dir := t.TempDir()
	c := testutil.Start(t, testutil.Options{Group: true, Dir: dir}, "sh", "-c", `sleep 60 <. & echo $!; wait`)
	pid, err := strconv.Atoi(c.Line(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if !c.HasOpen(dir) {
			return errors.New("the group's sleep has not opened the directory")
		}
		return nil
	})
	if c.HasOpen(filepath.Join(dir, "other")) {
		t.Error("HasOpen reports a file nobody opened")
	}
	c.Kill()
	if code := c.ExitCode(t, 10*time.Second); code != -int(syscall.SIGKILL) {
		t.Errorf("exit code %d, want %d", code, -int(syscall.SIGKILL))
	}
	gone(t, pid)
}

// The cleanup kills a group process and everything it started; with
// StopSignal it first sends that signal.
func TestCleanup(t *testing.T) {
	var grandchild int
	marker := filepath.Join(t.TempDir(), "stopped")
	t.Run("group", func(t *testing.T) {
		c := testutil.Start(t, testutil.Options{Group: true}, "sh", "-c", `sleep 60 & echo $!; wait`)
		var err error
		if grandchild, err = strconv.Atoi(c.Line(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("stopsignal", func(t *testing.T) {
		c := testutil.StartChildWith(t, testutil.Options{StopSignal: syscall.SIGTERM}, "term", marker)
		c.Expect(t, "ready", 10*time.Second)
	})
	if grandchild == 0 {
		t.Fatal("no grandchild started")
	}
	gone(t, grandchild)
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the child did not get SIGTERM at cleanup: %v", err)
	}
}

// NewUser makes a user that processes (a child of the test binary and a
// command) really run as, and removes it at cleanup.
func TestNewUser(t *testing.T) {
	var u *testutil.User
	t.Run("run as the user", func(t *testing.T) {
		u = testutil.NewUser(t)
		if u.UID == 0 || u.GID == 0 || !strings.HasPrefix(u.Name, "shmfst") {
			t.Fatalf("NewUser = %+v", u)
		}
		c := testutil.StartChildWith(t, testutil.Options{User: u}, "ids")
		if got, want := c.Line(t, 10*time.Second), fmt.Sprintf("%d %d 0", u.UID, u.GID); got != want {
			t.Errorf("child printed uid gid groups %q, want %q", got, want)
		}
		if err := c.Wait(t, 10*time.Second); err != nil {
			t.Errorf("child: %v", err)
		}
		r := testutil.Run(t, 10*time.Second, testutil.Options{User: u}, "id", "-u", "-n")
		if r.Code != 0 || r.Stdout != u.Name+"\n" {
			t.Errorf("id -u -n as the user: %+v, want %s", r, u.Name)
		}
		// A process still running as the user when the test ends is
		// ended before the user is removed (userdel refuses otherwise).
		testutil.Start(t, testutil.Options{User: u, Group: true}, "sleep", "60")
	})
	if u == nil {
		t.Skip("no user was made (the subtest skipped)")
	}
	// The subtest's cleanup has run: no trace of the user or its group.
	for _, f := range []string{"/etc/passwd", "/etc/group", "/etc/shadow"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), u.Name+":") {
			t.Errorf("%s still names %s after cleanup", f, u.Name)
		}
	}
}
