package registration

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/shmfs/shmfs/internal/shmname"
)

// testEntity returns a typical valid publisher of domain d.
func testEntity(d string) Entity {
	return Entity{
		Domain: d, HostName: "robot-7", MachineID: "0123456789abcdef0123456789abcdef",
		BootID: "3f1e4f5a-4c39-4b83-9c1b-6f0e8f4f8d11", Instance: 0x1111222233334444,
		PID: 4242, StartTime: 123456, PIDNamespace: 4026531836, ProcessName: "camera_node", UID: 1000,
		Kind: KindPublisher, ID: 0x5555666677778888, Topic: "camera.front", Type: "proto:sensor.Image",
		Encoding: "proto", MemFiles: []string{shmname.Object(d, 0xabcdef, "m0")}, BufferCount: 1,
		Sent: 1000, Dropped: 2, AckTimeouts: 1, Seq: 77, Flags: 0, Origin: "nats:base-station",
	}
}

// TestOriginAbsentInOlderSamples: a sample of a sender that predates the
// origin field (no bytes after the memory files) decodes with no origin.
func TestOriginAbsentInOlderSamples(t *testing.T) {
	e := testEntity("d1")
	b := rawDatagram(e)
	b = b[:len(b)-2-len(e.Origin)]
	le.PutUint16(b[HeaderSize:], le.Uint16(b[HeaderSize:])-uint16(2+len(e.Origin)))
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Origin != "" || got[0].Topic != e.Topic || len(got[0].MemFiles) != 1 {
		t.Fatalf("decoded %+v", got)
	}
}

// rawDatagram encodes entities without validating them (for hostile input).
func rawDatagram(es ...Entity) []byte {
	b := le.AppendUint32(nil, Magic)
	b = append(b, Version, HeaderSize)
	b = le.AppendUint16(b, uint16(len(es)))
	b = le.AppendUint64(b, 0)
	for i := range es {
		b = appendSample(b, &es[i])
	}
	return b
}

type hostileCase struct {
	name string
	b    []byte
	want error
}

// hostileCases returns datagrams that must be dropped whole, with the reason.
func hostileCases(d string) []hostileCase {
	valid := func() []byte { return rawDatagram(testEntity(d)) }
	mod := func(f func(b []byte) []byte) []byte { return f(valid()) }
	with := func(f func(e *Entity)) []byte {
		e := testEntity(d)
		f(&e)
		return rawDatagram(e)
	}
	noMem := func() Entity { e := testEntity(d); e.MemFiles = nil; return e }
	const sampleStart = HeaderSize + 2
	return []hostileCase{
		{"empty", nil, ErrTruncated},
		{"short header", valid()[:10], ErrTruncated},
		{"bad magic", mod(func(b []byte) []byte { b[0] ^= 0xff; return b }), ErrVersion},
		{"wrong version", mod(func(b []byte) []byte { b[4] = 2; return b }), ErrVersion},
		{"header size below 16", mod(func(b []byte) []byte { b[5] = 8; return b }), ErrVersion},
		{"header size past end", func() []byte { b := rawDatagram(); b[5] = 200; return b }(), ErrTruncated},
		{"oversized", append(valid(), make([]byte, MaxDatagram)...), ErrTooLarge},
		{"count too large", mod(func(b []byte) []byte { b[6], b[7] = 0xff, 0xff; return b }), ErrTruncated},
		{"count one more than present", mod(func(b []byte) []byte { b[6] = 2; return b }), ErrTruncated},
		{"sample length past end", mod(func(b []byte) []byte { b[16], b[17] = 0xff, 0x7f; return b }), ErrTruncated},
		{"truncated mid-sample", valid()[:len(valid())-5], ErrTruncated},
		{"sample shorter than fixed part", func() []byte {
			b := rawDatagram()
			b[6] = 1
			b = le.AppendUint16(b, 10)
			return append(b, make([]byte, 10)...)
		}(), ErrTruncated},
		{"string length past end", func() []byte {
			e := noMem()
			b := rawDatagram(e)
			// The encoding is followed by the origin.
			le.PutUint16(b[len(b)-2-len(e.Origin)-len(e.Encoding)-2:], uint16(len(e.Encoding)+50))
			return b
		}(), ErrTruncated},
		{"memory file count lies", func() []byte {
			b := rawDatagram(noMem())
			le.PutUint16(b[sampleStart+82:], 5)
			return b
		}(), ErrTruncated},
		{"memory file count too large", mod(func(b []byte) []byte { le.PutUint16(b[sampleStart+82:], 1000); return b }), ErrTooLarge},
		{"domain length too large", mod(func(b []byte) []byte { le.PutUint16(b[sampleStart+84:], 0x7000); return b }), ErrTooLarge},
		{"topic with slash", with(func(e *Entity) { e.Topic = "a/b" }), ErrBadName},
		{"topic ..", with(func(e *Entity) { e.Topic = ".." }), ErrBadName},
		{"topic .", with(func(e *Entity) { e.Topic = "." }), ErrBadName},
		{"topic with NUL", with(func(e *Entity) { e.Topic = "a\x00b" }), ErrBadName},
		{"topic empty", with(func(e *Entity) { e.Topic = "" }), ErrBadName},
		{"topic invalid UTF-8", with(func(e *Entity) { e.Topic = "bad\xff" }), ErrBadName},
		{"topic 10 KB", with(func(e *Entity) { e.Topic = strings.Repeat("t", 10<<10) }), ErrTooLarge},
		{"host name 10 KB", with(func(e *Entity) { e.HostName = strings.Repeat("h", 10<<10) }), ErrTooLarge},
		{"type 10 KB", with(func(e *Entity) { e.Type = strings.Repeat("y", 10<<10) }), ErrTooLarge},
		{"process name with newline", with(func(e *Entity) { e.ProcessName = "evil\nname" }), ErrBadName},
		{"origin with newline", with(func(e *Entity) { e.Origin = "nats\nhost" }), ErrBadName},
		{"origin 10 KB", with(func(e *Entity) { e.Origin = strings.Repeat("o", 10<<10) }), ErrTooLarge},
		{"origin length past end", func() []byte {
			e := noMem()
			b := rawDatagram(e)
			le.PutUint16(b[len(b)-2-len(e.Origin):], uint16(len(e.Origin)+10))
			return b
		}(), ErrTruncated},
		{"domain with slash", with(func(e *Entity) { e.Domain = "a/b" }), ErrBadName},
		{"domain ..", with(func(e *Entity) { e.Domain = ".." }), ErrBadName},
		{"memory file ../", with(func(e *Entity) { e.MemFiles = []string{"../../etc/passwd"} }), ErrBadName},
		{"memory file with slash", with(func(e *Entity) { e.MemFiles = []string{"shmfs_" + d + "_0000000000000001/x"} }), ErrBadName},
		{"memory file with NUL", with(func(e *Entity) { e.MemFiles = []string{shmname.Object(d, 1) + "\x00"} }), ErrBadName},
		{"memory file of other domain", with(func(e *Entity) { e.MemFiles = []string{shmname.Object("other", 1)} }), ErrBadName},
		{"memory file not shmfs", with(func(e *Entity) { e.MemFiles = []string{"ecal_foo"} }), ErrBadName},
		{"memory file 10 KB", with(func(e *Entity) { e.MemFiles = []string{strings.Repeat("m", 10<<10)} }), ErrTooLarge},
		{"kind zero", with(func(e *Entity) { e.Kind = 0 }), ErrBadValue},
		{"zero entity id", with(func(e *Entity) { e.ID = 0 }), ErrBadValue},
		{"zero instance", with(func(e *Entity) { e.Instance = 0 }), ErrBadValue},
		{"negative pid", with(func(e *Entity) { e.PID = -5 }), ErrBadValue},
		{"buffer count huge", with(func(e *Entity) { e.BufferCount = 1 << 30 }), ErrBadValue},
		{"bad second sample", func() []byte {
			bad := testEntity(d)
			bad.ID, bad.Topic = 9, "x/y"
			return rawDatagram(testEntity(d), bad)
		}(), ErrBadName},
	}
}

func TestDecodeHostile(t *testing.T) {
	for _, c := range hostileCases("dom") {
		t.Run(c.name, func(t *testing.T) {
			es, err := Decode(c.b)
			if !errors.Is(err, c.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode = %d entities, %v; want %v", len(es), err, c.want)
			}
			t.Logf("%v", err)
		})
	}
}

func TestRoundTrip(t *testing.T) {
	a, b := testEntity("dom"), testEntity("dom")
	b.Kind, b.ID, b.MemFiles, b.BufferCount, b.Flags = KindSubscriber, 7, nil, 0, FlagQuery|1<<20
	buf, err := Encode(nil, []Entity{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if want := HeaderSize + sampleSize(&a) + sampleSize(&b); len(buf) != want {
		t.Errorf("encoded %d bytes, sampleSize says %d", len(buf), want)
	}
	got, err := Decode(buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []Entity{a, b}) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, []Entity{a, b})
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	bad := testEntity("dom")
	bad.Topic = "a/b"
	if _, err := Encode(nil, []Entity{bad}); !errors.Is(err, ErrBadName) {
		t.Errorf("Encode(topic a/b) = %v, want ErrBadName", err)
	}
	many := make([]Entity, 600)
	for i := range many {
		many[i] = testEntity("dom")
		many[i].Type = strings.Repeat("t", 200)
	}
	if _, err := Encode(nil, many); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Encode(600 big samples) = %v, want ErrTooLarge", err)
	}
	// The largest valid sample fits in one datagram.
	big := testEntity("dom")
	big.HostName, big.ProcessName, big.Type, big.Encoding = strings.Repeat("h", MaxHostName),
		strings.Repeat("p", MaxProcessName), strings.Repeat("y", MaxType), strings.Repeat("e", MaxEncoding)
	big.Topic = strings.Repeat("t", MaxTopic)
	big.MemFiles = nil
	for i := range MaxMemFiles {
		big.MemFiles = append(big.MemFiles, shmname.Object("dom", uint64(i+1), "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"))
	}
	b, err := Encode(nil, []Entity{big})
	if err != nil {
		t.Fatalf("largest sample: %v", err)
	}
	if _, err := Decode(b); err != nil {
		t.Fatalf("largest sample: %v", err)
	}
	t.Logf("largest sample: %d bytes", len(b))
}

func TestForwardCompatible(t *testing.T) {
	e := testEntity("dom")
	// A newer writer: a longer header, an extra field after the memory files,
	// a sample of an unknown kind, and trailing bytes after the samples.
	sample := appendSample(nil, &e)
	body := append(sample[2:], 0xde, 0xad, 0xbe, 0xef)
	unknown := testEntity("dom")
	unknown.Kind = 9
	b := le.AppendUint32(nil, Magic)
	b = append(b, Version, HeaderSize+8)
	b = le.AppendUint16(b, 2)
	b = le.AppendUint64(b, 42)
	b = append(b, make([]byte, 8)...)
	b = le.AppendUint16(b, uint16(len(body)))
	b = append(b, body...)
	b = appendSample(b, &unknown)
	b = append(b, 1, 2, 3)
	d, err := decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.entities) != 1 || d.skipped != 1 || d.sender != 42 {
		t.Fatalf("got %d entities, %d skipped, sender %d; want 1, 1, 42", len(d.entities), d.skipped, d.sender)
	}
	if !reflect.DeepEqual(d.entities[0], e) {
		t.Fatalf("got %+v want %+v", d.entities[0], e)
	}
}

func TestCheckTopic(t *testing.T) {
	for _, ok := range []string{"a", "camera.front", "Kamera-vorn_1", "ünïcødé", "a b", "...", strings.Repeat("x", 255)} {
		if err := CheckTopic(ok); err != nil {
			t.Errorf("CheckTopic(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "/", "a\x00", "a\nb", "\x7f", "\xff\xfe", strings.Repeat("x", 256)} {
		if err := CheckTopic(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckTopic(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestSanitize(t *testing.T) {
	s := sanitize("bad\xff\nname"+strings.Repeat("é", 200), 255)
	if err := checkText("x", s, 255); err != nil {
		t.Fatalf("sanitize gave %q: %v", s, err)
	}
	if !bytes.HasPrefix([]byte(s), []byte("bad??name")) {
		t.Errorf("sanitize = %q", s)
	}
}
