package memfile

import (
	"encoding/binary"
	"fmt"
)

// Reserve prepares the file for a message of size bytes and returns the
// payload slice, exactly size bytes, to fill in place. If the capacity is too
// small the file grows in place (to size plus the reserve percentage, at
// least the min capacity) and the generation changes; readers remap on their
// next Read. size above the max data size gives ErrTooLarge. From now until
// Commit the message is marked incomplete: the old payload is being
// overwritten. The caller holds the file's mutex exclusively.
func (f *File) Reserve(size int) ([]byte, error) {
	if f.ro {
		return nil, fmt.Errorf("memfile: reserve in %s: %w: opened read-only", f.Name(), ErrPermission)
	}
	if size < 0 || uint64(size) > f.maxData {
		return nil, fmt.Errorf("memfile: %s: message of %d bytes, max %d: %w", f.Name(), size, f.maxData, ErrTooLarge)
	}
	b, c, err := f.mapping()
	if err != nil {
		return nil, err
	}
	if uint64(size) > c {
		want := roundPage(uint64(f.payloadOff) + capacityFor(uint64(size), f.minCap, f.reserve, f.maxData))
		if err := f.seg.Grow(int(want)); err != nil {
			return nil, fmt.Errorf("memfile: grow %s for %d bytes: %w", f.Name(), size, err)
		}
		b = f.seg.Bytes()
		if b == nil {
			return nil, ErrClosed
		}
		// Capacity after the file has grown: a reader that sees the new
		// capacity finds a file that backs it.
		store64(b, offCapacity, uint64(len(b)-f.payloadOff))
		store64(b, offGeneration, load64(b, offGeneration)+1)
	}
	store32(b, f.msgOff+mState, stateWriting)
	f.reserved.Store(int64(size))
	return b[f.payloadOff : f.payloadOff+size : f.payloadOff+size], nil
}

// Commit writes the message header, completing the message. h.DataSize may
// not exceed the last Reserve's size (a shorter message uses the start of the
// reserved slice). The caller holds the file's mutex exclusively.
func (f *File) Commit(h Header) error {
	if f.ro {
		return fmt.Errorf("memfile: commit to %s: %w: opened read-only", f.Name(), ErrPermission)
	}
	if r := f.reserved.Load(); h.DataSize > uint64(r) {
		return fmt.Errorf("memfile: commit to %s: data size %d exceeds the reserved %d bytes: %w", f.Name(), h.DataSize, r, ErrTooLarge)
	}
	b := f.seg.Bytes()
	if b == nil {
		return ErrClosed
	}
	m := b[f.msgOff : f.msgOff+f.msgArea]
	le := binary.LittleEndian
	le.PutUint32(m[mHdrSize:], msgHdrV1)
	le.PutUint64(m[mDataSize:], h.DataSize)
	le.PutUint64(m[mID:], uint64(h.ID))
	le.PutUint64(m[mClock:], h.Clock)
	le.PutUint64(m[mTime:], uint64(h.Time))
	le.PutUint64(m[mHash:], h.Hash)
	le.PutUint32(m[mOptions:], h.Options)
	le.PutUint32(m[mAckTMO:], h.AckTimeoutMs)
	le.PutUint64(m[mPublisher:], h.Publisher)
	store32(b, f.msgOff+mState, stateCommitted)
	return nil
}

// Read returns the current message: its header and a view of its payload in
// shared memory, valid while the caller holds the file's mutex (shared or
// exclusive) and until Close. It remaps first if the file grew. Every value
// is checked against the mapping: a corrupt header gives ErrCorrupt, a
// message reserved but never committed gives ErrIncomplete, and a file
// without any message gives a zero Header (Clock 0) and no payload.
func (f *File) Read() (Header, []byte, error) {
	b, c, err := f.mapping()
	if err != nil {
		return Header{}, nil, err
	}
	switch s := load32(b, f.msgOff+mState); s {
	case stateEmpty:
		return Header{}, nil, nil
	case stateWriting:
		return Header{}, nil, fmt.Errorf("memfile: %s: %w", f.Name(), ErrIncomplete)
	case stateCommitted:
	default:
		return Header{}, nil, fmt.Errorf("memfile: %s: %w: message state %d", f.Name(), ErrCorrupt, s)
	}
	m := b[f.msgOff : f.msgOff+f.msgArea]
	le := binary.LittleEndian
	if hs := le.Uint32(m[mHdrSize:]); hs < msgHdrV1 || uint64(hs) > uint64(f.msgArea) {
		return Header{}, nil, fmt.Errorf("memfile: %s: %w: message header size %d (area %d)", f.Name(), ErrCorrupt, hs, f.msgArea)
	}
	h := Header{
		DataSize:     le.Uint64(m[mDataSize:]),
		ID:           int64(le.Uint64(m[mID:])),
		Clock:        le.Uint64(m[mClock:]),
		Time:         int64(le.Uint64(m[mTime:])),
		Hash:         le.Uint64(m[mHash:]),
		Options:      le.Uint32(m[mOptions:]),
		AckTimeoutMs: le.Uint32(m[mAckTMO:]),
		Publisher:    le.Uint64(m[mPublisher:]),
	}
	if h.DataSize > c {
		return Header{}, nil, fmt.Errorf("memfile: %s: %w: data size %d above capacity %d", f.Name(), ErrCorrupt, h.DataSize, c)
	}
	end := f.payloadOff + int(h.DataSize)
	return h, b[f.payloadOff:end:end], nil
}
