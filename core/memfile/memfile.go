// Package memfile implements shmfs memory files: named shared-memory files
// in /dev/shm that carry one message at a time from a publisher to its
// subscribers, after eCAL's memory file.
//
// A memory file is an internal/shm segment of kind KindMemfile holding a
// memfile header (capacity, generation, sizing), a message header mirroring
// eCAL's SMemFileHeader, and the payload. It grows in place, never shrinks:
// the writer extends the file and bumps the generation; a reader notices the
// bigger capacity on its next Read and maps the new size. No message is
// lost on growth and no registration round trip is needed.
//
// Access is guarded by the file's named mutex (core/mutex), which the caller
// holds: exclusively for Reserve/Commit, shared (or exclusively) for Read.
package memfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/shmfs/shmfs/internal/shm"
)

// Errors. The shm sentinels are re-exported: errors.Is(err, memfile.ErrCorrupt)
// holds for a corrupt common header as well as a corrupt memfile header.
var (
	// ErrTooLarge: a message (or initial size) above the file's max data
	// size, or a commit bigger than the reservation.
	ErrTooLarge = errors.New("memfile: message too large")
	// ErrIncomplete: the writer reserved space but never committed (it died
	// or gave up mid-message); the payload may be partly overwritten.
	ErrIncomplete = errors.New("memfile: message incomplete (writer did not commit)")

	ErrCorrupt          = shm.ErrCorrupt
	ErrExist            = shm.ErrExist
	ErrNotExist         = shm.ErrNotExist
	ErrVersion          = shm.ErrVersion
	ErrKind             = shm.ErrKind
	ErrPermission       = shm.ErrPermission
	ErrForeignNamespace = shm.ErrForeignNamespace
	ErrNoSpace          = shm.ErrNoSpace
	ErrClosed           = shm.ErrClosed
)

// Defaults of Options.
const (
	DefaultMinSize = 4096
	DefaultReserve = 50
	DefaultMaxSize = 64 << 20
)

// Options for Create. Zero values mean the defaults.
type Options struct {
	Mode    os.FileMode // 0 means 0600; group access e.g. 0660
	MinSize int         // smallest payload capacity, default 4096
	Reserve int         // overprovisioning on growth in percent, default 50; < 0 means none
	MaxSize int         // largest payload in bytes, default 64 MiB
}

// Message option bits (Header.Options).
const (
	OptZeroCopy uint32 = 1 << 0
	OptAck      uint32 = 1 << 1
	// OptChecksum: Hash holds the CRC-32C (Castagnoli) of the payload.
	OptChecksum uint32 = 1 << 2
)

// Header is the message header (eCAL's SMemFileHeader).
type Header struct {
	DataSize     uint64
	ID           int64
	Clock        uint64
	Time         int64 // unix ns
	Hash         uint64
	Options      uint32
	AckTimeoutMs uint32
	Publisher    uint64
}

// File is one open memory file. Read is safe for concurrent use; Reserve and
// Commit are for the one writer holding the file's mutex exclusively.
type File struct {
	seg *shm.Segment
	ro  bool // opened read-only (the shared mapping may still be writable)
	// Layout and writer parameters, read once at open and validated;
	// they never change after create.
	msgOff, msgArea, payloadOff int
	maxData, minCap             uint64
	reserve                     uint64
	reserved                    atomic.Int64 // size of the writer's last Reserve
}

var pageSize = os.Getpagesize()

func roundPage(n uint64) uint64 {
	p := uint64(pageSize)
	return (n + p - 1) / p * p
}

// Create makes a new memory file with a payload capacity of at least
// max(MinSize, initialPayload*(100+Reserve)/100), rounded up so that the
// file fills whole pages. It fails with ErrExist when name exists.
func Create(name string, initialPayload int, o Options) (*File, error) {
	minCap, reserve, maxData, err := o.params()
	if err != nil {
		return nil, fmt.Errorf("memfile: create %s: %w", name, err)
	}
	if initialPayload < 0 || uint64(initialPayload) > maxData {
		return nil, fmt.Errorf("memfile: create %s: initial payload %d, max %d: %w", name, initialPayload, maxData, ErrTooLarge)
	}
	size := roundPage(payloadOff + capacityFor(uint64(initialPayload), minCap, reserve, maxData))
	seg, err := shm.Create(name, shm.KindMemfile, shm.Options{
		Mode: o.Mode, Size: int(size), Version: version,
		Init: func(b []byte) error {
			le := binary.LittleEndian
			le.PutUint64(b[offGeneration:], 0)
			le.PutUint64(b[offCapacity:], uint64(len(b)-payloadOff))
			le.PutUint64(b[offMaxData:], maxData)
			le.PutUint64(b[offMinCap:], minCap)
			le.PutUint32(b[offReserve:], uint32(reserve))
			le.PutUint32(b[offMFHdrSize:], mfHdrSize)
			le.PutUint32(b[offMsgOff:], msgOff)
			le.PutUint32(b[offMsgArea:], msgArea)
			le.PutUint32(b[offPayloadOff:], payloadOff)
			return nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("memfile: %w", err)
	}
	return newFile(seg)
}

// Open maps an existing memory file, read-only for subscribers. Every
// layout value is validated; a hostile file gives an error, never a fault.
func Open(name string, readOnly bool) (*File, error) {
	seg, err := shm.Open(name, shm.KindMemfile, shm.Options{Version: version, ReadOnly: readOnly})
	if err != nil {
		return nil, fmt.Errorf("memfile: %w", err)
	}
	if v := seg.Version(); v < version {
		seg.Close()
		return nil, fmt.Errorf("memfile: open %s: %w: layout version %d is older than %d", name, ErrVersion, v, version)
	}
	f, err := newFile(seg)
	if f != nil {
		f.ro = readOnly
	}
	return f, err
}

// params applies the defaults and checks the options.
func (o Options) params() (minCap, reserve, maxData uint64, err error) {
	if o.MinSize < 0 || o.MaxSize < 0 {
		return 0, 0, 0, fmt.Errorf("negative MinSize %d or MaxSize %d", o.MinSize, o.MaxSize)
	}
	minCap, maxData = DefaultMinSize, DefaultMaxSize
	if o.MinSize > 0 {
		minCap = uint64(o.MinSize)
	}
	if o.MaxSize > 0 {
		maxData = uint64(o.MaxSize)
	}
	switch {
	case o.Reserve == 0:
		reserve = DefaultReserve
	case o.Reserve > maxReserve:
		return 0, 0, 0, fmt.Errorf("Reserve %d%% above %d%%", o.Reserve, maxReserve)
	case o.Reserve > 0:
		reserve = uint64(o.Reserve)
	}
	if maxData > shm.MaxSize-maxPayloadOff {
		return 0, 0, 0, fmt.Errorf("MaxSize %d above %d: %w", maxData, int64(shm.MaxSize-maxPayloadOff), ErrTooLarge)
	}
	return min(minCap, maxData), reserve, maxData, nil
}

// capacityFor is the capacity to provide for a message of size bytes:
// size plus reserve percent, at least minCap, at most maxData (but >= size).
// size <= maxData <= 1 TiB, so the product cannot overflow.
func capacityFor(size, minCap, reserve, maxData uint64) uint64 {
	c := max(size*(100+reserve)/100, minCap)
	return max(min(c, maxData), size)
}

// newFile validates the memfile header of seg and takes ownership of seg.
func newFile(seg *shm.Segment) (*File, error) {
	f := &File{seg: seg}
	if err := f.load(seg.Bytes()); err != nil {
		seg.Close()
		return nil, fmt.Errorf("memfile: open %s: %w", seg.Name(), err)
	}
	return f, nil
}

// load reads and checks the fixed part of the memfile header.
func (f *File) load(b []byte) error {
	if len(b) < shm.HeaderSize+mfHdrSize {
		return fmt.Errorf("%w: mapping of %d bytes", ErrCorrupt, len(b))
	}
	le := binary.LittleEndian
	hs := uint64(le.Uint32(b[offMFHdrSize:]))
	mo := uint64(le.Uint32(b[offMsgOff:]))
	ma := uint64(le.Uint32(b[offMsgArea:]))
	po := uint64(le.Uint32(b[offPayloadOff:]))
	switch {
	case hs < mfHdrSize || hs%8 != 0:
		return fmt.Errorf("%w: memfile header size %d", ErrCorrupt, hs)
	case mo < shm.HeaderSize+hs || mo%8 != 0:
		return fmt.Errorf("%w: message header offset %d", ErrCorrupt, mo)
	case ma < msgHdrV1 || ma%8 != 0:
		return fmt.Errorf("%w: message header area %d", ErrCorrupt, ma)
	case po < mo+ma || po%8 != 0 || po > maxPayloadOff || po >= uint64(len(b)):
		return fmt.Errorf("%w: payload offset %d (message header %d+%d, mapping %d)", ErrCorrupt, po, mo, ma, len(b))
	}
	f.msgOff, f.msgArea, f.payloadOff = int(mo), int(ma), int(po)
	f.maxData = le.Uint64(b[offMaxData:])
	f.minCap = le.Uint64(b[offMinCap:])
	f.reserve = uint64(le.Uint32(b[offReserve:]))
	if f.maxData > shm.MaxSize || f.minCap > f.maxData || f.reserve > maxReserve {
		return fmt.Errorf("%w: sizing max %d min %d reserve %d%%", ErrCorrupt, f.maxData, f.minCap, f.reserve)
	}
	return nil
}

// Name returns the object name.
func (f *File) Name() string { return f.seg.Name() }

// Capacity returns the payload capacity recorded in the file (which a reader
// maps on its next Read); 0 after Close.
func (f *File) Capacity() int {
	b := f.seg.Bytes()
	if b == nil {
		return 0
	}
	return int(min(load64(b, offCapacity), shm.MaxSize))
}

// Generation returns the growth counter: it changes whenever the file grew.
func (f *File) Generation() uint64 {
	b := f.seg.Bytes()
	if b == nil {
		return 0
	}
	return load64(b, offGeneration)
}

// MaxSize returns the largest payload the file accepts.
func (f *File) MaxSize() int { return int(f.maxData) }

// Close releases this process's reference.
func (f *File) Close() error {
	if err := f.seg.Close(); err != nil {
		return fmt.Errorf("memfile: %w", err)
	}
	return nil
}

// Destroy removes the name and closes; mappings of other processes stay
// valid until they close.
func (f *File) Destroy() error {
	if err := f.seg.Destroy(); err != nil {
		return fmt.Errorf("memfile: %w", err)
	}
	return nil
}

// mapping returns the current mapping and the capacity recorded in it,
// remapping when the file grew beyond the mapping (another process grew it).
// A capacity the file does not back is corrupt.
func (f *File) mapping() ([]byte, uint64, error) {
	b := f.seg.Bytes()
	if b == nil {
		return nil, 0, ErrClosed
	}
	c := load64(b, offCapacity)
	if c > uint64(len(b)-f.payloadOff) {
		if _, err := f.seg.Refresh(); err != nil {
			return nil, 0, fmt.Errorf("memfile: %s: remap: %w", f.Name(), err)
		}
		b = f.seg.Bytes()
		if b == nil {
			return nil, 0, ErrClosed
		}
		c = load64(b, offCapacity)
		if c > uint64(len(b)-f.payloadOff) {
			return nil, 0, fmt.Errorf("memfile: %s: %w: capacity %d beyond the file's %d bytes", f.Name(), ErrCorrupt, c, len(b))
		}
	}
	return b, c, nil
}
