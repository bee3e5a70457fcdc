package glibc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shmfs/shmfs/internal/testutil"
)

// The tests share a file laid out like eCAL's named objects: at 0 and at
// 128 an "event" (pthread_mutex_t @0, pthread_cond_t @40, flag byte @88),
// at 256 a counter guarded by the first mutex.
const (
	evA, evB   = 0, 128
	counterOff = 256
	regionSize = 4096
)

func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func([]string) int{
		"pingpong": childPingPong,
		"locker":   childLocker,
		"waiter":   childWaiter,
	})
}

type region struct {
	mem []byte
}

func newRegion(t *testing.T) (string, *region) {
	path := "/dev/shm/shmfs_" + testutil.Domain(t) + "_glibctest"
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(regionSize); err != nil {
		t.Fatal(err)
	}
	r, err := mapRegion(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Munmap(r.mem); os.Remove(path) })
	for _, off := range []int{evA, evB} {
		if err := InitMutex(r.mem[off:]); err != nil {
			t.Fatal(err)
		}
		if err := InitCond(r.mem[off+40:]); err != nil {
			t.Fatal(err)
		}
	}
	return path, r
}

func mapRegion(path string) (*region, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, regionSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return &region{mem: mem}, nil
}

// event is eCAL's named event on top of the imitation.
type event struct {
	m    *Mutex
	c    *Cond
	flag *byte
}

func (r *region) event(off int) *event {
	m, err := MutexAt(r.mem[off:])
	if err != nil {
		panic(err)
	}
	c, err := CondAt(r.mem[off+40:])
	if err != nil {
		panic(err)
	}
	return &event{m: m, c: c, flag: &r.mem[off+88]}
}

func (e *event) set() error {
	if err := e.m.Lock(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	*e.flag = 1
	err := e.c.Signal(time.Now().Add(5 * time.Second))
	e.m.Unlock()
	return err
}

// wait is named_event_wait: true when the flag was set within timeout.
func (e *event) wait(timeout time.Duration) (bool, error) {
	deadline := time.Now().Add(timeout)
	if err := e.m.Lock(deadline.Add(5 * time.Second)); err != nil {
		return false, err
	}
	for *e.flag == 0 {
		woken, err := e.c.Wait(e.m, deadline, nil, deadline.Add(5*time.Second))
		if err != nil {
			return false, err
		}
		if !woken {
			e.m.Unlock()
			return false, nil
		}
	}
	*e.flag = 0
	e.m.Unlock()
	return true, nil
}

func childPingPong(args []string) int {
	a := testutil.ChildArgs(args)
	r, err := mapRegion(a[0])
	if err != nil {
		fmt.Println(err)
		return 1
	}
	rounds, _ := strconv.Atoi(a[1])
	ping, pong := r.event(evA), r.event(evB)
	fmt.Println("ready")
	for i := 0; i < rounds; i++ {
		ok, err := ping.wait(10 * time.Second)
		if !ok || err != nil {
			fmt.Printf("round %d: no ping (%v)\n", i, err)
			return 1
		}
		if err := pong.set(); err != nil {
			fmt.Printf("round %d: %v\n", i, err)
			return 1
		}
	}
	fmt.Println("done")
	return 0
}

// Ping-pong between two processes through the imitated mutex and condition
// variable, with the waiter sleeping in the futex: every round trip
// completes (a lost wake-up would stall a round until the 10 s timeout and
// fail it).
func TestEventPingPongBetweenProcesses(t *testing.T) {
	path, r := newRegion(t)
	const rounds = 20000
	c := testutil.StartChild(t, "pingpong", nil, path, strconv.Itoa(rounds))
	c.Expect(t, "ready", 10*time.Second)
	ping, pong := r.event(evA), r.event(evB)
	start := time.Now()
	for i := 0; i < rounds; i++ {
		if err := ping.set(); err != nil {
			t.Fatal(err)
		}
		ok, err := pong.wait(10 * time.Second)
		if err != nil || !ok {
			t.Fatalf("round %d: no pong (%v); child: %s", i, err, c.Output())
		}
	}
	c.Expect(t, "done", 10*time.Second)
	el := time.Since(start)
	t.Logf("%d round trips in %v (%.1f µs each)", rounds, el, float64(el.Microseconds())/rounds)
	for _, off := range []int{evA, evB} {
		if w := binary.LittleEndian.Uint32(r.mem[off+40+condWrefs:]); w>>3 != 0 {
			t.Errorf("event at %d: %d waiters still registered", off, w>>3)
		}
		if l := binary.LittleEndian.Uint32(r.mem[off:]); l != 0 {
			t.Errorf("event at %d: mutex word %d, want 0 (free)", off, l)
		}
	}
}

func childLocker(args []string) int {
	a := testutil.ChildArgs(args)
	r, err := mapRegion(a[0])
	if err != nil {
		fmt.Println(err)
		return 1
	}
	n, _ := strconv.Atoi(a[1])
	m, _ := MutexAt(r.mem[evA:])
	for i := 0; i < n; i++ {
		if err := m.Lock(time.Now().Add(10 * time.Second)); err != nil {
			fmt.Println(err)
			return 1
		}
		v := binary.LittleEndian.Uint64(r.mem[counterOff:])
		binary.LittleEndian.PutUint64(r.mem[counterOff:], v+1)
		m.Unlock()
	}
	fmt.Println("done")
	return 0
}

// Three processes increment one counter under the imitated mutex: no
// increment is lost, and the mutex ends free with no owner and no users.
func TestMutexExcludesAcrossProcesses(t *testing.T) {
	path, r := newRegion(t)
	const n = 30000
	var cs []*testutil.Child
	for i := 0; i < 3; i++ {
		cs = append(cs, testutil.StartChild(t, "locker", nil, path, strconv.Itoa(n)))
	}
	for _, c := range cs {
		c.Expect(t, "done", 60*time.Second)
	}
	if v := binary.LittleEndian.Uint64(r.mem[counterOff:]); v != 3*n {
		t.Fatalf("counter %d, want %d", v, 3*n)
	}
	le := binary.LittleEndian
	if l, o, u := le.Uint32(r.mem[mutexLock:]), le.Uint32(r.mem[mutexOwner:]), le.Uint32(r.mem[mutexNusers:]); l != 0 || o != 0 || u != 0 {
		t.Fatalf("mutex lock=%d owner=%d nusers=%d after all unlocked, want 0 0 0", l, o, u)
	}
}

func childWaiter(args []string) int {
	a := testutil.ChildArgs(args)
	r, err := mapRegion(a[0])
	if err != nil {
		fmt.Println(err)
		return 1
	}
	d, _ := time.ParseDuration(a[1])
	fmt.Println("waiting")
	ok, err := r.event(evA).wait(d)
	fmt.Println("woken", ok, err)
	return 0
}

func (r *region) u32(off int) uint32 {
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.mem[off])))
}

// A waiter SIGKILLed while blocked in the futex keeps a group reference
// (__g_refs) forever. glibc's signal then waits without end for it to leave
// when it has to close that group; the imitation gives up after a bound,
// switches groups anyway and wakes the live waiter.
func TestSignalSurvivesWaiterKilledWhileBlocked(t *testing.T) {
	path, r := newRegion(t)
	dead := testutil.StartChild(t, "waiter", nil, path, "60s")
	dead.Expect(t, "waiting", 10*time.Second)
	refs := evA + 40 + condGRefs
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if r.u32(refs)+r.u32(refs+4) == 0 {
			return errors.New("the waiter holds no group reference yet (not blocked in the futex)")
		}
		return nil
	})
	dead.Kill()
	_ = dead.Wait(t, 10*time.Second)
	ev := r.event(evA)
	// First signal: goes to the dead waiter's group (absorbed).
	if err := ev.c.Signal(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	live := testutil.StartChild(t, "waiter", nil, path, "20s")
	live.Expect(t, "waiting", 10*time.Second)
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if r.u32(evA+40+condWrefs)>>3 < 2 {
			return errors.New("the live waiter has not registered yet")
		}
		return nil
	})
	if err := ev.set(); err != nil {
		t.Fatal(err)
	}
	if l := live.Line(t, 15*time.Second); l != "woken true <nil>" {
		t.Fatalf("live waiter: %q", l)
	}
	if n := ev.c.StaleRefs(); n != 1 {
		t.Fatalf("StaleRefs = %d, want 1 (the signal had to pass the dead waiter's group)", n)
	}
}

// A wait that times out cancels itself cleanly: afterwards no waiter is
// registered, and set/wait still pair up.
func TestWaitTimeoutCancelsRegistration(t *testing.T) {
	_, r := newRegion(t)
	ev := r.event(evA)
	for i := 0; i < 3; i++ {
		ok, err := ev.wait(20 * time.Millisecond)
		if ok || err != nil {
			t.Fatalf("wait on an unset event: %v %v", ok, err)
		}
	}
	if w := r.u32(evA + 40 + condWrefs); w>>3 != 0 || w&3 != 3 {
		t.Fatalf("__wrefs %#x after timeouts, want 3 (no waiters, shared|monotonic)", w)
	}
	if err := ev.set(); err != nil {
		t.Fatal(err)
	}
	if ok, err := ev.wait(time.Second); !ok || err != nil {
		t.Fatalf("wait after set: %v %v", ok, err)
	}
}

// Objects that are not glibc 2.25-2.37 process-shared ones are refused.
func TestForeignLayoutsAreRefused(t *testing.T) {
	b := make([]byte, 96+8)
	mem := b[8-uintptr(unsafe.Pointer(&b[0]))%8:][:96]
	if _, err := MutexAt(mem); !errors.Is(err, ErrUnsupported) {
		t.Errorf("zeroed mutex (private, kind 0): %v, want ErrUnsupported", err)
	}
	binary.LittleEndian.PutUint32(mem[mutexKind:], KindPShared|16) // robust
	if _, err := MutexAt(mem); !errors.Is(err, ErrUnsupported) {
		t.Errorf("robust mutex: %v, want ErrUnsupported", err)
	}
	if _, err := CondAt(mem[40:]); !errors.Is(err, ErrUnsupported) {
		t.Errorf("private condvar: %v, want ErrUnsupported", err)
	}
	if _, err := MutexAt(mem[:20]); !errors.Is(err, ErrInvalid) {
		t.Errorf("short buffer: %v, want ErrInvalid", err)
	}
}
