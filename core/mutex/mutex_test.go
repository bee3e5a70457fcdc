package mutex

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

// hangGuard bounds every wait in these tests; it is far above any expected
// time, so it catches hangs, not slowness.
const hangGuard = 2 * time.Second

func TestCounterThreeProcesses(t *testing.T) {
	d := testutil.Domain(t)
	name, h := newShared(t, d)
	defer h.Close()
	cname, cb := newTestMap(t, d)
	const total = 100000
	var kids []*testutil.Child
	for _, n := range []int{33334, 33333, 33333} {
		c := testutil.StartChild(t, "incr", nil, name, cname, strconv.Itoa(n))
		c.Expect(t, "ready", 10*time.Second)
		kids = append(kids, c)
	}
	start := time.Now()
	atomic.StoreUint32(goWord(cb), 1)
	for _, c := range kids {
		c.Expect(t, "done", 60*time.Second)
		if err := c.Wait(t, 10*time.Second); err != nil {
			t.Fatalf("child: %v", err)
		}
	}
	t.Logf("%d locked increments by 3 processes in %v", total, time.Since(start))
	if got := counterAt(cb); got != total {
		t.Fatalf("counter = %d, want %d", got, total)
	}
}

// startHolder starts a child that holds the lock (mode "w" or "r").
func startHolder(t *testing.T, name, mode string) *testutil.Child {
	c := testutil.StartChild(t, "hold", nil, name, mode)
	c.Expect(t, "held", 10*time.Second)
	return c
}

// killDuring runs fn while the holder c is killed and returns the time from
// the kill to fn's return, and fn's error.
func killDuring(t *testing.T, c *testutil.Child, fn func() error) (time.Duration, error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	time.Sleep(30 * time.Millisecond) // let fn start waiting (not required for correctness)
	c.Kill()
	killed := time.Now()
	select {
	case err := <-done:
		return time.Since(killed), err
	case <-time.After(hangGuard):
		t.Fatalf("no recovery within %v of the holder's death", hangGuard)
	}
	return 0, nil
}

func TestWriterDiesHoldingLock(t *testing.T) {
	name, h := newShared(t, testutil.Domain(t))
	defer h.Close()
	c := startHolder(t, name, "w")
	if ok, err := h.TryLock(); ok || err != nil {
		t.Fatalf("TryLock while held = %v, %v; want false, nil", ok, err)
	}
	took, err := killDuring(t, c, func() error { return h.Lock(10 * time.Second) })
	t.Logf("writer died: Lock returned %v %v after the kill", err, took)
	if !errors.Is(err, ErrOwnerDied) {
		t.Fatalf("Lock after the owner died = %v, want ErrOwnerDied", err)
	}
	if err := h.Unlock(); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	// The Unlock declared the data repaired.
	if err := h.Lock(time.Second); err != nil {
		t.Fatalf("Lock after repair = %v, want nil", err)
	}
	if err := h.Unlock(); err != nil {
		t.Fatal(err)
	}
}

func TestWriterDeadBeforeLockAndReaderLearns(t *testing.T) {
	name, h := newShared(t, testutil.Domain(t))
	defer h.Close()
	c := startHolder(t, name, "w")
	c.Kill()
	_ = c.Wait(t, hangGuard)
	start := time.Now()
	// A reader breaks the dead writer's lock: held shared, told it died.
	if err := h.RLock(hangGuard); !errors.Is(err, ErrOwnerDied) {
		t.Fatalf("RLock after the writer died = %v, want ErrOwnerDied", err)
	}
	t.Logf("RLock recovered a dead writer's lock in %v", time.Since(start))
	if err := h.RUnlock(); err != nil {
		t.Fatal(err)
	}
	// Still unrepaired: the next writer is told too, and repairs.
	if err := h.Lock(hangGuard); !errors.Is(err, ErrOwnerDied) {
		t.Fatalf("Lock before repair = %v, want ErrOwnerDied", err)
	}
	if err := h.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := h.RLock(hangGuard); err != nil {
		t.Fatalf("RLock after repair = %v, want nil", err)
	}
	if err := h.RUnlock(); err != nil {
		t.Fatal(err)
	}
}

func TestReaderDiesHoldingLock(t *testing.T) {
	name, h := newShared(t, testutil.Domain(t))
	defer h.Close()
	c := startHolder(t, name, "r")
	if ok, err := h.TryLock(); ok || err != nil {
		t.Fatalf("TryLock while held shared = %v, %v; want false, nil", ok, err)
	}
	took, err := killDuring(t, c, func() error { return h.Lock(10 * time.Second) })
	t.Logf("reader died: Lock returned %v %v after the kill", err, took)
	// The lock is held and the caller learns that the previous (shared)
	// owner died; it is not ErrOwnerDied: a reader writes nothing.
	if !errors.Is(err, ErrReaderDied) || errors.Is(err, ErrOwnerDied) {
		t.Fatalf("Lock after a reader died = %v, want ErrReaderDied", err)
	}
	if err := h.Unlock(); err != nil {
		t.Fatal(err)
	}
	// Once reported, the death is history: the next Lock is clean.
	if err := h.Lock(hangGuard); err != nil {
		t.Fatalf("Lock after the reader's death was reported = %v, want nil", err)
	}
	if err := h.Unlock(); err != nil {
		t.Fatal(err)
	}
}

func TestTryLock(t *testing.T) {
	_, h := newShared(t, testutil.Domain(t))
	defer h.Close()
	if ok, err := h.TryLock(); !ok || err != nil {
		t.Fatalf("TryLock on a free lock = %v, %v", ok, err)
	}
	if ok, err := h.TryLock(); ok || err != nil {
		t.Fatalf("TryLock on a held lock = %v, %v", ok, err)
	}
	if err := h.RLock(50 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("RLock under an exclusive hold = %v, want ErrTimeout", err)
	}
	if err := h.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := h.RLock(time.Second); err != nil {
		t.Fatal(err)
	}
	if ok, err := h.TryLock(); ok || err != nil {
		t.Fatalf("TryLock under a shared hold = %v, %v", ok, err)
	}
	if err := h.RUnlock(); err != nil {
		t.Fatal(err)
	}
	if ok, err := h.TryLock(); !ok || err != nil {
		t.Fatalf("TryLock after RUnlock = %v, %v", ok, err)
	}
	if err := h.Unlock(); err != nil {
		t.Fatal(err)
	}
}

func TestNotOwner(t *testing.T) {
	name, h := newShared(t, testutil.Domain(t))
	defer h.Close()
	if err := h.Unlock(); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("Unlock of a free lock = %v, want ErrNotOwner", err)
	}
	if err := h.RUnlock(); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("RUnlock without RLock = %v, want ErrNotOwner", err)
	}
	startHolder(t, name, "w")
	if err := h.Unlock(); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("Unlock of another process's lock = %v, want ErrNotOwner", err)
	}
	if ok, _ := h.TryLock(); ok {
		t.Fatal("the failed Unlock released the owner's lock")
	}
}

func TestLockTimeout(t *testing.T) {
	name, h := newShared(t, testutil.Domain(t))
	defer h.Close()
	startHolder(t, name, "w")
	for _, timeout := range []time.Duration{0, 100 * time.Millisecond} {
		start := time.Now()
		if err := h.Lock(timeout); !errors.Is(err, ErrTimeout) {
			t.Fatalf("Lock(%v) on a held lock = %v, want ErrTimeout", timeout, err)
		}
		if el := time.Since(start); el < timeout {
			t.Fatalf("Lock(%v) gave up after %v", timeout, el)
		}
		if err := h.RLock(timeout); !errors.Is(err, ErrTimeout) {
			t.Fatalf("RLock(%v) on a held lock = %v, want ErrTimeout", timeout, err)
		}
	}
}

func TestReadersInTwoProcessesAtOnce(t *testing.T) {
	d := testutil.Domain(t)
	name, h := newShared(t, d)
	defer h.Close()
	cname, _ := newTestMap(t, d)
	a := testutil.StartChild(t, "readers", nil, name, cname)
	b := testutil.StartChild(t, "readers", nil, name, cname)
	// Each prints "both" only after seeing the other inside while it holds.
	a.Expect(t, "both", 10*time.Second)
	b.Expect(t, "both", 10*time.Second)
	for _, c := range []*testutil.Child{a, b} {
		if err := c.Wait(t, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadersInOneProcessAtOnce(t *testing.T) {
	_, h := newShared(t, testutil.Domain(t))
	defer h.Close()
	const n = 8
	var inside atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.RLock(hangGuard); err != nil {
				errs <- err
				return
			}
			defer h.RUnlock()
			inside.Add(1)
			deadline := time.Now().Add(hangGuard)
			for inside.Load() < n {
				if time.Now().After(deadline) {
					errs <- errors.New("readers of one process did not get in together")
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestWriterPreference(t *testing.T) {
	_, h := newShared(t, testutil.Domain(t))
	defer h.Close()
	if err := h.RLock(time.Second); err != nil {
		t.Fatal(err)
	}
	locked := make(chan error, 1)
	go func() { locked <- h.Lock(10 * time.Second) }()
	r := regionOf(h)
	testutil.CheckFor(t, hangGuard, time.Millisecond, func() error {
		if atomic.LoadUint64(r.w) == 0 {
			return errors.New("writer not yet waiting")
		}
		return nil
	})
	// A waiting writer keeps new readers out.
	if err := h.RLock(50 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("RLock while a writer waits = %v, want ErrTimeout", err)
	}
	if err := h.RUnlock(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-locked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(hangGuard):
		t.Fatal("writer not woken by the last reader's release")
	}
	if err := h.Unlock(); err != nil {
		t.Fatal(err)
	}
}

func TestAllSlotsTaken(t *testing.T) {
	_, h := newShared(t, testutil.Domain(t))
	defer h.Close()
	for i := range numSlots {
		if err := h.RLock(time.Second); err != nil {
			t.Fatalf("RLock %d: %v", i, err)
		}
	}
	if err := h.RLock(50 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("RLock with every slot taken = %v, want ErrTimeout", err)
	}
	got := make(chan error, 1)
	go func() { got <- h.RLock(10 * time.Second) }()
	time.Sleep(20 * time.Millisecond)
	if err := h.RUnlock(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(hangGuard):
		t.Fatal("reader waiting for a slot not woken by a release")
	}
	for range numSlots {
		if err := h.RUnlock(); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.RUnlock(); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("65th RUnlock = %v, want ErrNotOwner", err)
	}
}

func TestCloseWakesWaiterAndReleases(t *testing.T) {
	name, h := newShared(t, testutil.Domain(t))
	h2, err := openShared(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Lock(time.Second); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- h2.Lock(time.Minute) }()
	time.Sleep(20 * time.Millisecond)
	if err := h2.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Lock interrupted by Close = %v, want ErrClosed", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("Close did not end a waiting Lock")
	}
	if err := h2.Lock(0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Lock after Close = %v", err)
	}
	if err := h2.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
	// Closing a handle that still holds the lock releases it, marked dirty.
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h3, err := openShared(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h3.Close()
	if ok, err := h3.TryLock(); !ok || !errors.Is(err, ErrOwnerDied) {
		t.Fatalf("TryLock after the holder closed = %v, %v; want true, ErrOwnerDied", ok, err)
	}
}

func TestUncontendedMakesNoSystemCall(t *testing.T) {
	_, h := newShared(t, testutil.Domain(t))
	defer h.Close()
	w0 := wakes.Load()
	for range 100 {
		if err := h.Lock(time.Second); err != nil {
			t.Fatal(err)
		}
		if err := h.Unlock(); err != nil {
			t.Fatal(err)
		}
		if err := h.RLock(time.Second); err != nil {
			t.Fatal(err)
		}
		if err := h.RUnlock(); err != nil {
			t.Fatal(err)
		}
	}
	if n := wakes.Load() - w0; n != 0 {
		t.Fatalf("uncontended lock operations made %d FUTEX_WAKE calls", n)
	}
}

// Writers and readers of one process hammer the lock; a plain counter is
// the protected data (run with -race too: the lock must order accesses).
func TestStressInProcess(t *testing.T) {
	_, h := newShared(t, testutil.Domain(t))
	defer h.Close()
	var counter int
	const writers, readers, n = 3, 3, 3000
	var wg sync.WaitGroup
	errs := make(chan error, writers+readers)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				if err := h.Lock(10 * time.Second); err != nil {
					errs <- err
					return
				}
				counter++
				if err := h.Unlock(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				if err := h.RLock(10 * time.Second); err != nil {
					errs <- err
					return
				}
				c := counter
				for range 10 {
					if counter != c {
						errs <- errors.New("counter changed under a shared hold")
						break
					}
				}
				if err := h.RUnlock(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if counter != writers*n {
		t.Fatalf("counter = %d, want %d", counter, writers*n)
	}
}

// childRelock <mutex>: holds the lock for 50 µs (a 1 MiB copy), unlocks and
// locks again at once, until killed: a publisher sending as fast as it can.
func childRelock(args []string) int {
	a := testutil.ChildArgs(args)
	h, err := openShared(a[0])
	if err != nil {
		return fail("open: %v", err)
	}
	fmt.Println("ready")
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if err := h.Lock(hangGuard); err != nil {
			return fail("lock: %v", err)
		}
		for start := time.Now(); time.Since(start) < 50*time.Microsecond; {
			sink++
		}
		if err := h.Unlock(); err != nil {
			return fail("unlock: %v", err)
		}
	}
	return 0
}

// TestReadersNotStarvedByRelockingWriter: a writer that locks again at
// once after every unlock must not keep a waiting reader out (the readers'
// turn in layout.go). Each RLock has a generous timeout: this catches
// starvation, BenchmarkRLockAgainstRelockingWriter measures the wait.
func TestReadersNotStarvedByRelockingWriter(t *testing.T) {
	d := testutil.Domain(t)
	name, h := newShared(t, d)
	defer h.Close()
	c := testutil.StartChild(t, "relock", nil, name)
	c.Expect(t, "ready", 10*time.Second)
	for i := 0; i < 200; i++ {
		if err := h.RLock(hangGuard); err != nil {
			t.Fatalf("RLock %d against a relocking writer: %v", i, err)
		}
		if err := h.RUnlock(); err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkRLockAgainstRelockingWriter: how long a reader waits for the
// shared lock while another process holds it exclusively for 50 µs at a
// time and relocks at once (p50, p99, max per acquisition).
func BenchmarkRLockAgainstRelockingWriter(b *testing.B) {
	d := testutil.Domain(b)
	name, h := newShared(b, d)
	defer h.Close()
	c := testutil.StartChild(b, "relock", nil, name)
	c.Expect(b, "ready", 10*time.Second)
	waits := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := h.RLock(hangGuard); err != nil {
			b.Fatal(err)
		}
		waits = append(waits, time.Since(start))
		if err := h.RUnlock(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(20 * time.Microsecond) // let the writer take the lock again
	}
	b.StopTimer()
	slices.Sort(waits)
	b.ReportMetric(float64(waits[len(waits)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(waits[len(waits)*99/100].Nanoseconds())/1e3, "p99-µs")
	b.ReportMetric(float64(waits[len(waits)-1].Nanoseconds())/1e3, "max-µs")
}
