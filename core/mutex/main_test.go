package mutex

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func([]string) int{
		"incr":    childIncr,
		"hold":    childHold,
		"readers": childReaders,
	})
}

// Offsets in a counter test map.
const (
	offCounter = 1024 // u64 incremented non-atomically under the lock
	offInside  = 1032 // u32 shared holders inside, atomically counted
)

func counterAt(b []byte) uint64     { return binary.LittleEndian.Uint64(b[offCounter:]) }
func setCounter(b []byte, v uint64) { binary.LittleEndian.PutUint64(b[offCounter:], v) }

func fail(format string, a ...any) int {
	fmt.Fprintf(os.Stderr, format+"\n", a...)
	return 1
}

// childIncr <mutex> <countermap> <n>: n locked increments of the counter;
// every 16th iteration also checks under RLock that the counter does not
// change while held shared.
func childIncr(args []string) int {
	a := testutil.ChildArgs(args)
	h, err := openShared(a[0])
	if err != nil {
		return fail("open: %v", err)
	}
	b, err := openTestMap(a[1])
	if err != nil {
		return fail("open counter: %v", err)
	}
	n, _ := strconv.Atoi(a[2])
	for i := range n {
		if err := h.Lock(10 * time.Second); err != nil {
			return fail("lock: %v", err)
		}
		setCounter(b, counterAt(b)+1)
		if err := h.Unlock(); err != nil {
			return fail("unlock: %v", err)
		}
		if i%16 == 0 {
			if err := h.RLock(10 * time.Second); err != nil {
				return fail("rlock: %v", err)
			}
			c := counterAt(b)
			for range 100 {
				if counterAt(b) != c {
					return fail("counter changed under a shared hold")
				}
			}
			if err := h.RUnlock(); err != nil {
				return fail("runlock: %v", err)
			}
		}
	}
	fmt.Println("done")
	return 0
}

// childHold <mutex> <w|r>: takes the lock and holds it until killed.
func childHold(args []string) int {
	a := testutil.ChildArgs(args)
	h, err := openShared(a[0])
	if err != nil {
		return fail("open: %v", err)
	}
	if a[1] == "w" {
		err = h.Lock(10 * time.Second)
	} else {
		err = h.RLock(10 * time.Second)
	}
	if err != nil {
		return fail("lock %s: %v", a[1], err)
	}
	fmt.Println("held")
	time.Sleep(60 * time.Second)
	return 0
}

// childReaders <mutex> <countermap>: holds shared until it has seen a second
// process inside too.
func childReaders(args []string) int {
	a := testutil.ChildArgs(args)
	h, err := openShared(a[0])
	if err != nil {
		return fail("open: %v", err)
	}
	b, err := openTestMap(a[1])
	if err != nil {
		return fail("open counter: %v", err)
	}
	if err := h.RLock(10 * time.Second); err != nil {
		return fail("rlock: %v", err)
	}
	atomic.AddUint32(insideWord(b), 1)
	deadline := time.Now().Add(10 * time.Second)
	for atomic.LoadUint32(insideWord(b)) < 2 {
		if time.Now().After(deadline) {
			return fail("alone inside for 10 s")
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Println("both")
	if err := h.RUnlock(); err != nil {
		return fail("runlock: %v", err)
	}
	return 0
}
