package testutil

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// WaitGoroutines polls until at least n goroutines of this process have a
// frame in a function whose name contains fn (e.g. "(*topicReader).wait"),
// so that a test acts on goroutines that are really blocked there instead
// of hoping a sleep was long enough. It fails the test after timeout.
func WaitGoroutines(t testing.TB, timeout time.Duration, fn string, n int) {
	t.Helper()
	buf := make([]byte, 1<<20)
	CheckFor(t, timeout, time.Millisecond, func() error {
		for {
			k := runtime.Stack(buf, true)
			if k < len(buf) {
				buf = buf[:k]
				break
			}
			buf = make([]byte, 2*len(buf))
		}
		got := 0
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, fn) {
				got++
			}
		}
		buf = buf[:cap(buf)]
		if got < n {
			return fmt.Errorf("%d goroutines in %s, want %d", got, fn, n)
		}
		return nil
	})
}
