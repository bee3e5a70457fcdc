package mutex

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
)

// childTolerant <mutex>: locks, exclusively and shared, in a loop until
// SIGTERM, whatever the lock words hold; it counts the errors by kind and
// prints "tick" every 256 rounds and, at the end, "done rounds=N" and one
// "error <kind> <count>" line per kind. A panic or a call that never
// returns (no more ticks) is what the test looks for.
func childTolerant(args []string) int {
	a := testutil.ChildArgs(args)
	h, err := openShared(a[0])
	if err != nil {
		return fail("open: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	errs := map[string]int{}
	count := func(err error) {
		if err == nil {
			return
		}
		kind := "other"
		for _, k := range []struct {
			e    error
			name string
		}{{ErrOwnerDied, "owner-died"}, {ErrReaderDied, "reader-died"}, {ErrTimeout, "timeout"}, {ErrNotOwner, "not-owner"}} {
			if errors.Is(err, k.e) {
				kind = k.name
			}
		}
		errs[kind]++
	}
	fmt.Println("running")
	i := 0
	for ; ctx.Err() == nil; i++ {
		if i%256 == 0 {
			fmt.Println("tick")
		}
		if i%4 == 0 {
			err := h.RLock(time.Second)
			count(err)
			if err == nil || errors.Is(err, ErrOwnerDied) {
				count(h.RUnlock())
			}
			continue
		}
		err := h.Lock(time.Second)
		count(err)
		if err == nil || errors.Is(err, ErrOwnerDied) || errors.Is(err, ErrReaderDied) {
			count(h.Unlock())
		}
	}
	fmt.Printf("done rounds=%d\n", i)
	for k, n := range errs {
		fmt.Printf("error %s %d\n", k, n)
	}
	return 0
}

// Random bytes written into a live mutex's lock words while three
// processes lock it exclusively and shared: nobody panics, every call
// returns (within its timeout), the errors say what was found, and once
// the writes stop every process makes progress again. (Mutual exclusion
// itself cannot survive someone rewriting the words: they are the lock.)
func TestRandomBytesInLiveMutex(t *testing.T) {
	name, m := newShared(t, testutil.Domain(t))
	defer m.Close()
	var kids []*testutil.Child
	for range 3 {
		c := testutil.StartChildWith(t, testutil.Options{StopSignal: syscall.SIGTERM}, "tolerant", name)
		c.Expect(t, "running", 10*time.Second)
		kids = append(kids, c)
	}
	f, err := os.OpenFile(shmname.Path(name), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	writes := 0
	// The mutex data: W, D, dirty, readers, nslots, rwait, turn, slots.
	const from, to = 64, 64 + 64 + 512
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); writes++ {
		b := make([]byte, 1+rng.IntN(8))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if _, err := f.WriteAt(b, int64(from+rng.IntN(to-from-len(b)))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(100+rng.IntN(900)) * time.Microsecond)
	}
	t.Logf("%d random writes into the lock words", writes)
	for i, c := range kids {
		for drained := false; !drained; {
			select {
			case <-c.Lines():
			default:
				drained = true
			}
		}
		for range 3 { // progress after the writes stopped
			select {
			case <-c.Lines():
			case <-time.After(10 * time.Second):
				t.Fatalf("child %d makes no progress after the random writes stopped; output:\n%s", i, c.Transcript())
			}
		}
	}
	for i, c := range kids {
		c.Signal(syscall.SIGTERM)
		if err := c.Wait(t, 10*time.Second); err != nil {
			t.Fatalf("child %d: %v; output:\n%s", i, err, c.Transcript())
		}
		var summary []string
		for _, l := range strings.Split(c.Output(), "\n") {
			if strings.HasPrefix(l, "done") || strings.HasPrefix(l, "error") {
				summary = append(summary, l)
			}
		}
		t.Logf("child %d: %s", i, strings.Join(summary, "; "))
	}
}
