package memfile

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/shmfs/shmfs/internal/testutil"
)

var pg = uint64(pageSize)

// dataOffsetOf returns where p starts in f's data area (p not empty).
func dataOffsetOf(f *File, p []byte) uint64 {
	return uint64(reflect.ValueOf(p).Pointer() - reflect.ValueOf(f.seg.Bytes()[f.dataOff:]).Pointer())
}

// TestSizingInitial: the data area starts at MinSize rounded up to the
// alignment and the page (default 64 KiB).
func TestSizingInitial(t *testing.T) {
	d := testutil.Domain(t)
	for _, c := range []struct{ min, want int }{
		{0, DefaultMinSize}, {1, int(pg)}, {4096, 4096}, {10000, int(roundUp(10048, pg))}, {1 << 20, 1 << 20},
	} {
		for _, slots := range []int{1, 64, 4096} {
			f, _ := mustCreate(t, d, Options{MinSize: c.min, Slots: slots})
			if f.Capacity() != c.want || f.Generation() != 0 {
				t.Errorf("MinSize %d, %d slots: capacity %d generation %d, want %d", c.min, slots, f.Capacity(), f.Generation(), c.want)
			}
			if st := len(f.seg.Bytes()); st != f.dataOff+f.Capacity() || f.dataOff%pageSize != 0 || f.dataOff < slotTableOff+slots*slotSize {
				t.Errorf("%d slots: mapping %d, data offset %d, capacity %d", slots, st, f.dataOff, f.Capacity())
			}
		}
	}
}

// TestSizingGrowForMessage: a message that does not fit in half the data
// area makes it grow to twice the message plus Reserve percent (rounded to
// the page), once; smaller messages never make it grow when the window may
// not (MaxBuffer); older payloads stay readable at their offsets.
func TestSizingGrowForMessage(t *testing.T) {
	for _, c := range []struct{ reserve, pct int }{{-1, 0}, {0, DefaultReserve}, {50, 50}, {200, 200}} {
		t.Run(fmt.Sprint(c.reserve), func(t *testing.T) {
			d := testutil.Domain(t)
			f, w := mustCreate(t, d, Options{Slots: 16, MinSize: 4096, MaxBuffer: 4096, Reserve: c.reserve})
			r := openReader(t, f)
			small := pattern(1, 100)
			put(t, w, small, Header{})
			_, p1, _ := r.Read(1)
			off1 := dataOffsetOf(r, p1)
			if f.Generation() != 0 {
				t.Fatal("grew for 100 bytes")
			}
			big := pattern(2, 3000) // 3008 after alignment: 2×3008 > 4096
			if _, ov := put(t, w, big, Header{}); ov != 0 {
				t.Fatalf("growth for a message overwrote %d", ov)
			}
			want := roundUp(2*3008*uint64(100+c.pct)/100, pg)
			if got := uint64(f.Capacity()); got != want || f.Generation() != 1 {
				t.Fatalf("capacity %d generation %d after 3000 bytes, want %d and 1", got, f.Generation(), want)
			}
			// The old view (old mapping) and a new read agree, at the same offset.
			_, q1, err := r.Read(1)
			if err != nil || string(q1) != string(small) || string(p1) != string(small) || dataOffsetOf(r, q1) != off1 {
				t.Fatalf("message 1 after growth: %v, offset %d was %d", err, dataOffsetOf(r, q1), off1)
			}
			if _, q2, err := r.Read(2); err != nil || string(q2) != string(big) {
				t.Fatalf("message 2: %v", err)
			}
			// Messages that fit in half the area never grow it.
			for k := uint64(3); k < 40; k++ {
				put(t, w, pattern(k, int(want/2)-int(k)), Header{})
			}
			if uint64(f.Capacity()) != want || f.Generation() != 1 {
				t.Fatalf("capacity %d generation %d after messages that fit", f.Capacity(), f.Generation())
			}
		})
	}
}

// TestSizingGrowForWindow: while below MaxBuffer, the data area doubles
// instead of overwriting a message the slots still hold, so Prepare reports
// nothing; at MaxBuffer it stops growing and the data area is the window.
// Every growth changes Generation and keeps payloads at their offsets.
func TestSizingGrowForWindow(t *testing.T) {
	d := testutil.Domain(t)
	f, w := mustCreate(t, d, Options{Slots: 64, MinSize: 4096, MaxBuffer: 32 << 10, Reserve: -1})
	r := openReader(t, f)
	msg := func(c uint64) []byte { return pattern(c, 1024) }
	views := map[uint64][]byte{}
	offs := map[uint64]uint64{}
	for c := uint64(1); c <= 64; c++ {
		gen, capa := f.Generation(), f.Capacity()
		_, ov := put(t, w, msg(c), Header{})
		if want := max(int64(c)-32, 0); ov != uint64(want) {
			t.Fatalf("message %d overwrites %d, want %d", c, ov, want)
		}
		// 4 KiB, then doubled when message 5, 9 and 17 would wrap.
		wantCap := 4096
		switch {
		case c > 16:
			wantCap = 32 << 10
		case c > 8:
			wantCap = 16 << 10
		case c > 4:
			wantCap = 8 << 10
		}
		if f.Capacity() != wantCap {
			t.Fatalf("after message %d: capacity %d, want %d", c, f.Capacity(), wantCap)
		}
		if grew := f.Capacity() != capa; grew != (f.Generation() != gen) || (grew && f.Generation() != gen+1) {
			t.Fatalf("message %d: capacity %d → %d, generation %d → %d", c, capa, f.Capacity(), gen, f.Generation())
		}
		_, p, err := r.Read(c)
		if err != nil {
			t.Fatal(err)
		}
		views[c], offs[c] = p, dataOffsetOf(r, p)
		checkWindow(t, r, max(c, 32)-31, c, msg)
		for k := max(c, 32) - 31; k <= c; k++ {
			_, p, _ := r.Read(k)
			if dataOffsetOf(r, p) != offs[k] || string(views[k]) != string(msg(k)) {
				t.Fatalf("after message %d: message %d moved from %d to %d, or its old view changed", c, k, offs[k], dataOffsetOf(r, p))
			}
		}
	}
	if f.Generation() != 3 {
		t.Fatalf("generation %d, want 3", f.Generation())
	}
}

// TestSizingWindowGrowthOnlyWhenItHelps: growing for the window's sake
// helps only a message that would wrap to the start of the data area:
// placed after the previous message, it overwrites the same bytes whatever
// the capacity. Here four slots made the ring wrap without growth; then a
// bigger message covers one more message of the window in place. The data
// area must not grow for it, let alone double again and again up to
// MaxBuffer while losing the message anyway; the growth belongs to the next
// message that wraps.
func TestSizingWindowGrowthOnlyWhenItHelps(t *testing.T) {
	d := testutil.Domain(t)
	f, w := mustCreate(t, d, Options{Slots: 4, MinSize: 4096, MaxBuffer: 1 << 20, Reserve: -1})
	r := openReader(t, f)
	sizes := map[uint64]int{6: 1500, 7: 1600}
	msg := func(c uint64) []byte {
		if n, ok := sizes[c]; ok {
			return pattern(c, n)
		}
		return pattern(c, 1024)
	}
	for c := uint64(1); c <= 5; c++ {
		if _, ov := put(t, w, msg(c), Header{}); ov != uint64(max(int64(c)-4, 0)) {
			t.Fatalf("message %d overwrites %d", c, ov)
		}
	}
	if f.Capacity() != 4096 {
		t.Fatalf("capacity %d: the slots, not the data area, limited the window", f.Capacity())
	}
	// Message 6 (1536 bytes at 1024) covers message 3 at 2048 in place.
	_, ov := put(t, w, msg(6), Header{})
	if ov != 3 {
		t.Fatalf("message 6 overwrites up to %d, want 3", ov)
	}
	checkWindow(t, r, 4, 6, msg)
	if f.Capacity() > 2*4096 {
		t.Errorf("message 6 (1.5 KiB, four slots) made the data area grow from 4 KiB to %d KiB in %d growths, and still overwrote message 3",
			f.Capacity()>>10, f.Generation())
	}
	// Message 7 (1600 bytes) does not fit after 6 (at 2560): it would wrap
	// over 5 and 6; growing once lets it follow 6, over 4 only.
	gen := f.Generation()
	_, ov = put(t, w, msg(7), Header{})
	checkWindow(t, r, ov+1, 7, msg)
	if ov != 4 || f.Generation() != gen+1 {
		t.Errorf("message 7 overwrites up to %d with %d growths, want 4 with one", ov, f.Generation()-gen)
	}
}

// TestSizingTooLarge: a message above MaxMessage is refused and changes
// nothing; one of exactly MaxMessage grows the file.
func TestSizingTooLarge(t *testing.T) {
	d := testutil.Domain(t)
	f, w := mustCreate(t, d, Options{Slots: 4, MaxMessage: 100000})
	put(t, w, []byte("x"), Header{})
	capa := f.Capacity()
	if _, err := w.Prepare(100001); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Prepare above MaxMessage: %v", err)
	}
	if f.Capacity() != capa || f.Head() != 1 || w.Clock() != 1 {
		t.Fatal("a refused message changed the file")
	}
	if _, _, err := f.Read(1); err != nil {
		t.Fatal(err)
	}
	put(t, w, make([]byte, 100000), Header{})
	if want := int(roundUp(2*100032*(100+DefaultReserve)/100, pg)); f.Capacity() != want {
		t.Fatalf("capacity %d, want %d", f.Capacity(), want)
	}
}
