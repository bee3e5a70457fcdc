package futex

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitTimesOut(t *testing.T) {
	var w uint32
	if err := Wait(&w, 0, 5*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Wait = %v, want ErrTimeout", err)
	}
	if err := Wait(&w, 0, 0); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Wait(0) = %v, want ErrTimeout", err)
	}
}

func TestWaitValueMismatchReturnsAtOnce(t *testing.T) {
	w := uint32(1)
	if err := Wait(&w, 0, time.Minute); err != nil {
		t.Fatalf("Wait with changed value = %v, want nil", err)
	}
}

func TestWakeWakesWaiter(t *testing.T) {
	var w uint32
	done := make(chan error, 1)
	go func() {
		for atomic.LoadUint32(&w) == 0 {
			if err := Wait(&w, 0, 10*time.Second); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	// Wake until it reports a woken waiter: then the goroutine was asleep
	// in the kernel and Wake, not a value check, ended its Wait.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := Wake(&w, 1)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the waiter never slept on the futex")
		}
		time.Sleep(time.Millisecond)
	}
	atomic.StoreUint32(&w, 1)
	Wake(&w, 1)
	if err := <-done; err != nil {
		t.Fatalf("waiter: %v", err)
	}
}
