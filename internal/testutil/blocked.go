package testutil

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// readSyscall is the number of read(2) as /proc/PID/syscall shows it.
var readSyscall = map[string]string{"amd64": "0", "arm64": "63", "386": "3", "arm": "3"}[runtime.GOARCH]

// WaitBlockedInRead polls until process pid (a single-threaded program
// such as cat) sleeps in read(2), so that a test acts on a blocked reader
// instead of hoping a sleep was long enough. It fails the test after
// timeout.
func WaitBlockedInRead(t testing.TB, pid int, timeout time.Duration) {
	t.Helper()
	if readSyscall == "" {
		t.Fatalf("WaitBlockedInRead: unknown read(2) number on %s", runtime.GOARCH)
	}
	CheckFor(t, timeout, time.Millisecond, func() error {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/syscall")
		if err != nil {
			return err
		}
		if f := strings.Fields(string(b)); len(f) == 0 || f[0] != readSyscall {
			return fmt.Errorf("pid %d is not in read(2): /proc/%d/syscall = %q", pid, pid, strings.TrimSpace(string(b)))
		}
		return nil
	})
}

// WaitStopped polls until process pid is stopped (state T, after SIGSTOP
// took effect): a signal is delivered asynchronously, so a test that
// stops a process must wait for proof before it relies on it. It fails the
// test after timeout.
func WaitStopped(t testing.TB, pid int, timeout time.Duration) {
	t.Helper()
	CheckFor(t, timeout, time.Millisecond, func() error {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return err
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) {
			return fmt.Errorf("pid %d: unreadable stat %q", pid, s)
		}
		if st := s[i+2]; st != 'T' && st != 't' {
			return fmt.Errorf("pid %d is in state %c, not stopped", pid, st)
		}
		return nil
	})
}

// pollSyscalls are the numbers of select(2), poll(2) and epoll_wait(2) and
// their variants as /proc/PID/syscall shows them.
var pollSyscalls = map[string][]string{
	// select, poll, epoll_wait, pselect6, ppoll, epoll_pwait, epoll_pwait2
	"amd64": {"23", "7", "232", "270", "271", "281", "441"},
	// pselect6, ppoll, epoll_pwait, epoll_pwait2
	"arm64": {"72", "73", "22", "441"},
}[runtime.GOARCH]

// WaitBlockedInPoll polls until at least n threads of process pid sleep
// in select(2), poll(2) or epoll_wait(2) (or a variant), so that a test
// wakes a waiter that really sleeps. It fails the test after timeout.
func WaitBlockedInPoll(t testing.TB, pid, n int, timeout time.Duration) {
	t.Helper()
	if pollSyscalls == nil {
		t.Fatalf("WaitBlockedInPoll: unknown poll system calls on %s", runtime.GOARCH)
	}
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	CheckFor(t, timeout, time.Millisecond, func() error {
		tasks, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		k := 0
		for _, task := range tasks {
			b, err := os.ReadFile(dir + "/" + task.Name() + "/syscall")
			if err != nil {
				continue // the thread ended
			}
			if f := strings.Fields(string(b)); len(f) > 0 && slices.Contains(pollSyscalls, f[0]) {
				k++
			}
		}
		if k < n {
			return fmt.Errorf("%d threads of pid %d sleep in select/poll/epoll_wait, want %d", k, pid, n)
		}
		return nil
	})
}
