package registration

import (
	"encoding/binary"
	"fmt"

	"github.com/shmfs/shmfs/internal/shmname"
)

// Wire format, version 1. All integers little-endian.
//
// Datagram:
//
//	off size field
//	0   4    magic "SHMR" (bytes 53 48 4d 52)
//	4   1    version (1; any other value: datagram dropped)
//	5   1    header size H (>= 16; bytes 16..H-1 are ignored)
//	6   2    sample count N
//	8   8    sender: random id of the sending agent (its own datagrams come
//	         back over loopback and are skipped by this id)
//	H   ...  N samples, each: u16 body length L, then L bytes of body
//	         (bytes after the N-th sample are ignored)
//
// Sample body (fixed part, 84 bytes, then length-prefixed fields):
//
//	0   8  instance         40  8  sent              72  4  flags
//	8   8  entity id        48  8  dropped           76  4  buffer count
//	16  8  seq              56  8  ack timeouts      80  1  kind
//	24  8  start time       64  4  pid (int32)       81  1  reserved (0)
//	32  8  pid namespace    68  4  uid               82  2  memory file count M
//	84  strings, each u16 length + bytes: domain, host name, machine id,
//	    boot id, process name, topic, type, encoding; then M memory file
//	    names in the same form. Bytes after them are ignored (fields added
//	    by later minor revisions are appended here).
//
// A sample of an unknown kind (not 0, 1, 2) is skipped (its length prefix
// frames it). Version 1 changes only by appending; an incompatible change
// takes a new version number. The reserved byte is written 0 and ignored.

// Magic starts every datagram: the bytes "SHMR".
const Magic uint32 = 0x524d4853

// Format constants.
const (
	Version     = 1
	HeaderSize  = 16
	MaxDatagram = 60000 // below 64 KiB with room for IP and UDP headers

	sampleFixed = 84
	numStrings  = 8
	minSample   = sampleFixed + 2*numStrings
)

var le = binary.LittleEndian

// datagram is a decoded datagram.
type datagram struct {
	sender   uint64
	entities []Entity
	skipped  int // samples of unknown kinds
}

// Decode decodes one datagram. It returns an error wrapping ErrInvalid (and a
// more specific error) if any part of it is malformed or any sample fails
// validation; samples of unknown kinds are skipped. It never panics and
// allocates at most a small multiple of len(b).
func Decode(b []byte) ([]Entity, error) {
	d, err := decode(b)
	return d.entities, err
}

func decode(b []byte) (datagram, error) {
	var d datagram
	if len(b) > MaxDatagram {
		return d, fmt.Errorf("%w: datagram of %d bytes, limit %d", ErrTooLarge, len(b), MaxDatagram)
	}
	if len(b) < HeaderSize {
		return d, fmt.Errorf("%w: datagram of %d bytes, header needs %d", ErrTruncated, len(b), HeaderSize)
	}
	if m := le.Uint32(b); m != Magic {
		return d, fmt.Errorf("%w: magic %#08x", ErrVersion, m)
	}
	if b[4] != Version {
		return d, fmt.Errorf("%w: version %d, want %d", ErrVersion, b[4], Version)
	}
	hs := int(b[5])
	if hs < HeaderSize {
		return d, fmt.Errorf("%w: header size %d", ErrVersion, hs)
	}
	if hs > len(b) {
		return d, fmt.Errorf("%w: header size %d past end %d", ErrTruncated, hs, len(b))
	}
	count := int(le.Uint16(b[6:]))
	d.sender = le.Uint64(b[8:])
	rest := b[hs:]
	if count > len(rest)/(2+minSample) {
		return d, fmt.Errorf("%w: %d samples cannot fit in %d bytes", ErrTruncated, count, len(rest))
	}
	d.entities = make([]Entity, 0, count)
	for i := range count {
		if len(rest) < 2 {
			return datagram{}, fmt.Errorf("%w: sample %d: no length", ErrTruncated, i)
		}
		n := int(le.Uint16(rest))
		rest = rest[2:]
		if n > len(rest) {
			return datagram{}, fmt.Errorf("%w: sample %d: length %d past end (%d left)", ErrTruncated, i, n, len(rest))
		}
		e, known, err := decodeSample(rest[:n])
		if err != nil {
			return datagram{}, fmt.Errorf("sample %d: %w", i, err)
		}
		rest = rest[n:]
		if !known {
			d.skipped++
			continue
		}
		d.entities = append(d.entities, e)
	}
	return d, nil
}

// reader reads length-prefixed strings from a sample body.
type reader struct {
	b   []byte
	off int
}

func (r *reader) str(what string, max int) (string, error) {
	if len(r.b)-r.off < 2 {
		return "", fmt.Errorf("%w: %s: no length", ErrTruncated, what)
	}
	n := int(le.Uint16(r.b[r.off:]))
	r.off += 2
	if n > max {
		return "", fmt.Errorf("%w: %s of %d bytes, limit %d", ErrTooLarge, what, n, max)
	}
	if n > len(r.b)-r.off {
		return "", fmt.Errorf("%w: %s: length %d past end", ErrTruncated, what, n)
	}
	s := string(r.b[r.off : r.off+n])
	r.off += n
	return s, nil
}

// decodeSample decodes and validates one sample body. known is false for a
// well-framed sample of an unknown kind.
func decodeSample(b []byte) (e Entity, known bool, err error) {
	if len(b) < minSample {
		return e, false, fmt.Errorf("%w: sample of %d bytes, minimum %d", ErrTruncated, len(b), minSample)
	}
	e.Instance = le.Uint64(b[0:])
	e.ID = le.Uint64(b[8:])
	e.Seq = le.Uint64(b[16:])
	e.StartTime = le.Uint64(b[24:])
	e.PIDNamespace = le.Uint64(b[32:])
	e.Sent = le.Uint64(b[40:])
	e.Dropped = le.Uint64(b[48:])
	e.AckTimeouts = le.Uint64(b[56:])
	e.PID = int32(le.Uint32(b[64:]))
	e.UID = le.Uint32(b[68:])
	e.Flags = le.Uint32(b[72:])
	e.BufferCount = le.Uint32(b[76:])
	e.Kind = Kind(b[80])
	nmem := int(le.Uint16(b[82:]))
	switch e.Kind {
	case KindPublisher, KindSubscriber:
	case 0:
		return e, false, fmt.Errorf("%w: kind 0", ErrBadValue)
	default:
		return Entity{}, false, nil
	}
	r := reader{b: b, off: sampleFixed}
	for _, f := range []struct {
		p    *string
		what string
		max  int
	}{
		{&e.Domain, "domain", shmname.MaxDomainLen},
		{&e.HostName, "host name", MaxHostName},
		{&e.MachineID, "machine id", MaxMachineID},
		{&e.BootID, "boot id", MaxMachineID},
		{&e.ProcessName, "process name", MaxProcessName},
		{&e.Topic, "topic", MaxTopic},
		{&e.Type, "type", MaxType},
		{&e.Encoding, "encoding", MaxEncoding},
	} {
		if *f.p, err = r.str(f.what, f.max); err != nil {
			return e, false, err
		}
	}
	if nmem > MaxMemFiles {
		return e, false, fmt.Errorf("%w: %d memory files, limit %d", ErrTooLarge, nmem, MaxMemFiles)
	}
	if nmem > (len(b)-r.off)/2 {
		return e, false, fmt.Errorf("%w: %d memory files cannot fit", ErrTruncated, nmem)
	}
	if nmem > 0 {
		e.MemFiles = make([]string, nmem)
		for i := range e.MemFiles {
			if e.MemFiles[i], err = r.str("memory file", shmname.MaxLen); err != nil {
				return e, false, err
			}
		}
	}
	// Fields appended by later revisions; an older sender has none.
	if r.off < len(b) {
		if e.Origin, err = r.str("origin", MaxOrigin); err != nil {
			return e, false, err
		}
	}
	if err := validate(&e); err != nil {
		return e, false, err
	}
	return e, true, nil
}

// Encode appends one datagram holding es to dst. Every entity is validated
// first (the fields Local and LastSeen are not sent). The datagram must fit
// in MaxDatagram bytes; the Agent splits larger sets itself.
func Encode(dst []byte, es []Entity) ([]byte, error) {
	return encode(dst, 0, es)
}

func encode(dst []byte, sender uint64, es []Entity) ([]byte, error) {
	if len(es) > 0xffff {
		return dst, fmt.Errorf("%w: %d samples in one datagram", ErrTooLarge, len(es))
	}
	size := HeaderSize
	for i := range es {
		if err := validate(&es[i]); err != nil {
			return dst, fmt.Errorf("entity %d: %w", i, err)
		}
		size += sampleSize(&es[i])
	}
	if size > MaxDatagram {
		return dst, fmt.Errorf("%w: datagram of %d bytes, limit %d", ErrTooLarge, size, MaxDatagram)
	}
	dst = le.AppendUint32(dst, Magic)
	dst = append(dst, Version, HeaderSize)
	dst = le.AppendUint16(dst, uint16(len(es)))
	dst = le.AppendUint64(dst, sender)
	for i := range es {
		dst = appendSample(dst, &es[i])
	}
	return dst, nil
}

// sampleSize is the encoded size of e including its length prefix.
func sampleSize(e *Entity) int {
	n := 2 + minSample + len(e.Domain) + len(e.HostName) + len(e.MachineID) + len(e.BootID) +
		len(e.ProcessName) + len(e.Topic) + len(e.Type) + len(e.Encoding)
	for _, m := range e.MemFiles {
		n += 2 + len(m)
	}
	return n + 2 + len(e.Origin)
}

// appendSample appends a validated entity (sampleSize bytes).
func appendSample(dst []byte, e *Entity) []byte {
	dst = le.AppendUint16(dst, uint16(sampleSize(e)-2))
	dst = le.AppendUint64(dst, e.Instance)
	dst = le.AppendUint64(dst, e.ID)
	dst = le.AppendUint64(dst, e.Seq)
	dst = le.AppendUint64(dst, e.StartTime)
	dst = le.AppendUint64(dst, e.PIDNamespace)
	dst = le.AppendUint64(dst, e.Sent)
	dst = le.AppendUint64(dst, e.Dropped)
	dst = le.AppendUint64(dst, e.AckTimeouts)
	dst = le.AppendUint32(dst, uint32(e.PID))
	dst = le.AppendUint32(dst, e.UID)
	dst = le.AppendUint32(dst, e.Flags)
	dst = le.AppendUint32(dst, e.BufferCount)
	dst = append(dst, byte(e.Kind), 0)
	dst = le.AppendUint16(dst, uint16(len(e.MemFiles)))
	for _, s := range [numStrings]string{e.Domain, e.HostName, e.MachineID, e.BootID, e.ProcessName, e.Topic, e.Type, e.Encoding} {
		dst = appendStr(dst, s)
	}
	for _, m := range e.MemFiles {
		dst = appendStr(dst, m)
	}
	return appendStr(dst, e.Origin)
}

func appendStr(dst []byte, s string) []byte {
	dst = le.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}
