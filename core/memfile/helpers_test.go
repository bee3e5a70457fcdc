package memfile

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
)

func newName(d string) string { return shmname.Object(d, proc.RandomID()) }

// testTopic is the topic of files whose options name none.
const testTopic = "test/topic"

// mustCreate creates a memory file in domain d with options o (topic
// testTopic unless o names one) and its writer; cleanup destroys the file.
func mustCreate(t testing.TB, d string, o Options) (*File, *Writer) {
	t.Helper()
	if o.Topic == "" {
		o.Topic = testTopic
	}
	f, err := Create(newName(d), o)
	if err != nil {
		t.Fatalf("Create(%+v): %v", o, err)
	}
	t.Cleanup(func() {
		if err := f.Destroy(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Destroy: %v", err)
		}
	})
	w, err := NewWriter(f, o)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	return f, w
}

// openReader opens f's name read-only, as a subscriber does; cleanup closes.
func openReader(t testing.TB, f *File) *File {
	t.Helper()
	r, err := Open(f.Name(), OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// put writes one message through the writer API (Prepare, Begin, copy,
// Commit) and returns its clock and what Prepare reported.
func put(t testing.TB, w *Writer, data []byte, h Header) (clock, overwrites uint64) {
	t.Helper()
	overwrites, err := w.Prepare(len(data))
	if err != nil {
		t.Fatalf("Prepare(%d): %v", len(data), err)
	}
	p, err := w.Begin(len(data))
	if err != nil {
		t.Fatalf("Begin(%d): %v", len(data), err)
	}
	copy(p, data)
	h.Size = uint64(len(data))
	clock, err = w.Commit(h)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return clock, overwrites
}

// pattern returns n pseudo-random bytes that depend on k.
func pattern(k uint64, n int) []byte {
	p := make([]byte, n)
	x := uint32(k)*2654435761 + uint32(k>>32) + 1
	for i := range p {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		p[i] = byte(x)
	}
	return p
}

// slotOf returns the raw slot of clock c (white box: the layout of layout.go).
func slotOf(f *File, c uint64) []byte {
	s := slotTableOff + int(c&(f.slots-1))*slotSize
	return f.seg.Bytes()[s : s+slotSize]
}

// slotOffset returns the data offset recorded in the slot of clock c.
func slotOffset(f *File, c uint64) uint64 {
	return binary.LittleEndian.Uint64(slotOf(f, c)[sOffset:])
}

// poke writes a little-endian value of w bytes (2, 4 or 8) at off.
func poke(b []byte, off int, v uint64, w int) {
	switch w {
	case 2:
		binary.LittleEndian.PutUint16(b[off:], uint16(v))
	case 4:
		binary.LittleEndian.PutUint32(b[off:], uint32(v))
	default:
		binary.LittleEndian.PutUint64(b[off:], v)
	}
}

// inside reports whether p lies inside m (by address; an empty p may sit at
// m's end).
func inside(p, m []byte) bool {
	if len(m) == 0 {
		return false
	}
	pp, mp := reflect.ValueOf(p).Pointer(), reflect.ValueOf(m).Pointer()
	return pp >= mp && pp+uintptr(len(p)) <= mp+uintptr(len(m))
}
