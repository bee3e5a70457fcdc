package event

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shmfs/shmfs/internal/futex"
	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
)

// The raw futex baseline: two u32 words in a plain /dev/shm file, each
// side bumps one and FUTEX_WAKEs unconditionally, and sleeps on the other.

func mapRaw(name string, create bool) ([]byte, error) {
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(shmname.Path(name), flags, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if create {
		if err := f.Truncate(4096); err != nil {
			return nil, err
		}
	}
	return unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

func rawWords(b []byte) (ping, pong *uint32) {
	return (*uint32)(unsafe.Pointer(&b[0])), (*uint32)(unsafe.Pointer(&b[64]))
}

// rawWait waits until *w != last, at most timeout.
func rawWait(w *uint32, last uint32, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for atomic.LoadUint32(w) == last {
		if err := futex.Wait(w, last, time.Until(deadline)); err == futex.ErrTimeout {
			return err
		}
	}
	return nil
}

// childFutexPong <file> <n> <pin|nopin>
func childFutexPong(args []string) int {
	a := testutil.ChildArgs(args)
	n, _ := strconv.Atoi(a[1])
	if err := pinIfAsked(a[2]); err != nil {
		return fail("pin: %v", err)
	}
	b, err := mapRaw(a[0], false)
	if err != nil {
		return fail("map: %v", err)
	}
	ping, pong := rawWords(b)
	last := atomic.LoadUint32(ping) // before "ready": the parent bumps only after it
	fmt.Println("ready")
	for i := range n {
		if err := rawWait(ping, last, 5*time.Second); err != nil {
			return fail("round %d: %v", i, err)
		}
		last++
		atomic.AddUint32(pong, 1)
		futex.Wake(pong, 1)
	}
	return 0
}

// reportLatency reports the median and 99th percentile of round trips.
func reportLatency(b *testing.B, rt []time.Duration) {
	if len(rt) == 0 {
		return
	}
	sort.Slice(rt, func(i, j int) bool { return rt[i] < rt[j] })
	b.ReportMetric(float64(rt[len(rt)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(rt[len(rt)*99/100].Nanoseconds()), "p99-ns")
}

func pinModes(b *testing.B, fn func(b *testing.B, pin string)) {
	b.Run("spread", func(b *testing.B) { fn(b, "nopin") })
	b.Run("cpu0", func(b *testing.B) {
		if err := pinIfAsked("pin"); err != nil {
			b.Skip(err)
		}
		defer func() {
			var all unix.CPUSet
			for i := range 1024 {
				all.Set(i)
			}
			unix.SchedSetaffinity(0, &all)
		}()
		fn(b, "pin")
	})
}

// BenchmarkFutexPingPong is the floor for event-driven delivery: one op is
// a round trip (two wake-ups) through bare futex calls.
func BenchmarkFutexPingPong(b *testing.B) {
	pinModes(b, func(b *testing.B, pin string) {
		name := shmname.Object(testutil.Domain(b), proc.RandomID(), "raw")
		m, err := mapRaw(name, true)
		if err != nil {
			b.Fatal(err)
		}
		defer os.Remove(shmname.Path(name))
		defer unix.Munmap(m)
		ping, pong := rawWords(m)
		c := testutil.StartChild(b, "futexpong", nil, name, strconv.Itoa(b.N), pin)
		c.Expect(b, "ready", 10*time.Second)
		rt := make([]time.Duration, b.N)
		last := atomic.LoadUint32(pong)
		b.ResetTimer()
		for i := range b.N {
			t0 := time.Now()
			atomic.AddUint32(ping, 1)
			futex.Wake(ping, 1)
			if err := rawWait(pong, last, 5*time.Second); err != nil {
				b.Fatalf("round %d: %v", i, err)
			}
			last++
			rt[i] = time.Since(t0)
		}
		b.StopTimer()
		reportLatency(b, rt)
		c.Wait(b, 10*time.Second)
	})
}

// BenchmarkEventPingPong: one op is a round trip through two named events
// (Set, then Wait for the other side's Set).
func BenchmarkEventPingPong(b *testing.B) {
	pinModes(b, func(b *testing.B, pin string) {
		d := testutil.Domain(b)
		pingName, ping := newShared(b, d, "ping")
		pongName, pong := newShared(b, d, "pong")
		defer ping.Close()
		defer pong.Close()
		c := testutil.StartChild(b, "pong", nil, pingName, pongName, strconv.Itoa(b.N), pin)
		c.Expect(b, "ready", 10*time.Second)
		rt := make([]time.Duration, b.N)
		last := pong.Seq()
		b.ResetTimer()
		for i := range b.N {
			t0 := time.Now()
			ping.Set()
			s, err := pong.Wait(last, 5*time.Second)
			if err != nil {
				b.Fatalf("round %d: %v", i, err)
			}
			last = s
			rt[i] = time.Since(t0)
		}
		b.StopTimer()
		reportLatency(b, rt)
		c.Expect(b, "done", 10*time.Second)
	})
}

// BenchmarkSetNoWaiter: Set with nobody asleep (no system call).
func BenchmarkSetNoWaiter(b *testing.B) {
	_, e := newShared(b, testutil.Domain(b), "evt")
	defer e.Close()
	for b.Loop() {
		e.Set()
	}
}
