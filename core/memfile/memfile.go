// Package memfile implements shmfs memory files: named shared-memory files
// in /dev/shm through which one publisher hands messages to the subscribers
// of a topic, after eCAL's memory file.
//
// A memory file is an internal/shm segment of kind KindMemfile holding a
// ring of W message slots over a data area. The publisher (Writer) appends
// each message to the data area and commits its header to the slot of its
// clock; readers take messages straight from the slots, without a lock:
// a reader checks a slot's sequence word before and after it uses the
// payload (a seqlock), and the writer clears the word of every message
// before it overwrites its bytes, so a reader never takes an overwritten
// payload for a message. The file grows in place, never shrinks; readers
// remap when a slot points past their mapping. Layout: layout.go;
// algorithms and invariants: docs/protocol.md ("Memory file").
package memfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unicode/utf8"

	"github.com/shmfs/shmfs/internal/shm"
)

// Errors. The shm sentinels are re-exported: errors.Is(err, memfile.ErrCorrupt)
// holds for a corrupt common header as well as a corrupt ring header.
var (
	// ErrTooLarge: a message above the file's max message size.
	ErrTooLarge = errors.New("memfile: message too large")
	// ErrOverwritten: the slot no longer holds the message asked for: the
	// writer reused it (the reader fell behind) or is rewriting it.
	ErrOverwritten = errors.New("memfile: message overwritten")

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
	DefaultSlots      = 1024
	DefaultMinSize    = 64 << 10
	DefaultReserve    = 50
	DefaultMaxMessage = 64 << 20
	DefaultMaxBuffer  = 4 << 20
)

// Options for Create. Zero values mean the defaults.
type Options struct {
	Mode os.FileMode // 0 means 0600; group access e.g. 0660
	// Slots is the number of message slots W, a power of two (default 1024).
	Slots int
	// MinSize is the initial size of the data area (default 64 KiB).
	MinSize int
	// Reserve is the overprovisioning in percent when the data area grows
	// for one large message (default 50; < 0 means none).
	Reserve int
	// MaxMessage is the largest payload in bytes (default 64 MiB).
	MaxMessage int
	// MaxBuffer bounds growth for the window's sake: while the data area is
	// smaller, it grows when it cannot hold the last W messages (default
	// 4 MiB). A single message larger than half the data area makes it
	// grow regardless, to twice that message plus the reserve.
	MaxBuffer int
	// Publisher is the entity id of the publisher that owns the file.
	Publisher uint64
	// Topic is the topic the file carries.
	Topic string
	// Checksummed records in the file that every message carries its
	// CRC-32C (the publisher computes them): readers then treat a message
	// without one as corrupt instead of taking it unchecked.
	Checksummed bool
}

// Header describes one message (eCAL's SMemFileHeader, per slot).
type Header struct {
	Clock        uint64
	Size         uint64
	ID           int64
	Time         int64 // unix ns
	Hash         uint64
	Options      uint32
	AckTimeoutMs uint32
	// Lost counts messages lost upstream right before this one (a bridge
	// or gateway that missed them says so).
	Lost uint64
}

// File is one open memory file. Reading methods are safe for concurrent use;
// the Writer (Create's side) is for the one publisher.
type File struct {
	seg *shm.Segment
	ro  bool
	// Layout values, read once at open and validated; they never change.
	slots       uint64 // W, a power of two
	dataOff     int
	maxMessage  uint64
	publisher   uint64
	topic       string
	checksummed bool
}

var pageSize = os.Getpagesize()

func roundUp(n, to uint64) uint64 { return (n + to - 1) / to * to }

// Create makes a new memory file. It fails with ErrExist when name exists.
// Use NewWriter to publish through it.
func Create(name string, o Options) (*File, error) {
	p, err := o.params()
	if err != nil {
		return nil, fmt.Errorf("memfile: create %s: %w", name, err)
	}
	dataOff := roundUp(slotTableOff+p.slots*slotSize, uint64(pageSize))
	size := roundUp(dataOff+p.minCap, uint64(pageSize))
	seg, err := shm.Create(name, shm.KindMemfile, shm.Options{
		Mode: o.Mode, Size: int(size), Version: version,
		Init: func(b []byte) error {
			le := binary.LittleEndian
			le.PutUint64(b[offCapacity:], uint64(len(b))-dataOff)
			le.PutUint64(b[offMaxMessage:], p.maxMessage)
			le.PutUint32(b[offRingHdr:], ringHdrSize)
			le.PutUint32(b[offSlots:], uint32(p.slots))
			le.PutUint32(b[offSlotSize:], slotSize)
			le.PutUint32(b[offSlotTable:], slotTableOff)
			le.PutUint32(b[offData:], uint32(dataOff))
			le.PutUint64(b[offPublisher:], o.Publisher)
			if o.Checksummed {
				le.PutUint32(b[offFileOpts:], fileChecksummed)
			}
			le.PutUint16(b[offTopicLen:], uint16(len(o.Topic)))
			copy(b[offTopic:], o.Topic)
			return nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("memfile: %w", err)
	}
	return newFile(seg, false)
}

// OpenOptions configure Open.
type OpenOptions struct {
	// ReadOnly maps the file read-only (subscribers).
	ReadOnly bool
	// Owner: one more owner uid accepted besides ours and root's (see
	// shm.Options.Owner).
	Owner uint32
}

// Open maps an existing memory file. Every layout value is validated; a
// hostile file gives an error, never a fault.
func Open(name string, o OpenOptions) (*File, error) {
	readOnly := o.ReadOnly
	seg, err := shm.Open(name, shm.KindMemfile, shm.Options{Version: version, ReadOnly: readOnly, Owner: o.Owner})
	if err != nil {
		return nil, fmt.Errorf("memfile: %w", err)
	}
	if v := seg.Version(); v != version {
		seg.Close()
		return nil, fmt.Errorf("memfile: open %s: %w: layout version %d, want %d", name, ErrVersion, v, version)
	}
	return newFile(seg, readOnly)
}

// params are Options with defaults applied and checked.
type params struct {
	slots, minCap, reserve, maxMessage, maxBuffer uint64
}

func (o Options) params() (params, error) {
	p := params{slots: DefaultSlots, minCap: DefaultMinSize, reserve: DefaultReserve,
		maxMessage: DefaultMaxMessage, maxBuffer: DefaultMaxBuffer}
	if o.Slots < 0 || o.MinSize < 0 || o.MaxMessage < 0 || o.MaxBuffer < 0 {
		return p, fmt.Errorf("negative option: Slots %d, MinSize %d, MaxMessage %d or MaxBuffer %d", o.Slots, o.MinSize, o.MaxMessage, o.MaxBuffer)
	}
	if o.Slots > 0 {
		if o.Slots > MaxSlots || o.Slots&(o.Slots-1) != 0 {
			return p, fmt.Errorf("option Slots %d: not a power of two in 1..%d", o.Slots, MaxSlots)
		}
		p.slots = uint64(o.Slots)
	}
	if o.MinSize > 0 {
		p.minCap = uint64(o.MinSize)
	}
	if o.MaxMessage > 0 {
		p.maxMessage = uint64(o.MaxMessage)
	}
	if o.MaxBuffer > 0 {
		p.maxBuffer = uint64(o.MaxBuffer)
	}
	switch {
	case o.Reserve > maxReserve:
		return p, fmt.Errorf("option Reserve %d%% above %d%%", o.Reserve, maxReserve)
	case o.Reserve > 0:
		p.reserve = uint64(o.Reserve)
	case o.Reserve < 0:
		p.reserve = 0
	}
	// Two messages of the largest size plus the reserve must fit below the
	// shm limit, so that no size computation can overflow.
	if p.maxMessage > (shm.MaxSize/2)/(100+maxReserve)*100-MaxSlots*slotSize-slotTableOff {
		return p, fmt.Errorf("option MaxMessage %d: %w", p.maxMessage, ErrTooLarge)
	}
	if p.minCap > shm.MaxSize/4 || p.maxBuffer > shm.MaxSize/4 {
		return p, fmt.Errorf("option MinSize %d or MaxBuffer %d above %d", p.minCap, p.maxBuffer, int64(shm.MaxSize/4))
	}
	if len(o.Topic) == 0 || len(o.Topic) > maxTopic || !utf8.ValidString(o.Topic) {
		return p, fmt.Errorf("topic of %d bytes: want 1..%d bytes of UTF-8", len(o.Topic), maxTopic)
	}
	p.minCap = roundUp(max(p.minCap, align), align)
	return p, nil
}

// newFile validates the ring header of seg and takes ownership of seg.
func newFile(seg *shm.Segment, readOnly bool) (*File, error) {
	f := &File{seg: seg, ro: readOnly}
	if err := f.load(seg.Bytes()); err != nil {
		seg.Close()
		return nil, fmt.Errorf("memfile: open %s: %w", seg.Name(), err)
	}
	return f, nil
}

// load reads and checks the fixed part of the ring header.
func (f *File) load(b []byte) error {
	if len(b) < slotTableOff {
		return fmt.Errorf("%w: mapping of %d bytes", ErrCorrupt, len(b))
	}
	le := binary.LittleEndian
	hs := uint64(le.Uint32(b[offRingHdr:]))
	w := uint64(le.Uint32(b[offSlots:]))
	ss := uint64(le.Uint32(b[offSlotSize:]))
	so := uint64(le.Uint32(b[offSlotTable:]))
	do := uint64(le.Uint32(b[offData:]))
	tl := uint64(le.Uint16(b[offTopicLen:]))
	switch {
	case hs != ringHdrSize:
		return fmt.Errorf("%w: ring header size %d", ErrCorrupt, hs)
	case w == 0 || w > MaxSlots || w&(w-1) != 0:
		return fmt.Errorf("%w: slot count %d", ErrCorrupt, w)
	case ss != slotSize:
		return fmt.Errorf("%w: slot size %d", ErrCorrupt, ss)
	case so != slotTableOff:
		return fmt.Errorf("%w: slot table offset %d", ErrCorrupt, so)
	case do < so+w*ss || do%align != 0 || do >= uint64(len(b)):
		return fmt.Errorf("%w: data offset %d (slots end at %d, mapping %d)", ErrCorrupt, do, so+w*ss, len(b))
	case tl == 0 || tl > maxTopic:
		return fmt.Errorf("%w: topic length %d", ErrCorrupt, tl)
	}
	topic := string(b[offTopic : offTopic+tl])
	if !utf8.ValidString(topic) {
		return fmt.Errorf("%w: topic is not UTF-8", ErrCorrupt)
	}
	f.slots, f.dataOff, f.topic = w, int(do), topic
	f.maxMessage = le.Uint64(b[offMaxMessage:])
	f.publisher = le.Uint64(b[offPublisher:])
	f.checksummed = le.Uint32(b[offFileOpts:])&fileChecksummed != 0
	if f.maxMessage > shm.MaxSize {
		return fmt.Errorf("%w: max message size %d", ErrCorrupt, f.maxMessage)
	}
	return nil
}

// Name returns the object name.
func (f *File) Name() string { return f.seg.Name() }

// Slots returns the slot count W.
func (f *File) Slots() int { return int(f.slots) }

// Checksummed reports whether the file says, since its creation, that
// every message carries its CRC-32C (Options.Checksummed). Read once at
// open: later writes to the word change nothing for this reader.
func (f *File) Checksummed() bool { return f.checksummed }

// Publisher returns the publisher entity id recorded at create.
func (f *File) Publisher() uint64 { return f.publisher }

// Topic returns the topic recorded at create.
func (f *File) Topic() string { return f.topic }

// MaxMessage returns the largest payload the file accepts.
func (f *File) MaxMessage() int { return int(f.maxMessage) }

// Creator returns the process that created the file (from its common header).
func (f *File) Creator() shm.Creator { return f.seg.Creator() }

// Perm returns the file's owner, group and mode (see shm.Segment.Perm).
func (f *File) Perm() shm.Perm { return f.seg.Perm() }

// Capacity returns the size of the data area recorded in the file (which a
// reader maps on demand); 0 after Close.
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

// Head returns the clock of the newest committed message (0: none yet, or
// after Close).
func (f *File) Head() uint64 {
	b := f.seg.Bytes()
	if b == nil {
		return 0
	}
	return load64(b, offHead)
}

// Plausible reports whether head (a value Head returned) can be the
// newest committed message: its slot holds it, or a newer message of that
// slot (the writer moved on), or head changed meanwhile. The writer never
// invalidates its newest message (two messages always fit), so a slot
// holding an older clock or none means the head word is corrupt: a reader
// must not skip ahead to it.
func (f *File) Plausible(head uint64) bool {
	b := f.seg.Bytes()
	if b == nil || head == 0 {
		return true
	}
	seq := load64(b, slotTableOff+int(head&(f.slots-1))*slotSize+sSeq)
	return (seq >= head && (seq-head)&(f.slots-1) == 0) || load64(b, offHead) != head
}

// Waiting returns the clock the publisher waits to be acknowledged, 0 when
// it does not wait.
func (f *File) Waiting() uint64 {
	b := f.seg.Bytes()
	if b == nil {
		return 0
	}
	return load64(b, offWaiting)
}

// SetWaiting posts the clock the publisher waits for (0: none).
func (f *File) SetWaiting(c uint64) {
	if b := f.seg.Bytes(); b != nil && !f.ro {
		store64(b, offWaiting, c)
	}
}

// Closed reports whether the publisher marked the file closed.
func (f *File) Closed() bool {
	b := f.seg.Bytes()
	return b != nil && load32(b, offFlags)&flagClosed != 0
}

// Linked reports whether the file's name still refers to this file: a
// publisher that closes unlinks it.
func (f *File) Linked() bool { return f.seg.Linked() }

// Close releases this process's reference.
func (f *File) Close() error {
	if err := f.seg.Close(); err != nil {
		return fmt.Errorf("memfile: %w", err)
	}
	return nil
}

// Destroy marks the file closed (readers learn that no message follows),
// removes the name and closes; mappings of other processes stay valid until
// they close.
func (f *File) Destroy() error {
	if b := f.seg.Bytes(); b != nil && !f.ro {
		or32(b, offFlags, flagClosed)
	}
	if err := f.seg.Destroy(); err != nil {
		return fmt.Errorf("memfile: %w", err)
	}
	return nil
}

// data returns the current mapping and the data area it covers, remapping
// first when need (an end offset in the data area) lies past the mapping:
// another process grew the file. An end the file does not back is corrupt.
func (f *File) data(need uint64) ([]byte, error) {
	b := f.seg.Bytes()
	if b == nil {
		return nil, ErrClosed
	}
	if need <= uint64(len(b)-f.dataOff) {
		return b[f.dataOff:], nil
	}
	if c := load64(b, offCapacity); need > c {
		return nil, fmt.Errorf("%w: payload end %d beyond the capacity %d", ErrCorrupt, need, c)
	}
	if _, err := f.seg.Refresh(); err != nil {
		return nil, fmt.Errorf("remap: %w", err)
	}
	b = f.seg.Bytes()
	if b == nil {
		return nil, ErrClosed
	}
	if need > uint64(len(b)-f.dataOff) {
		return nil, fmt.Errorf("%w: payload end %d beyond the file's %d-byte data area", ErrCorrupt, need, len(b)-f.dataOff)
	}
	return b[f.dataOff:], nil
}
