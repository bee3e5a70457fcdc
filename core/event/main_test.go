package event

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/testutil"
	"testing"
)

func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func([]string) int{
		"pong":      childPong,
		"attach":    childAttach,
		"futexpong": childFutexPong,
	})
}

func fail(format string, a ...any) int {
	fmt.Fprintf(os.Stderr, format+"\n", a...)
	return 1
}

// pinIfAsked pins the calling goroutine's thread to CPU 0 when arg is "pin".
func pinIfAsked(arg string) error {
	if arg != "pin" {
		return nil
	}
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(0)
	return unix.SchedSetaffinity(0, &set)
}

// childPong <ping> <pong> <n> <pin|nopin>: n times, waits for ping to move
// and sets pong. Every Wait has a timeout, so a lost wake-up fails instead
// of hanging.
func childPong(args []string) int {
	a := testutil.ChildArgs(args)
	n, _ := strconv.Atoi(a[2])
	if err := pinIfAsked(a[3]); err != nil {
		return fail("pin: %v", err)
	}
	ping, err := Open(a[0], Options{})
	if err != nil {
		return fail("open: %v", err)
	}
	pong, err := Open(a[1], Options{})
	if err != nil {
		return fail("open: %v", err)
	}
	last := ping.Seq() // before "ready": the parent sets only after it
	fmt.Println("ready")
	for i := range n {
		s, err := ping.Wait(last, 5*time.Second)
		if err != nil {
			return fail("round %d: wait: %v", i, err)
		}
		if s != (last+1)&seqMask {
			return fail("round %d: seq %d after %d, want one Set", i, s, last)
		}
		last = s
		pong.Set()
	}
	fmt.Println("done")
	return 0
}

// childAttach <event>: records itself as the waiter, stores a value, sets,
// and stays alive until killed.
func childAttach(args []string) int {
	a := testutil.ChildArgs(args)
	e, err := Open(a[0], Options{})
	if err != nil {
		return fail("open: %v", err)
	}
	e.SetAttached(proc.Self())
	e.StoreValue(0x1122334455667788)
	e.Set()
	fmt.Println("set")
	time.Sleep(60 * time.Second)
	return 0
}
