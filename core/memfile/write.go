package memfile

import (
	"encoding/binary"
	"fmt"
)

// Writer is the publisher's side of a memory file. It is not safe for
// concurrent use: the publisher serialises sends. A message goes through
//
//	Prepare(size)  — place it; reports the newest older message it overwrites
//	Begin()        — invalidate those messages; returns the payload to fill
//	Commit(header) — publish it: slot, then head
//
// Between Prepare and Begin a publisher in ack mode waits until every
// subscriber has acknowledged what Prepare reported. Abort (instead of
// Commit) gives a message up; the messages Begin invalidated stay lost.
type Writer struct {
	f *File
	p params

	clock uint64 // clock of the newest committed message
	wpos  uint64 // where the next payload goes, unless it wraps
	// capacity is the data area the writer's mapping holds. The writer
	// keeps it itself: the capacity word in the file is for readers, and
	// another process could write anything there.
	capacity uint64
	// live[c % W] is the data range of message c, for every clock c from
	// oldest to clock: the messages whose slots still hold them.
	live   []span
	oldest uint64

	// The placement of the message being written (Prepare → Commit).
	start, size, victims uint64
	begunSize            uint64 // the payload Begin handed out
	prepared, begun      bool
}

type span struct{ start, end uint64 }

// NewWriter returns the writer of a file made by Create with options o.
func NewWriter(f *File, o Options) (*Writer, error) {
	if f.ro {
		return nil, fmt.Errorf("memfile: writer for %s: %w: opened read-only", f.Name(), ErrPermission)
	}
	p, err := o.params()
	if err != nil {
		return nil, fmt.Errorf("memfile: writer for %s: %w", f.Name(), err)
	}
	if p.slots != f.slots {
		return nil, fmt.Errorf("memfile: writer for %s: options say %d slots, the file has %d", f.Name(), p.slots, f.slots)
	}
	b := f.seg.Bytes()
	if b == nil {
		return nil, ErrClosed
	}
	return &Writer{f: f, p: p, live: make([]span, f.slots), oldest: 1, capacity: uint64(len(b) - f.dataOff)}, nil
}

// Clock returns the clock of the newest committed message.
func (w *Writer) Clock() uint64 { return w.clock }

// Prepare places a message of size bytes (growing the file if needed) and
// returns the clock of the newest message that writing it will overwrite, 0
// if none. Messages older than clock+1-W are always overwritten (their slot
// is reused); newer ones only when the data area cannot hold them and may
// not grow any more.
func (w *Writer) Prepare(size int) (overwrites uint64, err error) {
	if size < 0 || uint64(size) > w.f.maxMessage {
		return 0, fmt.Errorf("memfile: %s: message of %d bytes, max %d: %w", w.f.Name(), size, w.f.maxMessage, ErrTooLarge)
	}
	w.prepared, w.begun = false, false
	if w.f.seg.Bytes() == nil {
		return 0, ErrClosed
	}
	n := roundUp(max(uint64(size), 1), align)
	capacity := w.capacity
	// At least two messages of this size fit, so that a reader can copy one
	// while the next is written.
	if 2*n > capacity {
		if err := w.grow(2 * n * (100 + w.p.reserve) / 100); err != nil {
			return 0, err
		}
		capacity = w.capacity
	}
	c := w.clock + 1
	for {
		start, wrapped := w.wpos, false
		if start+n > capacity {
			start, wrapped = 0, true
		}
		victims := uint64(0)
		for k := w.oldest; k < c; k++ {
			sp := w.live[k&(w.f.slots-1)]
			reused := k+w.f.slots <= c
			skipped := wrapped && sp.start >= w.wpos // the tail a wrap abandons
			overlaps := sp.start < start+n && start < sp.end
			if !reused && !skipped && !overlaps {
				// Messages lie in clock order around the ring, so the
				// ones overwritten are always the oldest: a prefix.
				break
			}
			victims = k
		}
		// The data area, not the slot count, limits the window: grow it
		// while it is below MaxBuffer. Growth adds room at the end, which
		// helps only a message that would wrap to the start: with more room
		// it follows the previous one (over the oldest messages there, if
		// any). One placed after the previous message overwrites the same
		// bytes whatever the capacity.
		if wrapped && victims != 0 && victims+w.f.slots > c && capacity < w.p.maxBuffer {
			if err := w.grow(min(2*capacity, w.p.maxBuffer)); err != nil {
				return 0, err
			}
			capacity = w.capacity
			continue
		}
		w.start, w.size, w.victims, w.prepared = start, n, victims, true
		return victims, nil
	}
}

// grow makes the data area at least capacity bytes. The file is extended
// and mapped before the new capacity is published, so a reader that sees it
// finds a file that backs it; messages keep their offsets.
func (w *Writer) grow(capacity uint64) error {
	capacity = roundUp(capacity, uint64(pageSize))
	if err := w.f.seg.Grow(w.f.dataOff + int(capacity)); err != nil {
		return fmt.Errorf("memfile: grow %s to %d bytes: %w", w.f.Name(), capacity, err)
	}
	b := w.f.seg.Bytes()
	if b == nil {
		return ErrClosed
	}
	w.capacity = uint64(len(b) - w.f.dataOff)
	store64(b, offCapacity, w.capacity)
	store64(b, offGeneration, load64(b, offGeneration)+1)
	return nil
}

// Begin invalidates the messages Prepare reported and returns the payload
// slice of the prepared message, exactly size bytes, to fill in place.
func (w *Writer) Begin(size int) ([]byte, error) {
	b := w.f.seg.Bytes()
	if b == nil {
		return nil, ErrClosed
	}
	if !w.prepared || w.begun {
		return nil, fmt.Errorf("memfile: %s: begin without prepare", w.f.Name())
	}
	if size < 0 || uint64(size) > w.size {
		return nil, fmt.Errorf("memfile: %s: begin %d bytes, prepared %d", w.f.Name(), size, w.size)
	}
	for ; w.oldest <= w.victims; w.oldest++ {
		store64(b, slotTableOff+int(w.oldest&(w.f.slots-1))*slotSize+sSeq, 0)
	}
	// Readers that saw the old sequence words before the stores above
	// check them again after their copy; the payload writes come after.
	fence()
	w.begun, w.begunSize = true, uint64(size)
	data := b[w.f.dataOff:]
	return data[w.start : w.start+uint64(size) : w.start+uint64(size)], nil
}

// Commit publishes the message begun: it writes the slot (h.Clock is set to
// the next clock and returned), then the slot's sequence word, then head.
func (w *Writer) Commit(h Header) (uint64, error) {
	if !w.begun {
		return 0, fmt.Errorf("memfile: %s: commit without begin", w.f.Name())
	}
	if h.Size > w.begunSize {
		return 0, fmt.Errorf("memfile: %s: commit of %d bytes, begun %d: %w", w.f.Name(), h.Size, w.begunSize, ErrTooLarge)
	}
	b := w.f.seg.Bytes()
	if b == nil {
		return 0, ErrClosed
	}
	c := w.clock + 1
	s := slotTableOff + int(c&(w.f.slots-1))*slotSize
	slot := b[s : s+slotSize]
	le := binary.LittleEndian
	le.PutUint64(slot[sOffset:], w.start)
	le.PutUint64(slot[sSize:], h.Size)
	le.PutUint64(slot[sID:], uint64(h.ID))
	le.PutUint64(slot[sTime:], uint64(h.Time))
	le.PutUint64(slot[sHash:], h.Hash)
	le.PutUint32(slot[sOptions:], h.Options)
	le.PutUint32(slot[sAckTMO:], h.AckTimeoutMs)
	le.PutUint64(slot[sLost:], h.Lost)
	store64(b, s+sSeq, c)
	store64(b, offHead, c)
	w.live[c&(w.f.slots-1)] = span{w.start, w.start + w.size}
	w.clock, w.wpos, w.begun, w.prepared = c, w.start+w.size, false, false
	return c, nil
}

// Abort gives the begun message up: nothing is published, and the next
// message takes its place.
func (w *Writer) Abort() { w.begun, w.prepared = false, false }
