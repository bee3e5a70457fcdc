package memfile

import (
	"encoding/binary"
	"fmt"
)

// Read returns the header of the message with clock c and a view of its
// payload in shared memory. The view is valid until Close; its contents are
// the message's only while Intact(c) holds: copy (or use) it, then check
// Intact, and discard what you took if the writer overwrote the slot
// meanwhile. ErrOverwritten: the slot no longer holds c (the writer moved
// on; a reader that fell behind skips to Head()-Slots()+1). Every value
// read from the slot is checked against the mapping: a corrupt slot gives
// ErrCorrupt, never a fault. The caller asks only for clocks up to Head().
func (f *File) Read(c uint64) (Header, []byte, error) {
	b := f.seg.Bytes()
	if b == nil {
		return Header{}, nil, ErrClosed
	}
	s := slotTableOff + int(c&(f.slots-1))*slotSize
	if seq := load64(b, s+sSeq); seq != c || c == 0 {
		return Header{}, nil, ErrOverwritten
	}
	le := binary.LittleEndian
	slot := b[s : s+slotSize]
	h := Header{
		Clock:        c,
		Size:         le.Uint64(slot[sSize:]),
		ID:           int64(le.Uint64(slot[sID:])),
		Time:         int64(le.Uint64(slot[sTime:])),
		Hash:         le.Uint64(slot[sHash:]),
		Options:      le.Uint32(slot[sOptions:]),
		AckTimeoutMs: le.Uint32(slot[sAckTMO:]),
		Lost:         le.Uint64(slot[sLost:]),
	}
	off := le.Uint64(slot[sOffset:])
	if h.Size > f.maxMessage || off > maxCapacity {
		// Torn by a concurrent rewrite, or corrupt: which one, the
		// sequence word tells.
		if !f.Intact(c) {
			return Header{}, nil, ErrOverwritten
		}
		return Header{}, nil, fmt.Errorf("memfile: %s: %w: slot of clock %d: size %d, offset %d", f.Name(), ErrCorrupt, c, h.Size, off)
	}
	data, err := f.data(off + h.Size)
	if err != nil {
		if !f.Intact(c) {
			return Header{}, nil, ErrOverwritten
		}
		return Header{}, nil, fmt.Errorf("memfile: %s: clock %d: %w", f.Name(), c, err)
	}
	end := off + h.Size
	return h, data[off:end:end], nil
}

// Intact reports whether the slot of clock c still holds c: a view taken
// from Read was not overwritten until now.
func (f *File) Intact(c uint64) bool {
	fence()
	b := f.seg.Bytes()
	return b != nil && c != 0 && load64(b, slotTableOff+int(c&(f.slots-1))*slotSize+sSeq) == c
}

// maxCapacity bounds a data offset a reader accepts before it compares it
// with the capacity (so that offset plus size cannot overflow).
const maxCapacity = 1 << 40
