package event

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
)

// TestReviewManyWaitersNoLostWakeup: waiters on their own handles and on a
// shared handle, and two setters, all in one process. Every waiter must see
// the counter reach its final value; a lost wake-up shows as ErrTimeout
// (the setters never pause for anything near the timeout).
func TestReviewManyWaitersNoLostWakeup(t *testing.T) {
	name, e := newShared(t, testutil.Domain(t), "evt")
	defer e.Close()
	const sets = 4000 // per setter
	const final = 2 * sets
	shared, err := Open(name, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	handles := []*Event{shared, shared, shared}
	for range 3 {
		h, err := Open(name, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		handles = append(handles, h)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(handles)+2)
	var slept atomic.Int64
	for i, h := range handles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := uint32(0)
			for last != final {
				if atomic.LoadUint32(h.r.seq)&sleepers != 0 {
					slept.Add(1)
				}
				s, err := h.Wait(last, 3*time.Second)
				if err != nil {
					errs <- fmt.Errorf("waiter %d: Wait(%d): %v; counter now %d", i, last, err, h.Seq())
					return
				}
				if d := (s - last) & seqMask; d == 0 || d > final {
					errs <- fmt.Errorf("waiter %d: %d after %d", i, s, last)
					return
				}
				last = s
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range sets {
				e.Set()
				if i%16 == 0 {
					time.Sleep(20 * time.Microsecond) // let waiters fall asleep
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if e.Seq() != final {
		t.Fatalf("counter %d, want %d", e.Seq(), final)
	}
	t.Logf("waiters saw the sleepers bit %d times", slept.Load())
}

// TestReviewCloseEndsEveryWaitOfTheHandleOnly: Close of one handle ends all
// its Waits at once; Waits on another handle of the same object in the same
// process keep waiting and are woken by the next Set.
func TestReviewCloseEndsEveryWaitOfTheHandleOnly(t *testing.T) {
	name, e := newShared(t, testutil.Domain(t), "evt")
	defer e.Close()
	h, err := Open(name, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 4
	closed := make(chan error, n)
	other := make(chan error, n)
	last := e.Seq()
	for range n {
		go func() { _, err := h.Wait(last, time.Minute); closed <- err }()
		go func() {
			s, err := e.Wait(last, 10*time.Second)
			if err == nil && s != last+1 {
				err = fmt.Errorf("seq %d", s)
			}
			other <- err
		}()
	}
	testutil.CheckFor(t, hangGuard, time.Millisecond, func() error {
		if h.state.Load() != n || e.state.Load() != n {
			return errors.New("waiters not in Wait yet")
		}
		return nil
	})
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	for range n {
		select {
		case err := <-closed:
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("Wait on the closed handle: %v", err)
			}
		case <-time.After(hangGuard):
			t.Fatal("Close left a Wait running")
		}
	}
	select {
	case err := <-other:
		t.Fatalf("Wait on the other handle ended by Close: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	e.Set()
	for range n {
		select {
		case err := <-other:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(hangGuard):
			t.Fatal("Set did not wake the other handle's waiters")
		}
	}
}

// TestReviewDestroyThenRecreateInOneProcess: a handle kept on a destroyed
// event and a handle on a new event of the same name are two counters.
func TestReviewDestroyThenRecreateInOneProcess(t *testing.T) {
	d := testutil.Domain(t)
	name := shmname.Object(d, proc.RandomID(), "evt")
	a, err := Create(name, Options{})
	if err != nil {
		t.Fatal(err)
	}
	keep, err := Open(name, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	if err := a.Destroy(); err != nil {
		t.Fatal(err)
	}
	b, err := Create(name, Options{})
	if err != nil {
		t.Fatalf("re-Create after Destroy: %v", err)
	}
	defer b.Destroy()
	got := make(chan error, 1)
	go func() { _, err := keep.Wait(0, 100*time.Millisecond); got <- err }()
	b.Set()
	b.Set()
	if err := <-got; !errors.Is(err, ErrTimeout) {
		t.Fatalf("old handle's Wait after Sets on the new event: %v", err)
	}
	keep.Set()
	if b.Seq() != 2 || keep.Seq() != 1 {
		t.Fatalf("counters new %d, old %d; want 2 and 1", b.Seq(), keep.Seq())
	}
	c, err := Open(name, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Seq() != 2 {
		t.Fatalf("Open after re-Create sees counter %d, want the new event's 2", c.Seq())
	}
}
