package ecal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shmfs/shmfs/ecal/glibc"
	"github.com/shmfs/shmfs/internal/proc"
)

// The vectors in testdata/vectors were dumped from /dev/shm while eCAL
// 5.13.4's minimal_snd published "Hello World (296)" to a subscriber with
// PID 22705 (glibc 2.36, x86-64).

// installVectors copies the vectors into /dev/shm under a fresh name and
// returns it; cleanup removes them.
func installVectors(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("ecal_test%08x", uint32(proc.RandomID()))
	files, err := filepath.Glob("testdata/vectors/ecal_4eebac7*")
	if err != nil || len(files) != 4 {
		t.Fatalf("vectors: %v %v", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dst := "/dev/shm/" + name + filepath.Base(f)[len("ecal_4eebac7"):]
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(dst) })
	}
	return name
}

func TestReaderParsesECALMemoryFile(t *testing.T) {
	name := installVectors(t)
	r, err := openMemReader(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	h, payload, fresh, err := r.read(0, nil, 1<<20, time.Second)
	if err != nil || !fresh {
		t.Fatalf("read: fresh=%v err=%v", fresh, err)
	}
	if string(payload) != "Hello World (296)" || h.Clock != 296 || h.DataSize != 17 || h.HdrSize != 64 || h.AckTimeout != 0 || h.Options != 0 {
		t.Fatalf("header %+v payload %q", h, payload)
	}
	if h.Hash != 0x0f3422278074fc5a || h.ID != 0 || h.Time != 296 {
		t.Fatalf("hash %#x id %d time %d", h.Hash, h.ID, h.Time)
	}
	// The same clock again is not a new message (eCAL's reader rule).
	if _, _, fresh, err := r.read(296, nil, 1<<20, time.Second); fresh || err != nil {
		t.Fatalf("re-read of clock 296: fresh=%v err=%v", fresh, err)
	}
	// Oversized for the limit: reported, not copied.
	if _, _, _, err := r.read(0, nil, 10, time.Second); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("limit 10: %v", err)
	}
}

// What the gateway writes when it creates an event or mutex file is what
// glibc wrote in eCAL's (the untouched ack event of the vectors).
func TestInitialisedObjectMatchesECALs(t *testing.T) {
	want, err := os.ReadFile("testdata/vectors/ecal_4eebac7_22705_ack_evt")
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, objectSize)
	if err := glibc.InitMutex(got); err != nil {
		t.Fatal(err)
	}
	if err := glibc.InitCond(got[objCond:]); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("initial image differs:\n got %x\nwant %x", got, want)
	}
}

// eCAL's live objects (a snd event with a waiter registered) pass the
// layout checks, and the gateway can set and consume the event.
func TestECALObjectsOpenAndWork(t *testing.T) {
	name := installVectors(t)
	for _, suffix := range []string{"_mtx", "_22705_evt", "_22705_ack_evt"} {
		o, _, err := openObject(name+suffix, false, time.Now().Add(time.Second))
		if err != nil {
			t.Fatalf("%s: %v", suffix, err)
		}
		o.close(false)
	}
	// The ack event is pristine: set, then consume.
	o, _, err := openObject(name+"_22705_ack_evt", false, time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer o.close(false)
	if err := o.set(); err != nil {
		t.Fatal(err)
	}
	if ok, err := o.wait(time.Second, nil); !ok || err != nil {
		t.Fatalf("wait after set: %v %v", ok, err)
	}
	if ok, _ := o.tryWait(); ok {
		t.Fatal("event still set after it was consumed")
	}
	// The mutex file locks and unlocks.
	m, _, err := openObject(name+"_mtx", false, time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer m.close(false)
	if err := m.lock(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := m.lock(20 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("second lock: %v, want ErrTimeout", err)
	}
	if err := m.unlock(); err != nil {
		t.Fatal(err)
	}
}

// A robust 40-byte mutex file (eCAL built with ECAL_USE_CLOCKLOCK_MUTEX) and
// odd sizes are refused with a clear error, untouched.
func TestUnsupportedObjectFilesAreRefused(t *testing.T) {
	for _, size := range []int{40, 64, 200} {
		name := fmt.Sprintf("ecal_test%08x_mtx", uint32(proc.RandomID()))
		path := "/dev/shm/" + name
		if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := openObject(name, true, time.Now().Add(time.Second))
		os.Remove(path)
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("%d-byte object: %v, want ErrUnsupported", size, err)
		}
	}
}

// The gateway's writer and reader agree, across growth in place.
func TestWriterGrowsInPlaceAndReaderFollows(t *testing.T) {
	name := fmt.Sprintf("ecal_test%08x", uint32(proc.RandomID()))
	w, err := createMemWriter(name, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.destroy()
	r, err := openMemReader(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	var last uint64
	for i, size := range []int{10, 4096, 5000, 1 << 20, 100, 3 << 20} {
		clock := uint64(i + 1)
		grew, err := w.write(MemHeader{Clock: clock, ID: 7, Hash: mix(clock), AckTimeout: 5}, size,
			func(b []byte) {
				for j := range b {
					b[j] = byte(j + i)
				}
			}, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		h, p, fresh, err := r.read(last, nil, 8<<20, time.Second)
		if err != nil || !fresh {
			t.Fatalf("size %d: fresh=%v err=%v", size, fresh, err)
		}
		if h.Clock != clock || len(p) != size || h.ID != 7 || h.AckTimeout != 5 {
			t.Fatalf("size %d: got %+v, %d bytes", size, h, len(p))
		}
		for j := range p {
			if p[j] != byte(j+i) {
				t.Fatalf("size %d: byte %d = %d", size, j, p[j])
			}
		}
		if size > 4096 && i == 2 && !grew {
			t.Fatalf("size %d did not grow the 4096-byte file", size)
		}
		last = h.Clock
	}
	st, _ := os.Stat("/dev/shm/" + name)
	if st.Size() < intHdrSize+memHdrSize+3<<20 {
		t.Fatalf("file %d bytes after a 3 MiB message", st.Size())
	}
}

func TestHashesOfOnePublisherAreDistinct(t *testing.T) {
	seen := map[uint64]bool{}
	salt := proc.RandomID()
	for c := uint64(1); c <= 100000; c++ {
		h := mix(salt + c)
		if seen[h] {
			t.Fatalf("hash of clock %d repeats", c)
		}
		seen[h] = true
	}
}
