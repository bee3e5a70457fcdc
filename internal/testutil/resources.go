package testutil

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Resources are what this process holds, for leak tests: descriptors,
// goroutines, mappings of shmfs objects (and mappings in all), and the
// files of a domain in /dev/shm.
type Resources struct {
	FDs, Goroutines, ShmMappings, Mappings, ShmFiles int
}

func (r Resources) String() string {
	return fmt.Sprintf("%d fds, %d goroutines, %d shmfs mappings (%d mappings in all), %d files in /dev/shm",
		r.FDs, r.Goroutines, r.ShmMappings, r.Mappings, r.ShmFiles)
}

// same compares everything but the total of mappings, which the Go heap
// changes as it grows.
func (r Resources) same(o Resources) bool {
	return r.FDs == o.FDs && r.Goroutines == o.Goroutines && r.ShmMappings == o.ShmMappings && r.ShmFiles == o.ShmFiles
}

// Measure returns what this process holds now; ShmFiles counts domain's
// objects in /dev/shm. Goroutines whose stack contains one of ignore are
// not counted (a pool that grows and shrinks with load, such as go-fuse's
// idle request readers, "(*fuseFD).readRequest").
func Measure(t testing.TB, domain string, ignore ...string) Resources {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	r := Resources{FDs: len(fds), Goroutines: goroutines(ignore), ShmFiles: len(ShmObjects(domain))}
	for _, l := range strings.Split(strings.TrimSpace(string(maps)), "\n") {
		r.Mappings++
		if strings.Contains(l, "/dev/shm/shmfs_") {
			r.ShmMappings++
		}
	}
	return r
}

// goroutines counts this process's goroutines but those whose stack
// contains one of ignore.
func goroutines(ignore []string) int {
	if len(ignore) == 0 {
		return runtime.NumGoroutine()
	}
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
next:
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, s := range ignore {
			if strings.Contains(g, s) {
				continue next
			}
		}
		count++
	}
	return count
}

// Settled waits (up to timeout) until what this process holds is back to
// base — goroutines end and objects are released asynchronously — and
// returns it. If it does not come back, the test fails with both and the
// goroutines' stacks: a leak. ignore is Measure's.
func Settled(t testing.TB, domain string, base Resources, timeout time.Duration, ignore ...string) Resources {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		now := Measure(t, domain, ignore...)
		if now.same(base) {
			return now
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Errorf("leak: before %v; after %v; goroutines:\n%s", base, now, buf[:runtime.Stack(buf, true)])
			return now
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stable returns what this process holds once it stopped changing (the
// same in five measurements 20 ms apart, at most 10 s): a baseline not
// taken while goroutines of earlier work are still ending. ignore is
// Measure's.
func Stable(t testing.TB, domain string, ignore ...string) Resources {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	last, same := Measure(t, domain, ignore...), 0
	for same < 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		now := Measure(t, domain, ignore...)
		if now.same(last) {
			same++
		} else {
			same = 0
		}
		last = now
	}
	return last
}
