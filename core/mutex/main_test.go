package mutex

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func([]string) int{
		"incr":     childIncr,
		"hold":     childHold,
		"readers":  childReaders,
		"hammer":   childHammer,
		"relock":   childRelock,
		"tolerant": childTolerant,
	})
}

// Offsets in a counter test map.
const (
	offCounter = 1024 // u64 incremented non-atomically under the lock
	offInside  = 1032 // u32 shared holders inside, atomically counted
	offGo      = 1036 // u32 set to 1 by the parent: children start together
)

func counterAt(b []byte) uint64     { return binary.LittleEndian.Uint64(b[offCounter:]) }
func setCounter(b []byte, v uint64) { binary.LittleEndian.PutUint64(b[offCounter:], v) }

// spin widens the window between reading and writing the counter, so that
// a broken lock loses increments.
func spin(c uint64) {
	for i := range 20 {
		sink += c * uint64(i)
	}
}

var sink uint64

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
	fmt.Println("ready")
	deadline := time.Now().Add(10 * time.Second)
	for atomic.LoadUint32(goWord(b)) == 0 {
		if time.Now().After(deadline) {
			return fail("no start signal")
		}
		runtime.Gosched()
	}
	for i := range n {
		if err := h.Lock(10 * time.Second); err != nil {
			return fail("lock: %v", err)
		}
		c := counterAt(b)
		spin(c)
		setCounter(b, c+1)
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

// childHammer <mutex>: locks, exclusively and shared, in a loop until killed.
// Holders killed at any instant must never make it wait past its timeout.
func childHammer(args []string) int {
	a := testutil.ChildArgs(args)
	h, err := openShared(a[0])
	if err != nil {
		return fail("open: %v", err)
	}
	fmt.Println("running")
	for i := 0; ; i++ {
		if i%256 == 0 {
			fmt.Println("tick") // progress, for the parent
		}
		if i%4 == 0 {
			if err := h.RLock(5 * time.Second); err != nil && !errors.Is(err, ErrOwnerDied) {
				return fail("rlock: %v", err)
			}
			if err := h.RUnlock(); err != nil {
				return fail("runlock: %v", err)
			}
			continue
		}
		if err := h.Lock(5 * time.Second); err != nil && !errors.Is(err, ErrOwnerDied) && !errors.Is(err, ErrReaderDied) {
			return fail("lock: %v", err)
		}
		if err := h.Unlock(); err != nil {
			return fail("unlock: %v", err)
		}
	}
}
