package memfile

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/shmfs/shmfs/internal/testutil"
)

// ringModel is what a test knows about the messages it wrote: their bytes,
// and where the writer put them (from the slot table, white box).
type ringModel struct {
	t         *testing.T
	f         *File
	r         *File // a read-only File of the same name
	w         *Writer
	W         uint64
	reserve   uint64 // percent, defaults applied
	overgrown bool   // a growth beyond the bound was reported
	pool      []byte // the bytes of message c start at a place that depends on c

	head   uint64
	oldest uint64 // the oldest clock still readable; head+1 when none
	msgs   map[uint64][]byte
	spans  map[uint64]span // data range (aligned size) of each readable message

	// What happened, for the log: victims by cause, wraps to 0.
	reused, covered, tail, wraps, aborts, refused int
}

func (m *ringModel) payload(c uint64, size int) []byte {
	o := int(c*7919) % (len(m.pool) - size + 1)
	return m.pool[o : o+size]
}

// check verifies the whole window against the model: every clock in
// [oldest, head] reads back with exactly its bytes and header, every other
// clock from head-2W on reads ErrOverwritten, and the readable messages lie
// in clock order around the ring without overlapping.
func (m *ringModel) check(when string) {
	t := m.t
	t.Helper()
	lo := uint64(1)
	if m.head > 2*m.W {
		lo = m.head - 2*m.W
	}
	for c := lo; c <= m.head+1; c++ {
		h, p, err := m.r.Read(c)
		if c >= m.oldest && c <= m.head {
			want := m.msgs[c]
			if err != nil || h.Clock != c || h.Size != uint64(len(want)) || h.ID != int64(c)*3 || string(p) != string(want) || !m.r.Intact(c) {
				t.Fatalf("%s: Read(%d) = %+v, %d bytes, %v; want its %d bytes (oldest %d head %d)", when, c, h, len(p), err, len(want), m.oldest, m.head)
			}
		} else if !errors.Is(err, ErrOverwritten) || m.r.Intact(c) {
			t.Fatalf("%s: Read(%d) = %d bytes, %v; want ErrOverwritten (oldest %d head %d)", when, c, len(p), err, m.oldest, m.head)
		}
	}
	// Ring order: going from the oldest to the newest message, offsets
	// increase except at one wrap, after which messages stay below the
	// oldest one's start.
	wraps := 0
	capa := uint64(m.f.Capacity())
	for c := m.oldest; c <= m.head; c++ {
		s := m.spans[c]
		if s.end > capa || s.start%align != 0 {
			t.Fatalf("%s: message %d at [%d,%d) in a data area of %d", when, c, s.start, s.end, capa)
		}
		if c == m.oldest {
			continue
		}
		if prev := m.spans[c-1]; s.start < prev.end {
			wraps++
		}
		if wraps > 1 || (wraps == 1 && s.end > m.spans[m.oldest].start) {
			t.Fatalf("%s: message %d at [%d,%d) after %d at [%d,%d): not in ring order (oldest %d at %d)",
				when, c, s.start, s.end, c-1, m.spans[c-1].start, m.spans[c-1].end, m.oldest, m.spans[m.oldest].start)
		}
	}
}

// write sends one message of size bytes, or aborts it after Begin, and
// checks the model before Commit (the victims are gone, the rest intact)
// and after.
func (m *ringModel) write(size int, abort bool) {
	t := m.t
	t.Helper()
	c := m.head + 1
	capBefore := uint64(m.f.Capacity())
	ov, err := m.w.Prepare(size)
	if uint64(size) > uint64(m.f.MaxMessage()) {
		if !errors.Is(err, ErrTooLarge) || uint64(m.f.Capacity()) != capBefore {
			t.Fatalf("Prepare(%d) above MaxMessage %d: %v, capacity %d → %d", size, m.f.MaxMessage(), err, capBefore, m.f.Capacity())
		}
		m.check("after a refused Prepare")
		m.refused++
		return
	}
	if err != nil {
		t.Fatalf("Prepare(%d) of clock %d: %v", size, c, err)
	}
	// One Prepare grows the data area at most to twice the larger of what
	// it was and what the message asked for: one doubling places any
	// message that fits in half the area after the previous one.
	need := capBefore
	if n := roundUp(max(uint64(size), 1), align); 2*n > capBefore {
		need = max(need, roundUp(2*n*(100+m.reserve)/100, pg))
	}
	if capa := uint64(m.f.Capacity()); capa > 2*need && !m.overgrown {
		m.overgrown = true // reported once; the reads go on being checked
		t.Errorf("Prepare(%d) of clock %d grew the data area from %d to %d (%d growths)", size, c, capBefore, capa, m.f.Generation())
	}
	// Prepare reports the newest of a prefix of the readable messages, and
	// always the one whose slot message c reuses.
	switch {
	case ov >= c:
		t.Fatalf("Prepare of clock %d reports %d", c, ov)
	case ov != 0 && ov < m.oldest:
		// Reporting an already lost message is allowed only as "none".
		t.Fatalf("Prepare of clock %d reports %d, older than the oldest readable %d", c, ov, m.oldest)
	case c > m.W && c-m.W >= m.oldest && ov < c-m.W:
		t.Fatalf("Prepare of clock %d reports %d, but slot reuse overwrites %d", c, ov, c-m.W)
	}
	p, err := m.w.Begin(size)
	if err != nil || len(p) != size {
		t.Fatalf("Begin(%d): %d bytes, %v", size, len(p), err)
	}
	victimsFrom := m.oldest
	if ov >= m.oldest {
		m.oldest = ov + 1
	}
	want := m.payload(c, size)
	copy(p, want)
	m.check(fmt.Sprintf("clock %d (%d bytes) begun, overwriting up to %d", c, size, ov))
	if abort {
		m.w.Abort()
		if m.w.Clock() != m.head || m.r.Head() != m.head {
			t.Fatalf("Abort of clock %d: writer clock %d, head %d", c, m.w.Clock(), m.r.Head())
		}
		m.check(fmt.Sprintf("clock %d aborted", c))
		m.aborts++
		return
	}
	got, err := m.w.Commit(Header{Size: uint64(size), ID: int64(c) * 3})
	if err != nil || got != c || m.r.Head() != c {
		t.Fatalf("Commit of clock %d = %d, %v; head %d", c, got, err, m.r.Head())
	}
	off := slotOffset(m.f, c)
	s := span{off, off + roundUp(max(uint64(size), 1), align)}
	// Every message lost was really in the way (none is lost without
	// cause): its slot is reused, or the new message covers its bytes, or
	// it lies in the tail that a wrap to offset 0 abandons.
	wpos := uint64(0) // where the writer goes on: after the previous message
	if m.head > 0 {
		wpos = m.spans[m.head].end
	}
	for k := victimsFrom; k <= ov; k++ {
		v := m.spans[k]
		switch {
		case k+m.W <= c:
			m.reused++
		case v.start < s.end && s.start < v.end:
			m.covered++
		case s.start == 0 && v.start >= wpos:
			m.tail++
		default:
			t.Fatalf("clock %d at [%d,%d) (previous end %d, W %d) overwrote %d at [%d,%d), which was not in its way",
				c, s.start, s.end, wpos, m.W, k, v.start, v.end)
		}
	}
	if m.head > 0 && s.start < m.spans[m.head].start {
		m.wraps++
	}
	m.head = c
	m.msgs[c], m.spans[c] = want, s
	for k := range m.msgs { // forget what can no longer be read
		if k+2*m.W < c {
			delete(m.msgs, k)
			delete(m.spans, k)
		}
	}
	m.check(fmt.Sprintf("clock %d (%d bytes) committed, overwrote up to %d", c, size, ov))
}

// TestRingModel writes seeded random sequences of messages, from empty to
// several times the initial data area (some above MaxMessage, some
// aborted), under several slot counts, sizes, buffer limits and reserves,
// and checks after every step that the window holds exactly what the model
// says: every message in (head-W, head] reads back with its bytes or is
// ErrOverwritten, and the ones lost by a write are exactly those its
// Prepare reported — a prefix, the oldest.
func TestRingModel(t *testing.T) {
	type config struct {
		slots, minSize, maxBuffer, reserve int
	}
	var configs []config
	for _, slots := range []int{1, 2, 4, 16, 64} {
		for _, minSize := range []int{64, 4096, 20000} {
			for _, mb := range []int{1, 64 << 10, 1 << 20} {
				configs = append(configs, config{slots, minSize, mb, []int{-1, 0, 50, 300}[len(configs)%4]})
			}
		}
	}
	steps := 1500
	if testing.Short() {
		steps = 200
	}
	for i, cf := range configs {
		t.Run(fmt.Sprintf("W%d_min%d_maxbuf%d_res%d", cf.slots, cf.minSize, cf.maxBuffer, cf.reserve), func(t *testing.T) {
			d := testutil.Domain(t)
			rng := rand.New(rand.NewPCG(uint64(i), 0x5eed))
			o := Options{Slots: cf.slots, MinSize: cf.minSize, MaxBuffer: cf.maxBuffer, Reserve: cf.reserve}
			area := int(roundUp(roundUp(uint64(max(cf.minSize, align)), align), pg)) // TestSizingInitial
			o.MaxMessage = 3 * area
			f, w := mustCreate(t, d, o)
			if f.Capacity() != area {
				t.Fatalf("capacity %d, want %d", f.Capacity(), area)
			}
			m := &ringModel{t: t, f: f, r: openReader(t, f), w: w, W: uint64(cf.slots), oldest: 1,
				msgs: map[uint64][]byte{}, spans: map[uint64]span{}}
			switch {
			case cf.reserve > 0:
				m.reserve = uint64(cf.reserve)
			case cf.reserve == 0:
				m.reserve = DefaultReserve
			}
			m.pool = pattern(uint64(i), 4*area+8192)
			maxTarget := uint64(0) // the largest growth a single message asked for
			for range steps {
				var size int
				switch x := rng.IntN(100); {
				case x < 5:
					size = 0
				case x < 40:
					size = rng.IntN(200)
				case x < 60:
					size = rng.IntN(area/2 + 1)
				case x < 75: // fits in half of what the area has grown to
					size = rng.IntN(min(f.Capacity(), len(m.pool)-area)/2 + 1)
				case x < 95:
					size = area/2 + rng.IntN(5*area/2+1)
				default:
					size = 3*area + 1 + rng.IntN(area) // above MaxMessage
				}
				if size <= m.f.MaxMessage() {
					n := roundUp(max(uint64(size), 1), align)
					maxTarget = max(maxTarget, roundUp(2*n*(100+m.reserve)/100, pg))
				}
				m.write(size, rng.IntN(100) < 7)
				// The data area grows only for a message or for the window
				// while below MaxBuffer.
				if limit := max(uint64(area), roundUp(uint64(cf.maxBuffer), pg), maxTarget); uint64(f.Capacity()) > limit {
					t.Fatalf("capacity %d above %d (area %d, MaxBuffer %d, largest growth for a message %d)", f.Capacity(), limit, area, cf.maxBuffer, maxTarget)
				}
			}
			t.Logf("head %d, capacity %d (from %d), %d growths, %d wraps; lost by slot reuse %d, covered %d, in an abandoned tail %d; %d aborted, %d too large",
				m.head, f.Capacity(), area, f.Generation(), m.wraps, m.reused, m.covered, m.tail, m.aborts, m.refused)
		})
	}
}
