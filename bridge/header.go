package bridge

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
)

// NATS message headers of a bridged message (docs/bridge.md, "Messages").
const (
	hBridge    = "Shmfs-Bridge"    // 16 hex digits: the exporting bridge's random id
	hOrigin    = "Shmfs-Origin"    // the exporting bridge's Name (its host)
	hPublisher = "Shmfs-Publisher" // 16 hex digits: the shmfs publisher's entity id
	hType      = "Shmfs-Type"      // the publisher's type
	hID        = "Shmfs-Id"        // the message id (Header.ID), decimal
	hClock     = "Shmfs-Clock"     // the publisher's clock, decimal, >= 1
	hTime      = "Shmfs-Time"      // commit time at the publisher, unix ns
	hSent      = "Shmfs-Sent"      // when the bridge sent it, unix ns
	hLost      = "Shmfs-Lost"      // lost upstream right before it (not in the clock), when > 0
	hPart      = "Shmfs-Part"      // "k/n" for part k (from 0) of n of a split message
	hSize      = "Shmfs-Size"      // total size of a split message
)

// meta is what the headers of one bridged message say.
type meta struct {
	bridge    uint64
	origin    string
	publisher uint64
	typ       string
	id        int64
	clock     uint64
	time      int64
	sent      int64
	lost      uint64
	part, of  int // of == 0: not split
	size      int // of a split message
}

// header builds the headers of m (part fields when m.of > 0).
func (m *meta) header() nats.Header {
	h := nats.Header{
		hBridge:    {hex16(m.bridge)},
		hOrigin:    {m.origin},
		hPublisher: {hex16(m.publisher)},
		hType:      {m.typ},
		hID:        {strconv.FormatInt(m.id, 10)},
		hClock:     {strconv.FormatUint(m.clock, 10)},
		hTime:      {strconv.FormatInt(m.time, 10)},
		hSent:      {strconv.FormatInt(m.sent, 10)},
	}
	if m.lost > 0 {
		h[hLost] = []string{strconv.FormatUint(m.lost, 10)}
	}
	if m.of > 0 {
		h[hPart] = []string{strconv.Itoa(m.part) + "/" + strconv.Itoa(m.of)}
		h[hSize] = []string{strconv.Itoa(m.size)}
	}
	return h
}

func hex16(v uint64) string {
	s := strconv.FormatUint(v, 16)
	for len(s) < 16 {
		s = "0" + s
	}
	return s
}

// maxParts bounds the parts of one split message (64 MiB in 1 KiB parts).
const maxParts = MaxMessage / 1024

// parseMeta validates the headers of a received message: they come from
// the network and are checked before use.
func parseMeta(h nats.Header, dataLen int) (meta, error) {
	var m meta
	var err error
	get := func(k string) (string, error) {
		v := h[k]
		if len(v) != 1 {
			return "", fmt.Errorf("%w: header %s: %d values", ErrInvalidMessage, k, len(v))
		}
		return v[0], nil
	}
	u64 := func(k string, base int) (uint64, error) {
		s, err := get(k)
		if err != nil {
			return 0, err
		}
		v, err := strconv.ParseUint(s, base, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: header %s: %q", ErrInvalidMessage, k, s)
		}
		return v, nil
	}
	i64 := func(k string) (int64, error) {
		s, err := get(k)
		if err != nil {
			return 0, err
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: header %s: %q", ErrInvalidMessage, k, s)
		}
		return v, nil
	}
	if m.bridge, err = u64(hBridge, 16); err != nil {
		return m, err
	}
	if m.publisher, err = u64(hPublisher, 16); err != nil {
		return m, err
	}
	if m.publisher == 0 || m.bridge == 0 {
		return m, fmt.Errorf("%w: zero bridge or publisher id", ErrInvalidMessage)
	}
	if m.origin, err = get(hOrigin); err != nil {
		return m, err
	}
	if m.typ, err = get(hType); err != nil {
		return m, err
	}
	if m.origin == "" || len(m.origin) > 200 || !utf8.ValidString(m.origin) || len(m.typ) > 1024 || !utf8.ValidString(m.typ) {
		return m, fmt.Errorf("%w: origin or type malformed", ErrInvalidMessage)
	}
	if m.typ == "" {
		m.typ = "raw"
	}
	if m.id, err = i64(hID); err != nil {
		return m, err
	}
	if m.clock, err = u64(hClock, 10); err != nil {
		return m, err
	}
	if m.clock == 0 {
		return m, fmt.Errorf("%w: clock 0", ErrInvalidMessage)
	}
	if m.time, err = i64(hTime); err != nil {
		return m, err
	}
	if m.sent, err = i64(hSent); err != nil {
		return m, err
	}
	if _, ok := h[hLost]; ok {
		if m.lost, err = u64(hLost, 10); err != nil {
			return m, err
		}
	}
	if _, ok := h[hPart]; !ok {
		if dataLen > MaxMessage {
			return m, fmt.Errorf("%w: %d bytes", ErrTooLarge, dataLen)
		}
		return m, nil
	}
	p, err := get(hPart)
	if err != nil {
		return m, err
	}
	if _, err := fmt.Sscanf(p, "%d/%d", &m.part, &m.of); err != nil || m.of < 2 || m.of > maxParts || m.part < 0 || m.part >= m.of ||
		p != strconv.Itoa(m.part)+"/"+strconv.Itoa(m.of) {
		return m, fmt.Errorf("%w: header %s: %q", ErrInvalidMessage, hPart, p)
	}
	size, err := u64(hSize, 10)
	if err != nil {
		return m, err
	}
	if size > MaxMessage || size < uint64(m.of) || dataLen > int(size) {
		return m, fmt.Errorf("%w: split message of %d bytes in %d parts (maximum %d bytes)", ErrInvalidMessage, size, m.of, MaxMessage)
	}
	m.size = int(size)
	return m, nil
}
