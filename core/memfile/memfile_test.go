package memfile

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/shmfs/shmfs/internal/shm"
	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
)

func TestRoundTrip(t *testing.T) {
	d := testutil.Domain(t)
	f := mustCreate(t, newName(d), 0, Options{})
	h, p, err := f.Read()
	if err != nil || h != (Header{}) || p != nil {
		t.Fatalf("Read of an empty file: %+v %v %v", h, p, err)
	}
	want := Header{ID: -5, Clock: 9, Time: 1234567890123, Hash: 0xdeadbeef, Options: OptAck | OptZeroCopy, AckTimeoutMs: 250, Publisher: 77}
	put(t, f, []byte("hello"), want)
	want.DataSize = 5
	r, err := Open(f.Name(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h, p, err = r.Read()
	if err != nil || h != want || string(p) != "hello" || cap(p) != 5 {
		t.Fatalf("Read: %+v %q (cap %d) %v; want %+v", h, p, cap(p), err, want)
	}
	if _, err := r.Reserve(1); !errors.Is(err, ErrPermission) {
		t.Fatalf("Reserve on a read-only file: %v", err)
	}
	if err := r.Commit(Header{}); !errors.Is(err, ErrPermission) {
		t.Fatalf("Commit on a read-only file: %v", err)
	}

	// Reserved but not committed: the old payload is being overwritten.
	pl, err := f.Reserve(3)
	if err != nil {
		t.Fatal(err)
	}
	copy(pl, "abc")
	if _, _, err := r.Read(); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Read after Reserve: %v, want ErrIncomplete", err)
	}
	if err := f.Commit(Header{DataSize: 4}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Commit bigger than reserved: %v", err)
	}
	if err := f.Commit(Header{DataSize: 2, Clock: 10}); err != nil {
		t.Fatal(err)
	}
	if h, p, err := r.Read(); err != nil || h.Clock != 10 || string(p) != "ab" {
		t.Fatalf("shorter commit: %+v %q %v", h, p, err)
	}
	// An empty commit (what a writer does when filling failed).
	if _, err := f.Reserve(100); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(Header{}); err != nil {
		t.Fatal(err)
	}
	if h, p, err := r.Read(); err != nil || h.Clock != 0 || len(p) != 0 {
		t.Fatalf("empty commit: %+v %q %v", h, p, err)
	}
}

func TestSizing(t *testing.T) {
	d := testutil.Domain(t)
	pg := os.Getpagesize()
	f := mustCreate(t, newName(d), 0, Options{})
	if c := f.Capacity(); c < DefaultMinSize || c >= DefaultMinSize+pg {
		t.Fatalf("initial capacity %d", c)
	}
	if f.Generation() != 0 {
		t.Fatal("generation not 0")
	}
	put(t, f, make([]byte, 100), Header{})
	if f.Generation() != 0 {
		t.Fatal("grew for a small message")
	}
	put(t, f, make([]byte, 10000), Header{})
	c := f.Capacity()
	if c < 15000 || c >= 15000+pg || f.Generation() != 1 {
		t.Fatalf("after 10000 bytes: capacity %d (want 15000 + 50%% reserve, page rounded), generation %d", c, f.Generation())
	}
	put(t, f, make([]byte, 64), Header{})
	if f.Capacity() != c || f.Generation() != 1 {
		t.Fatalf("shrank or grew: capacity %d generation %d", f.Capacity(), f.Generation())
	}

	g := mustCreate(t, newName(d), 10000, Options{Reserve: -1, MinSize: 100})
	if c := g.Capacity(); c < 10000 || c >= 10000+pg {
		t.Fatalf("initial 10000 without reserve: capacity %d", c)
	}

	m := mustCreate(t, newName(d), 0, Options{MaxSize: 100000})
	if _, err := m.Reserve(100001); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Reserve above MaxSize: %v", err)
	}
	put(t, m, make([]byte, 90000), Header{})
	if c := m.Capacity(); c < 90000 || c >= 100000+pg {
		t.Fatalf("capacity %d not clamped to MaxSize", c)
	}
	if _, err := Create(newName(d), 100001, Options{MaxSize: 100000}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Create above MaxSize: %v", err)
	}
	if _, err := Create(newName(d), 0, Options{Reserve: 5000}); err == nil {
		t.Fatal("Reserve 5000% accepted")
	}
	if _, err := Create(m.Name(), 0, Options{}); !errors.Is(err, ErrExist) {
		t.Fatalf("Create of an existing name: %v", err)
	}
	if _, err := Open(newName(d), true); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Open of a missing name: %v", err)
	}
}

func TestModeOption(t *testing.T) {
	d := testutil.Domain(t)
	f := mustCreate(t, newName(d), 0, Options{Mode: 0o660})
	st, err := os.Stat(shmname.Path(f.Name()))
	if err != nil || st.Mode().Perm() != 0o660 {
		t.Fatalf("mode %v %v", st.Mode().Perm(), err)
	}
}

// raw returns a writable view of f's file shared with f (one mapping per
// process), to plant corrupt values.
func raw(t *testing.T, f *File) []byte {
	s, err := shm.Open(f.Name(), shm.KindMemfile, shm.Options{Version: version})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.Bytes()
}

func TestCorruptMessageHeader(t *testing.T) {
	d := testutil.Domain(t)
	f := mustCreate(t, newName(d), 0, Options{})
	b := raw(t, f)
	size := uint64(len(b))
	cases := []struct {
		what string
		off  int
		val  uint64
		w    int
		want error
	}{
		{"capacity beyond the file", offCapacity, size, 8, ErrCorrupt},
		{"capacity huge", offCapacity, 1 << 63, 8, ErrCorrupt},
		{"capacity max", offCapacity, ^uint64(0), 8, ErrCorrupt},
		{"state unknown", msgOff + mState, 7, 4, ErrCorrupt},
		{"state writing", msgOff + mState, uint64(stateWriting), 4, ErrIncomplete},
		{"hdr_size 0", msgOff + mHdrSize, 0, 4, ErrCorrupt},
		{"hdr_size 63", msgOff + mHdrSize, 63, 4, ErrCorrupt},
		{"hdr_size above area", msgOff + mHdrSize, msgArea + 8, 4, ErrCorrupt},
		{"hdr_size max", msgOff + mHdrSize, 0xffffffff, 4, ErrCorrupt},
		{"data_size above capacity", msgOff + mDataSize, size, 8, ErrCorrupt},
		{"data_size max", msgOff + mDataSize, ^uint64(0), 8, ErrCorrupt},
		{"data_size negative as int", msgOff + mDataSize, 1 << 63, 8, ErrCorrupt},
	}
	for _, c := range cases {
		put(t, f, []byte("valid message"), Header{Clock: 1})
		if _, _, err := f.Read(); err != nil {
			t.Fatal(err)
		}
		poke(b, c.off, c.val, c.w)
		h, p, err := f.Read()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: Read = %+v, %d bytes, %v; want %v", c.what, h, len(p), err, c.want)
		}
		if c.off == offCapacity { // restore: the writer trusts its own capacity
			poke(b, offCapacity, size-payloadOff, 8)
		}
	}
}

func TestCorruptFileHeader(t *testing.T) {
	d := testutil.Domain(t)
	f := mustCreate(t, newName(d), 0, Options{})
	b := raw(t, f)
	orig := bytes.Clone(b[:payloadOff])
	cases := []struct {
		what string
		off  int
		val  uint64
		w    int
	}{
		{"memfile header size 0", offMFHdrSize, 0, 4},
		{"memfile header size odd", offMFHdrSize, 65, 4},
		{"memfile header size huge", offMFHdrSize, 0xfffffff8, 4},
		{"message offset 0", offMsgOff, 0, 4},
		{"message offset inside memfile header", offMsgOff, 96, 4},
		{"message area 8", offMsgArea, 8, 4},
		{"message area huge", offMsgArea, 0xfffffff8, 4},
		{"payload offset 0", offPayloadOff, 0, 4},
		{"payload offset unaligned", offPayloadOff, payloadOff + 1, 4},
		{"payload offset beyond mapping", offPayloadOff, 1 << 20, 4},
		{"payload offset max", offPayloadOff, 0xfffffff8, 4},
		{"max data huge", offMaxData, 1 << 62, 8},
		{"min capacity above max data", offMinCap, DefaultMaxSize + 1, 8},
		{"reserve huge", offReserve, 1 << 31, 4},
	}
	for _, c := range cases {
		copy(b, orig)
		poke(b, c.off, c.val, c.w)
		for _, ro := range []bool{true, false} {
			if g, err := Open(f.Name(), ro); !errors.Is(err, ErrCorrupt) {
				if g != nil {
					g.Close()
				}
				t.Errorf("%s: Open(ro=%v) = %v, want ErrCorrupt", c.what, ro, err)
			}
		}
	}
	copy(b, orig)
	if g, err := Open(f.Name(), true); err != nil {
		t.Fatalf("restored file: %v", err)
	} else {
		g.Close()
	}
}

func TestWrongKindAndVersion(t *testing.T) {
	d := testutil.Domain(t)
	for _, c := range []struct {
		kind    shm.Kind
		version uint16
		want    error
	}{{shm.KindMutex, version, ErrKind}, {shm.KindMemfile, 0, ErrVersion}, {shm.KindMemfile, version + 1, ErrVersion}} {
		s, err := shm.Create(newName(d), c.kind, shm.Options{Version: c.version})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Open(s.Name(), true); !errors.Is(err, c.want) {
			t.Errorf("kind %v version %d: %v, want %v", c.kind, c.version, err, c.want)
		}
		s.Destroy()
	}
}

func poke(b []byte, off int, v uint64, w int) {
	if w == 4 {
		store32(b, off, uint32(v))
	} else {
		store64(b, off, v)
	}
}
