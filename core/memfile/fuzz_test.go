package memfile

import (
	"bytes"
	"errors"
	"runtime/debug"
	"testing"

	"github.com/shmfs/shmfs/internal/shm"
	"github.com/shmfs/shmfs/internal/testutil"
)

// fuzzOptions: four slots (the slot table ends at 1280, the data area
// starts at 4096) over a one-page data area.
var fuzzOptions = Options{Slots: 4, MinSize: 4096, MaxBuffer: 4096, MaxMessage: 1 << 20}

// fuzzFile creates a file with fuzzOptions and writes messages that wrap
// the ring, so that every slot holds a valid message.
func fuzzFile(t testing.TB, d string) *File {
	f, w := mustCreate(t, d, fuzzOptions)
	for k, n := range []int{100, 1000, 0, 1500, 64, 2000, 700} {
		put(t, w, pattern(uint64(k), n), Header{ID: int64(k)})
	}
	return f
}

// FuzzHeaders overwrites the start of the ring header and slot table
// (bytes 64 up to the data offset) with fuzzed bytes, then opens the file
// and reads every clock up to its head (and a few beyond): each step gives
// an error wrapping a sentinel, or a payload inside the mapping, never a
// panic or a fault. The seeds (f.Add, run by every `go test`) are the
// valid header and each hostile value of TestHostileRingHeader and
// TestHostileSlots planted in it.
func FuzzHeaders(f *testing.F) {
	d := testutil.Domain(f)
	g := fuzzFile(f, d)
	b := g.seg.Bytes()
	valid := bytes.Clone(b[shm.HeaderSize:g.dataOff])
	f.Add(valid)
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, len(valid)))
	seed := func(off int, v uint64, w int) {
		s := bytes.Clone(valid)
		poke(s, off-shm.HeaderSize, v, w)
		f.Add(s)
	}
	for _, c := range []struct {
		off int
		v   uint64
		w   int
	}{
		{offRingHdr, 0, 4}, {offSlots, 3, 4}, {offSlots, MaxSlots * 2, 4}, {offSlots, 64, 4}, {offSlots, 1, 4},
		{offSlotSize, 32, 4}, {offSlotTable, 2048, 4}, {offData, 1280, 4}, {offData, 1281, 4},
		{offData, 8192, 4}, {offData, 1 << 20, 4}, {offTopicLen, 0, 2}, {offTopicLen, 256, 2},
		{offTopic, 0xfe, 2}, {offMaxMessage, shm.MaxSize + 1, 8}, {offMaxMessage, 0, 8},
		{offCapacity, 1 << 62, 8}, {offCapacity, 0, 8}, {offHead, 1 << 62, 8}, {offHead, ^uint64(0), 8},
	} {
		seed(c.off, c.v, c.w)
	}
	for clock := uint64(4); clock <= 7; clock++ {
		s := slotTableOff + int(clock&3)*slotSize
		for _, c := range []struct {
			off int
			v   uint64
		}{{sOffset, 4096}, {sOffset, 1 << 40}, {sOffset, ^uint64(0) - 7}, {sSize, 4097}, {sSize, ^uint64(0)}, {sSeq, 0}} {
			seed(s+c.off, c.v, 8)
		}
	}
	g.Destroy()

	f.Fuzz(func(t *testing.T, data []byte) {
		w := fuzzFile(t, d)
		b := w.seg.Bytes()
		copy(b[shm.HeaderSize:w.dataOff], data)
		r, err := Open(w.Name(), OpenOptions{ReadOnly: true})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v", err)
			}
			return
		}
		defer r.Close()
		head := r.Head()
		lo := uint64(1)
		if head > 4096 {
			lo = head - 4096
		}
		hi := head + 2
		if hi < head {
			hi = ^uint64(0)
		}
		for c := lo; ; c++ {
			fuzzRead(t, r, c)
			if c == hi {
				break
			}
		}
		fuzzRead(t, r, 0)
		fuzzRead(t, r, ^uint64(0))
		r.Capacity()
		r.Generation()
		r.Closed()
	})
}

// fuzzRead reads clock c of a hostile file: an error wrapping a sentinel,
// or a payload of the header's size that lies inside the mapping and can
// be read through.
func fuzzRead(t *testing.T, r *File, c uint64) {
	t.Helper()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	h, p, err := r.Read(c)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrOverwritten) {
			t.Fatalf("Read(%d): %v", c, err)
		}
		return
	}
	if uint64(len(p)) != h.Size || h.Clock != c || !inside(p, r.seg.Bytes()[r.dataOff:]) {
		t.Fatalf("Read(%d): %d bytes (header %+v) outside the data area of %d bytes", c, len(p), h, len(r.seg.Bytes())-r.dataOff)
	}
	var sum byte
	for _, x := range p {
		sum += x
	}
	viewSink.Add(uint32(sum))
}
