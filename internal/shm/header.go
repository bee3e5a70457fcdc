package shm

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/shmfs/shmfs/internal/proc"
)

// Common header, at offset 0 of every object, little-endian:
//
//	off size type  field
//	  0    8 u64   magic "SHMFSOBJ"
//	  8    2 u16   kind (1 memfile, 2 mutex, 3 event)
//	 10    2 u16   version of the kind-specific layout
//	 12    4 u32   header size (64); kind-specific data starts here
//	 16    8 u64   creator instance id (random per process)
//	 24    4 u32   creator pid (in the creator's pid namespace)
//	 28    4 u32   reserved (0)
//	 32    8 u64   creator start time (clock ticks since boot)
//	 40    8 u64   creator pid-namespace inode
//	 48    8 i64   creation time (unix ns), informational
//	 56    8 u64   reserved (0)
//
// Every field is written once, before the object becomes visible under its
// name, and never changes afterwards.
const (
	offMagic    = 0
	offKind     = 8
	offVersion  = 10
	offHdrSize  = 12
	offInstance = 16
	offPID      = 24
	offStart    = 32
	offPIDNS    = 40
	offCreated  = 48
)

// Magic is the first 8 bytes of every object: "SHMFSOBJ" read as a
// little-endian uint64.
const Magic uint64 = 0x4A424F53464D4853

// header is the decoded common header.
type header struct {
	kind    Kind
	version uint16
	hdrSize uint32
	creator Creator
	created int64
}

func encodeHeader(b []byte, h header) {
	le := binary.LittleEndian
	clear(b[:HeaderSize])
	le.PutUint16(b[offKind:], uint16(h.kind))
	le.PutUint16(b[offVersion:], h.version)
	le.PutUint32(b[offHdrSize:], HeaderSize)
	le.PutUint64(b[offInstance:], h.creator.Instance)
	le.PutUint32(b[offPID:], uint32(h.creator.ID.PID))
	le.PutUint64(b[offStart:], h.creator.ID.StartTime)
	le.PutUint64(b[offPIDNS:], h.creator.PIDNamespace)
	le.PutUint64(b[offCreated:], uint64(h.created))
	le.PutUint64(b[offMagic:], Magic)
}

// decodeHeader parses a common header and checks what can be checked
// without knowing what the caller expects: the magic and the header size.
// b may be of any length.
func decodeHeader(b []byte) (header, error) {
	var h header
	if len(b) < HeaderSize {
		return h, fmt.Errorf("%w: header truncated (%d of %d bytes)", ErrCorrupt, len(b), HeaderSize)
	}
	le := binary.LittleEndian
	if m := le.Uint64(b[offMagic:]); m != Magic {
		return h, fmt.Errorf("%w: bad magic %#016x", ErrCorrupt, m)
	}
	h.kind = Kind(le.Uint16(b[offKind:]))
	h.version = le.Uint16(b[offVersion:])
	h.hdrSize = le.Uint32(b[offHdrSize:])
	h.creator = Creator{
		Instance:     le.Uint64(b[offInstance:]),
		ID:           proc.Identity{PID: int32(le.Uint32(b[offPID:])), StartTime: le.Uint64(b[offStart:])},
		PIDNamespace: le.Uint64(b[offPIDNS:]),
	}
	h.created = int64(le.Uint64(b[offCreated:]))
	switch {
	case h.hdrSize < HeaderSize || h.hdrSize%8 != 0:
		return h, fmt.Errorf("%w: header size %d", ErrCorrupt, h.hdrSize)
	case h.hdrSize > HeaderSize:
		// A newer writer with a bigger common header moved the
		// kind-specific data; this reader does not know where.
		return h, fmt.Errorf("%w: header size %d > %d (newer writer)", ErrVersion, h.hdrSize, HeaderSize)
	}
	return h, nil
}

// validateHeader checks a decoded header against what the opener expects:
// kind, version and pid namespace. size is the file size.
func validateHeader(b []byte, size int64, kind Kind, version uint16, pidns uint64) (header, error) {
	pg := int64(pageSize)
	switch {
	case size < pg || size < HeaderSize:
		return header{}, fmt.Errorf("%w: size %d smaller than one page", ErrCorrupt, size)
	case size%pg != 0:
		return header{}, fmt.Errorf("%w: size %d not a multiple of the page size", ErrCorrupt, size)
	case size > MaxSize:
		return header{}, fmt.Errorf("%w: size %d above limit %d", ErrCorrupt, size, int64(MaxSize))
	}
	h, err := decodeHeader(b)
	if err != nil {
		return h, err
	}
	if h.kind != kind {
		return h, fmt.Errorf("%w: object is a %v, want %v", ErrKind, h.kind, kind)
	}
	if h.version > version {
		return h, fmt.Errorf("%w: %v layout version %d is newer than %d", ErrVersion, kind, h.version, version)
	}
	if h.creator.PIDNamespace != pidns {
		return h, fmt.Errorf("%w: creator pid namespace %d, ours %d", ErrForeignNamespace, h.creator.PIDNamespace, pidns)
	}
	return h, nil
}

// Created returns the creation time recorded in the header.
func (h header) createdTime() time.Time { return time.Unix(0, h.created) }
