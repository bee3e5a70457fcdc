package mutex

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shm"
	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
)

func TestModeIgnoresUmask(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	d := testutil.Domain(t)
	for _, tc := range []struct {
		mode, want os.FileMode
	}{{0, 0o600}, {0o640, 0o640}} {
		name := shmname.Object(d, proc.RandomID(), "mtx")
		m, err := Create(name, Options{Mode: tc.mode})
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
		if err := m.Destroy(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCreateOrOpenAndDestroy(t *testing.T) {
	d := testutil.Domain(t)
	name := shmname.Object(d, proc.RandomID(), "mtx")
	m1, created, err := CreateOrOpen(name, Options{})
	if err != nil || !created {
		t.Fatalf("CreateOrOpen #1 = %v, %v", created, err)
	}
	m2, created, err := CreateOrOpen(name, Options{})
	if err != nil || created {
		t.Fatalf("CreateOrOpen #2 = %v, %v", created, err)
	}
	if m2.Name() != name {
		t.Fatalf("Name = %q", m2.Name())
	}
	if err := m1.Lock(time.Second); err != nil {
		t.Fatal(err)
	}
	if ok, _ := m2.TryLock(); ok {
		t.Fatal("second handle locked a held mutex")
	}
	if err := m2.Unlock(); err != nil { // same process: allowed
		t.Fatalf("Unlock through another handle of the owner: %v", err)
	}
	if _, err := Create(name, Options{}); !errors.Is(err, shm.ErrExist) {
		t.Fatalf("Create of an existing name = %v, want shm.ErrExist", err)
	}
	if err := m1.Destroy(); err != nil {
		t.Fatal(err)
	}
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(name, Options{}); !errors.Is(err, shm.ErrNotExist) {
		t.Fatalf("Open after Destroy = %v, want shm.ErrNotExist", err)
	}
	if err := m1.Destroy(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Destroy after Destroy = %v, want ErrClosed", err)
	}
}

func TestOpenRejectsCorruptSlotCount(t *testing.T) {
	name, m := newShared(t, testutil.Domain(t))
	defer m.Close()
	b := m.seg.Bytes()[shm.HeaderSize:]
	for _, n := range []uint32{0, 65, 1 << 31} {
		binary.LittleEndian.PutUint32(b[offNSlots:], n)
		if _, err := Open(name, Options{}); !errors.Is(err, shm.ErrCorrupt) {
			t.Fatalf("Open with %d slots = %v, want shm.ErrCorrupt", n, err)
		}
	}
	if _, err := newRegion(make([]byte, dataSize-8)); !errors.Is(err, shm.ErrCorrupt) {
		t.Fatalf("newRegion on a short buffer = %v, want shm.ErrCorrupt", err)
	}
}

func TestOpenRejectsOtherVersionAndKind(t *testing.T) {
	d := testutil.Domain(t)
	for _, tc := range []struct {
		kind    shm.Kind
		version uint16
		want    error
	}{{shm.KindMutex, 0, shm.ErrVersion}, {shm.KindMutex, layoutVersion + 1, shm.ErrVersion}, {shm.KindEvent, layoutVersion, shm.ErrKind}} {
		name := shmname.Object(d, proc.RandomID(), "mtx")
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
}

// Garbage in the lock words is recovered from like dead holders: a writer
// word naming no live process, and reader bits whose slots are empty or
// name dead processes.
func TestGarbageWordsAreRecovered(t *testing.T) {
	_, m := newShared(t, testutil.Domain(t))
	defer m.Close()
	r := regionOf(m)
	atomic.StoreUint64(r.w, 0xdeadbeef_3fff0001|wSleepers)
	start := time.Now()
	if err := m.Lock(hangGuard); !errors.Is(err, ErrOwnerDied) {
		t.Fatalf("Lock over a garbage writer word = %v, want ErrOwnerDied", err)
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
	atomic.StoreUint64(r.readers, 0xff)
	atomic.StoreUint64(&r.slots[1], 0x12345678_3ffffff0)
	atomic.StoreUint64(&r.slots[2], 0x12345678_3ffffff0|slotCleaning)
	// Garbage slots look like dead shared holders: removed and reported.
	if err := m.Lock(hangGuard); !errors.Is(err, ErrReaderDied) {
		t.Fatalf("Lock over garbage reader bits = %v, want ErrReaderDied", err)
	}
	t.Logf("recovered from garbage in %v", time.Since(start))
	if rd := atomic.LoadUint64(r.readers); rd != 0 {
		t.Fatalf("readers word %#x after recovery", rd)
	}
	for i := range r.slots {
		if v := atomic.LoadUint64(&r.slots[i]); v != 0 {
			t.Fatalf("slot %d = %#x after recovery", i, v)
		}
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// Processes hammering the lock are SIGKILLed at random instants (holding
// it, waiting, draining, half-way through a release); the survivors never
// time out and the lock ends up free with every slot reusable.
func TestKillAtRandomInstants(t *testing.T) {
	name, m := newShared(t, testutil.Domain(t))
	defer m.Close()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for round := range 8 {
		var kids []*testutil.Child
		for range 3 {
			c := testutil.StartChild(t, "hammer", nil, name)
			c.Expect(t, "running", 10*time.Second)
			kids = append(kids, c)
		}
		for i, c := range kids[:2] {
			time.Sleep(time.Duration(rng.IntN(20000)) * time.Microsecond)
			c.Kill()
			if err := c.Wait(t, hangGuard); err == nil {
				t.Fatalf("round %d: child %d exited cleanly before the kill", round, i)
			}
		}
		// The third one must still make progress: drop the ticks it printed
		// so far, then a new one must come well before its 5 s lock
		// timeout could have passed.
		for drained := false; !drained; {
			select {
			case <-kids[2].Lines():
			default:
				drained = true
			}
		}
		kids[2].Expect(t, "tick", hangGuard)
		if err := m.Lock(hangGuard); err != nil && !errors.Is(err, ErrOwnerDied) && !errors.Is(err, ErrReaderDied) {
			t.Fatalf("round %d: Lock: %v", round, err)
		}
		if err := m.Unlock(); err != nil {
			t.Fatal(err)
		}
		kids[2].Kill()
		if err := kids[2].Wait(t, hangGuard); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("round %d: survivor ended with %v before the kill, output %q", round, err, kids[2].Output())
		}
	}
	if err := m.Lock(hangGuard); err != nil && !errors.Is(err, ErrOwnerDied) && !errors.Is(err, ErrReaderDied) {
		t.Fatal(err)
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
	r := regionOf(m)
	if w, rd := atomic.LoadUint64(r.w), atomic.LoadUint64(r.readers); w != 0 || rd != 0 {
		t.Fatalf("after recovery W = %#x, readers = %#x", w, rd)
	}
	// Slots leaked by readers killed between claiming a slot and announcing
	// it are reclaimed when every slot is needed.
	for i := range numSlots {
		if err := m.RLock(hangGuard); err != nil && !errors.Is(err, ErrOwnerDied) {
			t.Fatalf("RLock %d: %v", i, err)
		}
	}
	for range numSlots {
		if err := m.RUnlock(); err != nil {
			t.Fatal(err)
		}
	}
}
