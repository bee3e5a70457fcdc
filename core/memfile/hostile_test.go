package memfile

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/shmfs/shmfs/internal/shm"
	"github.com/shmfs/shmfs/internal/testutil"
)

// TestHostileRingHeader: a ring header value out of range makes Open fail
// with ErrCorrupt (read-only and read-write), before any slot is used.
func TestHostileRingHeader(t *testing.T) {
	d := testutil.Domain(t)
	f, w := mustCreate(t, d, Options{Slots: 4, MinSize: 8192})
	put(t, w, []byte("valid message"), Header{})
	b := f.seg.Bytes() // the mapping this process shares for the name
	orig := bytes.Clone(b[:f.dataOff])
	mapped := uint64(len(b))
	cases := []struct {
		what string
		off  int
		val  uint64
		w    int
	}{
		{"ring header size 0", offRingHdr, 0, 4},
		{"ring header size 961", offRingHdr, ringHdrSize + 1, 4},
		{"slot count 0", offSlots, 0, 4},
		{"slot count 3", offSlots, 3, 4},
		{"slot count 6", offSlots, 6, 4},
		{"slot count above the maximum", offSlots, MaxSlots * 2, 4},
		{"slot count max", offSlots, 0xffffffff, 4},
		{"slot table past the data offset", offSlots, 64, 4}, // 1024+64×64 > 4096
		{"slot size 0", offSlotSize, 0, 4},
		{"slot size 32", offSlotSize, 32, 4},
		{"slot size 128", offSlotSize, 128, 4},
		{"slot table offset 0", offSlotTable, 0, 4},
		{"slot table offset 512", offSlotTable, 512, 4},
		{"slot table offset 2048", offSlotTable, 2048, 4},
		{"data offset 0", offData, 0, 4},
		{"data offset inside the slot table", offData, slotTableOff + 3*slotSize, 4},
		{"data offset unaligned", offData, uint64(f.dataOff) + 8, 4},
		{"data offset at the mapping's end", offData, mapped, 4},
		{"data offset beyond the mapping", offData, mapped + 4096, 4},
		{"data offset max", offData, 0xffffffc0, 4},
		{"topic length 0", offTopicLen, 0, 2},
		{"topic length 256", offTopicLen, maxTopic + 1, 2},
		{"topic length max", offTopicLen, 0xffff, 2},
		{"topic not UTF-8", offTopic, 0xff, 2},
		{"max message beyond the shm limit", offMaxMessage, shm.MaxSize + 1, 8},
		{"max message max", offMaxMessage, ^uint64(0), 8},
	}
	for _, c := range cases {
		copy(b, orig)
		poke(b, c.off, c.val, c.w)
		for _, ro := range []bool{true, false} {
			if g, err := Open(f.Name(), OpenOptions{ReadOnly: ro}); !errors.Is(err, ErrCorrupt) {
				if g != nil {
					g.Close()
				}
				t.Errorf("%s: Open(read-only %v) = %v, want ErrCorrupt", c.what, ro, err)
			}
		}
	}
	copy(b, orig)
	g := openReader(t, f)
	if _, p, err := g.Read(1); err != nil || string(p) != "valid message" {
		t.Fatalf("restored file: %q %v", p, err)
	}
}

// TestHostileSlots: slot values out of range make Read return ErrCorrupt
// (the slot still says it holds the clock) or ErrOverwritten (it does
// not), never a panic or a view outside the file.
func TestHostileSlots(t *testing.T) {
	d := testutil.Domain(t)
	f, w := mustCreate(t, d, Options{Slots: 4, MinSize: 8192, MaxMessage: 1 << 20})
	r := openReader(t, f)
	b := f.seg.Bytes()
	capa := uint64(f.Capacity())
	huge := uint64(1) << 62
	cases := []struct {
		what    string
		off     int // in the slot
		val     uint64
		w       int
		corrupt bool // ErrCorrupt; else ErrOverwritten
	}{
		{what: "offset at the capacity", off: sOffset, val: capa, w: 8, corrupt: true},
		{what: "offset beyond the capacity", off: sOffset, val: capa + 4096, w: 8, corrupt: true},
		{what: "offset huge", off: sOffset, val: huge, w: 8, corrupt: true},
		{what: "offset wrapping with the size", off: sOffset, val: ^uint64(0) - 7, w: 8, corrupt: true},
		{what: "size beyond the capacity", off: sSize, val: capa, w: 8, corrupt: true},
		{what: "size above max message", off: sSize, val: 1<<20 + 1, w: 8, corrupt: true},
		{what: "size huge", off: sSize, val: huge, w: 8, corrupt: true},
		{what: "size max", off: sSize, val: ^uint64(0), w: 8, corrupt: true},
		{what: "sequence word of another clock", off: sSeq, val: 5, w: 8},
		{what: "sequence word 0", off: sSeq, val: 0, w: 8},
	}
	for _, c := range cases {
		clock, _ := put(t, w, []byte("valid message"), Header{})
		if _, _, err := r.Read(clock); err != nil {
			t.Fatal(err)
		}
		poke(slotOf(f, clock), c.off, c.val, c.w)
		readHostile(t, r, clock, c.what, c.corrupt)
	}

	// A capacity that claims more than the file holds: the reader remaps,
	// finds the file smaller, and reports it corrupt.
	clock, _ := put(t, w, []byte("valid message"), Header{})
	saved := load64(b, offCapacity)
	store64(b, offCapacity, huge)
	poke(slotOf(f, clock), sOffset, uint64(len(b)), 8)
	readHostile(t, r, clock, "offset beyond the mapping, within a corrupt capacity", true)
	store64(b, offCapacity, saved)
	if r.Capacity() != int(capa) {
		t.Fatalf("capacity %d after restore", r.Capacity())
	}
}

// readHostile reads clock from r, expecting ErrCorrupt (corrupt) or
// ErrOverwritten, and fails on anything else — a payload included.
func readHostile(t *testing.T, r *File, clock uint64, what string, corrupt bool) {
	t.Helper()
	want := ErrOverwritten
	if corrupt {
		want = ErrCorrupt
	}
	defer func() {
		if x := recover(); x != nil {
			t.Errorf("%s: Read panicked: %v", what, x)
		}
	}()
	h, p, err := r.Read(clock)
	if !errors.Is(err, want) || p != nil {
		t.Errorf("%s: Read = %+v, %d bytes, %v; want %v", what, h, len(p), err, want)
	}
}

// TestWrongKindAndVersion: objects of another kind or layout version are
// refused with ErrKind or ErrVersion.
func TestWrongKindAndVersion(t *testing.T) {
	d := testutil.Domain(t)
	for _, c := range []struct {
		kind    shm.Kind
		version uint16
		want    error
	}{
		{shm.KindMutex, version, ErrKind},
		{shm.KindEvent, version, ErrKind},
		{shm.KindMemfile, 1, ErrVersion}, // the one-message layout
		{shm.KindMemfile, 0, ErrVersion},
		{shm.KindMemfile, version + 1, ErrVersion},
	} {
		s, err := shm.Create(newName(d), c.kind, shm.Options{Size: 64 << 10, Version: c.version})
		if err != nil {
			t.Fatal(err)
		}
		for _, ro := range []bool{true, false} {
			if g, err := Open(s.Name(), OpenOptions{ReadOnly: ro}); !errors.Is(err, c.want) {
				if g != nil {
					g.Close()
				}
				t.Errorf("kind %v version %d: %v, want %v", c.kind, c.version, err, c.want)
			}
		}
		s.Destroy()
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) - 1 // the directory's own descriptor
}

// TestOpenFailuresKeepNoDescriptors: refused opens (corrupt ring header,
// older layout version) close what they opened.
func TestOpenFailuresKeepNoDescriptors(t *testing.T) {
	d := testutil.Domain(t)
	var names []string
	for _, v := range []uint16{version, 1} { // ring header all zero; old layout
		s, err := shm.Create(newName(d), shm.KindMemfile, shm.Options{Size: 4096, Version: v})
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, s.Name())
		defer s.Destroy()
	}
	good, _ := mustCreate(t, d, Options{})
	before := openFDs(t)
	for range 50 {
		if _, err := Open(names[0], OpenOptions{ReadOnly: true}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("corrupt ring header: %v", err)
		}
		if _, err := Open(names[1], OpenOptions{}); !errors.Is(err, ErrVersion) {
			t.Fatalf("old version: %v", err)
		}
		if _, err := Create(names[0], Options{Topic: "t"}); !errors.Is(err, ErrExist) {
			t.Fatalf("Create of an existing name: %v", err)
		}
		if _, err := Create(newName(d), Options{Topic: "t", Slots: 3}); err == nil {
			t.Fatal("bad options accepted")
		}
		f, err := Open(good.Name(), OpenOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors before, %d after", before, after)
	}
}
