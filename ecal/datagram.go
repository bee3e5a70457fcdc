package ecal

import (
	"bytes"
	"encoding/binary"
	"time"
)

// eCAL 5.x registration datagrams (io/udp/fragmentation): a 24-byte header,
// then (in the first or only part) u16 name length including its NUL, the
// name and NUL, and the serialized eCAL.pb.Sample. All little-endian.
//
//	0  "ECAL"
//	4  i32 version = 5
//	8  i32 type: 1 header of a fragmented message, 2 one part, 3 whole message
//	12 i32 id: -1 for type 3; random, shared by the parts of one message
//	16 i32 num: type 1 number of parts; type 2 index of this part; type 3: 1
//	20 i32 len: type 1 total size; types 2/3 size of this datagram's payload
const (
	headSize       = 24
	msgBufferSize  = 64*1024 - 20 - 8 - 1 // MSG_BUFFER_SIZE
	msgPayloadSize = msgBufferSize - headSize
	headVersion    = 5

	typeHeader  = 1
	typeContent = 2
	typeWhole   = 3

	// maxMessage bounds a reassembled message; maxPending the messages being
	// reassembled at once; pendingTimeout how long a part may be missing.
	maxMessage     = 16 << 20
	maxPending     = 64
	pendingTimeout = time.Second
)

var magic = []byte("ECAL")

type head struct {
	typ, id, num, len int32
}

func parseHead(b []byte) (head, bool) {
	if len(b) < headSize || !bytes.Equal(b[:4], magic) || int32(binary.LittleEndian.Uint32(b[4:])) != headVersion {
		return head{}, false
	}
	return head{
		typ: int32(binary.LittleEndian.Uint32(b[8:])),
		id:  int32(binary.LittleEndian.Uint32(b[12:])),
		num: int32(binary.LittleEndian.Uint32(b[16:])),
		len: int32(binary.LittleEndian.Uint32(b[20:])),
	}, true
}

func putHead(b []byte, h head) {
	copy(b, magic)
	binary.LittleEndian.PutUint32(b[4:], headVersion)
	binary.LittleEndian.PutUint32(b[8:], uint32(h.typ))
	binary.LittleEndian.PutUint32(b[12:], uint32(h.id))
	binary.LittleEndian.PutUint32(b[16:], uint32(h.num))
	binary.LittleEndian.PutUint32(b[20:], uint32(h.len))
}

// Frame returns the datagrams that carry one sample named name (the topic
// name for topic samples, the host name for process samples), as eCAL's
// CreateSampleBuffer and SendFragmentedMessage build them. id is used only
// when the message needs several datagrams.
func Frame(name string, pb []byte, id int32) [][]byte {
	body := make([]byte, 0, 2+len(name)+1+len(pb))
	body = binary.LittleEndian.AppendUint16(body, uint16(len(name)+1))
	body = append(body, name...)
	body = append(body, 0)
	body = append(body, pb...)
	if len(body) <= msgPayloadSize {
		d := make([]byte, headSize+len(body))
		putHead(d, head{typ: typeWhole, id: -1, num: 1, len: int32(len(body))})
		copy(d[headSize:], body)
		return [][]byte{d}
	}
	parts := (len(body) + msgPayloadSize - 1) / msgPayloadSize
	out := make([][]byte, 0, parts+1)
	h := make([]byte, headSize)
	putHead(h, head{typ: typeHeader, id: id, num: int32(parts), len: int32(len(body))})
	out = append(out, h)
	for i := 0; i < parts; i++ {
		chunk := body[i*msgPayloadSize : min((i+1)*msgPayloadSize, len(body))]
		d := make([]byte, headSize+len(chunk))
		putHead(d, head{typ: typeContent, id: id, num: int32(i), len: int32(len(chunk))})
		copy(d[headSize:], chunk)
		out = append(out, d)
	}
	return out
}

// splitBody separates a complete message body into the sample name and the
// serialized sample.
func splitBody(b []byte) (name string, pb []byte, ok bool) {
	if len(b) < 2 {
		return "", nil, false
	}
	n := int(binary.LittleEndian.Uint16(b))
	if n < 1 || 2+n > len(b) {
		return "", nil, false
	}
	raw := b[2 : 2+n]
	if i := bytes.IndexByte(raw, 0); i >= 0 {
		raw = raw[:i]
	}
	return string(raw), b[2+n:], true
}

// Defragmenter turns received datagrams into complete sample bodies. It is
// not safe for concurrent use (one receiving goroutine owns it).
type Defragmenter struct {
	pending map[int32]*partial
	// Dropped counts datagrams that were malformed, out of order or expired.
	Dropped uint64
}

type partial struct {
	total, next int32
	size        int
	buf         []byte
	started     time.Time
}

// Add takes one datagram and returns the sample name and serialized sample
// when a message is complete.
func (d *Defragmenter) Add(dg []byte, now time.Time) (name string, pb []byte, ok bool) {
	d.expire(now)
	h, valid := parseHead(dg)
	if !valid {
		d.Dropped++
		return "", nil, false
	}
	payload := dg[headSize:]
	switch h.typ {
	case typeWhole:
		if h.len < 0 || int(h.len) > len(payload) {
			d.Dropped++
			return "", nil, false
		}
		name, pb, ok = splitBody(payload[:h.len])
		if !ok {
			d.Dropped++
		}
		return name, pb, ok
	case typeHeader:
		if h.num <= 0 || h.len <= 0 || h.len > maxMessage || int64(h.num)*msgPayloadSize < int64(h.len) {
			d.Dropped++
			return "", nil, false
		}
		if d.pending == nil {
			d.pending = map[int32]*partial{}
		}
		if len(d.pending) >= maxPending {
			d.Dropped++
			return "", nil, false
		}
		d.pending[h.id] = &partial{total: h.num, size: int(h.len), started: now}
	case typeContent:
		p := d.pending[h.id]
		if p == nil {
			d.Dropped++
			return "", nil, false
		}
		if h.num != p.next || h.len <= 0 || int(h.len) > len(payload) || len(p.buf)+int(h.len) > p.size {
			delete(d.pending, h.id)
			d.Dropped++
			return "", nil, false
		}
		p.buf = append(p.buf, payload[:h.len]...)
		p.next++
		if p.next == p.total {
			delete(d.pending, h.id)
			name, pb, ok = splitBody(p.buf)
			if !ok {
				d.Dropped++
			}
			return name, pb, ok
		}
	default:
		d.Dropped++
	}
	return "", nil, false
}

func (d *Defragmenter) expire(now time.Time) {
	for id, p := range d.pending {
		if now.Sub(p.started) > pendingTimeout {
			delete(d.pending, id)
			d.Dropped++
		}
	}
}
