package memfile

import (
	"errors"
	"fmt"
	"testing"

	"github.com/shmfs/shmfs/internal/testutil"
)

// checkWindow fails unless exactly the clocks in (oldest-1, head] read back
// with their bytes (want(c)) and every other clock from head-2W on reads as
// ErrOverwritten.
func checkWindow(t *testing.T, r *File, oldest, head uint64, want func(uint64) []byte) {
	t.Helper()
	lo := uint64(1)
	if w := uint64(2 * r.Slots()); head > w {
		lo = head - w
	}
	for c := lo; c <= head+1; c++ {
		h, p, err := r.Read(c)
		if c >= oldest && c <= head {
			if err != nil || h.Clock != c || string(p) != string(want(c)) || !r.Intact(c) {
				t.Fatalf("head %d: Read(%d) = clock %d, %d bytes, %v; want its %d bytes", head, c, h.Clock, len(p), err, len(want(c)))
			}
		} else if !errors.Is(err, ErrOverwritten) || r.Intact(c) {
			t.Fatalf("head %d (oldest %d): Read(%d) = %v, intact %v; want ErrOverwritten", head, oldest, c, err, r.Intact(c))
		}
	}
}

// TestWindowSlots: with a data area that holds everything, the slot count
// is the window: message c overwrites exactly c-W, Prepare says so, and a
// reader of an older clock gets ErrOverwritten.
func TestWindowSlots(t *testing.T) {
	for _, slots := range []int{1, 2, 8} {
		t.Run(fmt.Sprint(slots), func(t *testing.T) {
			d := testutil.Domain(t)
			f, w := mustCreate(t, d, Options{Slots: slots, MinSize: 64 << 10})
			r := openReader(t, f)
			msg := func(c uint64) []byte { return pattern(c, 100+int(c)) }
			W := uint64(slots)
			for c := uint64(1); c <= 5*W+3; c++ {
				ov, err := w.Prepare(len(msg(c)))
				if err != nil {
					t.Fatal(err)
				}
				if want := max(int64(c)-int64(W), 0); ov != uint64(want) {
					t.Fatalf("Prepare of clock %d reports %d, want %d", c, ov, want)
				}
				p, err := w.Begin(len(msg(c)))
				if err != nil {
					t.Fatal(err)
				}
				// The victim is gone from Begin on, before Commit.
				if ov != 0 && r.Intact(ov) {
					t.Fatalf("clock %d intact after Begin", ov)
				}
				copy(p, msg(c))
				if got, err := w.Commit(Header{Size: uint64(len(p))}); err != nil || got != c {
					t.Fatalf("Commit = %d, %v; want %d", got, err, c)
				}
				checkWindow(t, r, max(c, W)-W+1, c, msg)
			}
			if f.Generation() != 0 {
				t.Fatalf("grew (generation %d) though the data area holds the window", f.Generation())
			}
		})
	}
}

// TestWindowData: when the data area holds fewer messages than there are
// slots and may not grow (MaxBuffer), the data area is the window: each
// message overwrites exactly the oldest messages its bytes cover.
func TestWindowData(t *testing.T) {
	d := testutil.Domain(t)
	// A data area of one page holds four 1 KiB messages.
	f, w := mustCreate(t, d, Options{Slots: 64, MinSize: 4096, MaxBuffer: 4096})
	if f.Capacity() != 4096 {
		t.Fatalf("capacity %d, want 4096", f.Capacity())
	}
	r := openReader(t, f)
	msg := func(c uint64) []byte { return pattern(c, 1024) }
	for c := uint64(1); c <= 40; c++ {
		_, ov := put(t, w, msg(c), Header{})
		if want := max(int64(c)-4, 0); ov != uint64(want) {
			t.Fatalf("message %d overwrites %d, want %d", c, ov, want)
		}
		checkWindow(t, r, max(c, 4)-3, c, msg)
	}
	// A message of 1.5 KiB at offset 0 covers the messages at 0 and 1024.
	// Head is 40, at 3072; 37 is at 0, 38 at 1024.
	if off := slotOffset(f, 40); off != 3072 {
		t.Fatalf("message 40 at %d, want 3072", off)
	}
	big := func(c uint64) []byte {
		if c == 41 {
			return pattern(c, 1500)
		}
		return msg(c)
	}
	if _, ov := put(t, w, big(41), Header{}); ov != 38 {
		t.Fatalf("1.5 KiB message overwrites up to %d, want 38", ov)
	}
	checkWindow(t, r, 39, 41, big)
	if f.Generation() != 0 {
		t.Fatalf("grew beyond MaxBuffer: capacity %d", f.Capacity())
	}
}

// TestAbort: a message given up after Begin is not published; what Begin
// invalidated stays invalid; the next message takes its place and clock.
func TestAbort(t *testing.T) {
	d := testutil.Domain(t)
	f, w := mustCreate(t, d, Options{Slots: 8, MinSize: 4096, MaxBuffer: 4096})
	r := openReader(t, f)
	msg := func(c uint64) []byte { return pattern(c, 1024) }
	for c := uint64(1); c <= 4; c++ {
		put(t, w, msg(c), Header{})
	}
	ov, err := w.Prepare(1024)
	if err != nil || ov != 1 {
		t.Fatalf("Prepare = %d, %v; want 1", ov, err)
	}
	p, err := w.Begin(1024)
	if err != nil {
		t.Fatal(err)
	}
	copy(p, pattern(666, 1024))
	w.Abort()
	if w.Clock() != 4 || r.Head() != 4 {
		t.Fatalf("after Abort: clock %d head %d, want 4", w.Clock(), r.Head())
	}
	if _, err := w.Commit(Header{Size: 1024}); err == nil {
		t.Fatal("Commit after Abort")
	}
	checkWindow(t, r, 2, 4, msg)

	// The next message (smaller) goes where the aborted one was: offset 0.
	next := func(c uint64) []byte {
		if c == 5 {
			return pattern(c, 100)
		}
		return msg(c)
	}
	c, ov := put(t, w, next(5), Header{})
	if c != 5 || ov != 0 || slotOffset(f, 5) != 0 {
		t.Fatalf("next message: clock %d overwrites %d at offset %d; want 5, 0 (1 is gone), 0", c, ov, slotOffset(f, 5))
	}
	checkWindow(t, r, 2, 5, next)
}
