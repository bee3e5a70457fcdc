package event

import (
	"errors"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shm"
	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
)

const hangGuard = 2 * time.Second

// newShared creates an event in domain; its name is removed at cleanup
// (before testutil.Domain's check) whether or not the test closed it.
func newShared(t testing.TB, domain, suffix string) (string, *Event) {
	t.Helper()
	name := shmname.Object(domain, proc.RandomID(), suffix)
	e, err := Create(name, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(shmname.Path(name)) })
	return name, e
}

func TestPingPongBetweenProcesses(t *testing.T) {
	n := 1000000
	if testing.Short() {
		n = 10000
	}
	d := testutil.Domain(t)
	pingName, ping := newShared(t, d, "ping")
	pongName, pong := newShared(t, d, "pong")
	defer ping.Close()
	defer pong.Close()
	c := testutil.StartChild(t, "pong", nil, pingName, pongName, strconv.Itoa(n), "nopin")
	c.Expect(t, "ready", 10*time.Second)
	start := time.Now()
	last := pong.Seq()
	for i := range n {
		ping.Set()
		s, err := pong.Wait(last, 5*time.Second)
		if err != nil {
			t.Fatalf("round %d: %v (lost wake-up?)", i, err)
		}
		if s != (last+1)&seqMask {
			t.Fatalf("round %d: seq %d after %d, want one Set", i, s, last)
		}
		last = s
	}
	el := time.Since(start)
	t.Logf("%d ping-pongs in %v (%v per round trip)", n, el, el/time.Duration(n))
	c.Expect(t, "done", 10*time.Second)
	if err := c.Wait(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestWaitTimesOut(t *testing.T) {
	_, e := newShared(t, testutil.Domain(t), "evt")
	defer e.Close()
	for _, timeout := range []time.Duration{0, 50 * time.Millisecond} {
		start := time.Now()
		s, err := e.Wait(e.Seq(), timeout)
		if !errors.Is(err, ErrTimeout) || s != 0 {
			t.Fatalf("Wait(%v) without Set = %d, %v; want 0, ErrTimeout", timeout, s, err)
		}
		if el := time.Since(start); el < timeout || el > timeout+hangGuard {
			t.Fatalf("Wait(%v) returned after %v", timeout, el)
		}
	}
}

func TestCounterCountsSets(t *testing.T) {
	_, e := newShared(t, testutil.Domain(t), "evt")
	defer e.Close()
	for range 5 {
		e.Set()
	}
	s, err := e.Wait(0, 0)
	if err != nil || s != 5 {
		t.Fatalf("Wait(0) after 5 Sets = %d, %v; want 5, nil", s, err)
	}
	// The counter wraps within 31 bits; the sleepers bit never leaks out.
	atomic.StoreUint32(e.r.seq, seqMask|sleepers)
	e.Set()
	if s := e.Seq(); s != 0 {
		t.Fatalf("Seq after wrap = %d, want 0", s)
	}
	if s, err := e.Wait(seqMask, 0); s != 0 || err != nil {
		t.Fatalf("Wait(max) after wrap = %d, %v", s, err)
	}
}

func TestSetWakesOnlySleepers(t *testing.T) {
	_, e := newShared(t, testutil.Domain(t), "evt")
	defer e.Close()
	w0 := wakes.Load()
	for range 100 {
		e.Set()
	}
	if n := wakes.Load() - w0; n != 0 {
		t.Fatalf("Set without sleepers made %d FUTEX_WAKE calls", n)
	}

	last := e.Seq()
	got := make(chan error, 1)
	go func() {
		s, err := e.Wait(last, 10*time.Second)
		if err == nil && s != last+1 {
			err = errors.New("woken with the wrong seq " + strconv.Itoa(int(s)))
		}
		got <- err
	}()
	testutil.CheckFor(t, hangGuard, time.Millisecond, func() error {
		if atomic.LoadUint32(e.r.seq)&sleepers == 0 {
			return errors.New("waiter not asleep")
		}
		return nil
	})
	w0 = wakes.Load()
	e.Set()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(hangGuard):
		t.Fatal("sleeper not woken by Set")
	}
	if n := wakes.Load() - w0; n != 1 {
		t.Fatalf("Set with a sleeper made %d FUTEX_WAKE calls, want 1", n)
	}
	e.Set()
	if n := wakes.Load() - w0; n != 1 {
		t.Fatalf("Set after the sleeper left made a FUTEX_WAKE call")
	}

	// A waiter that gives up leaves the bit: one needless wake, then none.
	if _, err := e.Wait(e.Seq(), 10*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatal(err)
	}
	w0 = wakes.Load()
	e.Set()
	e.Set()
	if n := wakes.Load() - w0; n != 1 {
		t.Fatalf("Sets after a timed-out waiter made %d FUTEX_WAKE calls, want 1", n)
	}
}

func TestValueAndAttachedAcrossProcesses(t *testing.T) {
	name, e := newShared(t, testutil.Domain(t), "ack")
	defer e.Close()
	if pid, tag := e.Attached(); pid != 0 || tag != 0 {
		t.Fatalf("fresh event attached to %d/%d", pid, tag)
	}
	last := e.Seq()
	c := testutil.StartChild(t, "attach", nil, name)
	s, err := e.Wait(last, 10*time.Second)
	if err != nil || s != last+1 {
		t.Fatalf("Wait for the child's Set = %d, %v", s, err)
	}
	if v := e.Value(); v != 0x1122334455667788 {
		t.Fatalf("Value = %#x", v)
	}
	id := c.Identity(t)
	pid, tag := e.Attached()
	if pid != id.PID || tag != id.Tag() {
		t.Fatalf("Attached = %d/%d, want %d/%d", pid, tag, id.PID, id.Tag())
	}
	if !proc.AliveTag(pid, tag) {
		t.Fatal("attached child not alive")
	}
	c.Kill()
	testutil.CheckFor(t, hangGuard, time.Millisecond, func() error {
		if proc.AliveTag(pid, tag) {
			return errors.New("killed attached child still alive")
		}
		return nil
	})
	e.SetAttached(proc.Identity{})
	if pid, tag := e.Attached(); pid != 0 || tag != 0 {
		t.Fatalf("cleared Attached = %d/%d", pid, tag)
	}
}

func TestNames(t *testing.T) {
	d := testutil.Domain(t)
	mem := shmname.Object(d, proc.RandomID())
	inst := uint64(0xabc)
	snd, ack := SndName(mem, inst), AckName(mem, inst)
	if snd == ack || SndName(mem, inst+1) == snd {
		t.Fatalf("names collide: %s %s", snd, ack)
	}
	for _, n := range []string{snd, ack} {
		p, err := shmname.Parse(n)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if len(p.Suffixes) != 2 || p.Suffixes[0] != shmname.Hex(inst) {
			t.Fatalf("%s: suffixes %v", n, p.Suffixes)
		}
		e, err := Create(n, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() != n {
			t.Fatalf("Name = %q, want %q", e.Name(), n)
		}
		if err := e.Destroy(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestModeIgnoresUmask(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	d := testutil.Domain(t)
	for _, tc := range []struct{ mode, want os.FileMode }{{0, 0o600}, {0o640, 0o640}} {
		name := shmname.Object(d, proc.RandomID(), "evt")
		e, err := Create(name, Options{Mode: tc.mode})
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(shmname.Path(name))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != tc.want {
			t.Errorf("Mode %v: file mode %v, want %v", tc.mode, got, tc.want)
		}
		if err := e.Destroy(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCreateOrOpenAndClose(t *testing.T) {
	name := shmname.Object(testutil.Domain(t), proc.RandomID(), "evt")
	e1, created, err := CreateOrOpen(name, Options{})
	if err != nil || !created {
		t.Fatalf("CreateOrOpen #1 = %v, %v", created, err)
	}
	e2, created, err := CreateOrOpen(name, Options{})
	if err != nil || created {
		t.Fatalf("CreateOrOpen #2 = %v, %v", created, err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := e2.Wait(e2.Seq(), time.Minute)
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := e2.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Wait interrupted by Close = %v, want ErrClosed", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("Close did not end a Wait")
	}
	if _, err := e2.Wait(0, time.Second); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after Close = %v", err)
	}
	e2.Set() // no-op, no crash
	if e2.Seq() != 0 || e2.Value() != 0 {
		t.Fatal("closed handle reads shared memory")
	}
	if err := e2.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
	e1.Set()
	if e1.Seq() != 1 {
		t.Fatal("other handle broken by Close")
	}
	if err := e1.Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(name, Options{}); !errors.Is(err, shm.ErrNotExist) {
		t.Fatalf("Open after Destroy = %v", err)
	}
}

func TestOpenRejectsOtherVersionAndKind(t *testing.T) {
	d := testutil.Domain(t)
	for _, tc := range []struct {
		kind    shm.Kind
		version uint16
		want    error
	}{{shm.KindEvent, 0, shm.ErrVersion}, {shm.KindEvent, layoutVersion + 1, shm.ErrVersion}, {shm.KindMutex, layoutVersion, shm.ErrKind}} {
		name := shmname.Object(d, proc.RandomID(), "evt")
		seg, err := shm.Create(name, tc.kind, shm.Options{Size: 4096, Version: tc.version})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Open(name, Options{}); !errors.Is(err, tc.want) {
			t.Errorf("Open of kind %v version %d = %v, want %v", tc.kind, tc.version, err, tc.want)
		}
		if err := seg.Destroy(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := newRegion(make([]byte, dataSize-1)); !errors.Is(err, shm.ErrCorrupt) {
		t.Fatalf("newRegion on a short buffer = %v", err)
	}
}
