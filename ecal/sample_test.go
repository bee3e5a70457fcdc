package ecal

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testdata/datagrams hold registration datagrams captured from eCAL 5.13.4
// (minimal_snd and minimal_rec, host "vm").

func decodeDatagram(t testing.TB, file string) (string, *Sample) {
	t.Helper()
	b, err := os.ReadFile("testdata/datagrams/" + file)
	if err != nil {
		t.Fatal(err)
	}
	var d Defragmenter
	name, pb, ok := d.Add(b, time.Now())
	if !ok {
		t.Fatalf("%s: not a complete datagram", file)
	}
	s, err := DecodeSample(pb)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return name, s
}

func TestDecodesECALPublisherRegistration(t *testing.T) {
	name, s := decodeDatagram(t, "pub_hello_connected.bin")
	tp := s.Topic
	if name != "Hello" || s.Cmd != CmdRegPub || tp == nil {
		t.Fatalf("name %q sample %+v", name, s)
	}
	if tp.Name != "Hello" || tp.PID != 19234 || tp.HostName != "vm" || tp.HostGroup != "vm" || tp.ID != "751572525090" ||
		tp.ProcessName != "/work/ecal-peer/ecal/bin/ecal_sample_minimal_snd-5.13.4" || tp.ConnLocal != 1 || tp.Size != 17 {
		t.Fatalf("topic %+v", tp)
	}
	if got := tp.SHMFiles(); !reflect.DeepEqual(got, []string{"ecal_8b0358fe"}) {
		t.Fatalf("memory files %v", got)
	}
	if dt := tp.Type(); dt.Name != "std::string" || dt.Encoding != "base" || ShmfsType(dt) != "base:std::string" {
		t.Fatalf("type %+v", dt)
	}
	if len(tp.Layers) != 4 || tp.Layers[1].Type != LayerSHM || !tp.Layers[1].Confirmed || tp.Layers[1].ParShm != "ecal_8b0358fe" {
		t.Fatalf("layers %+v", tp.Layers)
	}
}

func TestDecodesECALSubscriberAndProcessRegistration(t *testing.T) {
	_, s := decodeDatagram(t, "sub_hello_minimal_rec.bin")
	if s.Cmd != CmdRegSub || s.Topic.Name != "Hello" || s.Topic.PID != 19235 || s.Topic.HistDepth != 8 || len(s.Topic.SHMFiles()) != 0 {
		t.Fatalf("subscriber %+v", s.Topic)
	}
	name, p := decodeDatagram(t, "process_minimal_snd.bin")
	if name != "vm" || p.Cmd != CmdRegProcess || p.Process == nil || p.Process.PID != 19234 ||
		p.Process.Unit != "minimal_snd" || p.Process.RuntimeVersion != "v5.13.4" || p.Process.HostGroup != "vm" {
		t.Fatalf("process %+v", p.Process)
	}
}

// What the gateway encodes decodes to the same values, also when a
// descriptor makes the sample span several datagrams.
func TestGatewaySampleRoundTrips(t *testing.T) {
	desc := bytes.Repeat([]byte("descriptor"), 20000) // 200 KB: 4 datagrams
	in := &Sample{Cmd: CmdRegPub, Topic: &Topic{
		HostName: "h", HostGroup: "g", PID: 42, ProcessName: "/usr/bin/shmfs", Unit: "shmfs-ecal",
		ID: "123", Name: "/camera/front", TType: "proto:pb.Image", TDesc: desc,
		DataType: DataType{Name: "pb.Image", Encoding: "proto", Desc: desc}, hasDataType: true,
		Reliable: true, Layers: []Layer{{Type: LayerSHM, Version: 1, Confirmed: true, ParShm: "ecal_x",
			MemFiles: []string{"ecal_x", "ecal_y"}, HasPar: true}},
		Size: 99, ConnLocal: 2, DataClock: 1 << 40, DataFreq: 1000, Attr: map[string]string{gatewayAttr: "d"},
	}}
	pb := in.Encode(nil)
	dgs := Frame(in.Topic.Name, pb, 77)
	if len(dgs) < 4 {
		t.Fatalf("%d datagrams for %d bytes", len(dgs), len(pb))
	}
	var d Defragmenter
	var name string
	var got []byte
	for i, dg := range dgs {
		if len(dg) > msgBufferSize {
			t.Fatalf("datagram %d has %d bytes (eCAL's limit %d)", i, len(dg), msgBufferSize)
		}
		n, b, ok := d.Add(dg, time.Now())
		if ok != (i == len(dgs)-1) {
			t.Fatalf("datagram %d: complete=%v", i, ok)
		}
		name, got = n, b
	}
	out, err := DecodeSample(got)
	if err != nil {
		t.Fatal(err)
	}
	if name != "/camera/front" || !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n in %+v\nout %+v", in.Topic, out.Topic)
	}
}

func TestDefragmenterDropsBrokenSequences(t *testing.T) {
	pb := (&Sample{Cmd: CmdRegSub, Topic: &Topic{Name: "t", TDesc: bytes.Repeat([]byte{1}, 150000)}}).Encode(nil)
	dgs := Frame("t", pb, 5)
	var d Defragmenter
	d.Add(dgs[0], time.Now())
	d.Add(dgs[2], time.Now()) // part 1 skipped
	if _, _, ok := d.Add(dgs[3], time.Now()); ok {
		t.Fatal("completed a message with a missing part")
	}
	if d.Dropped == 0 {
		t.Fatal("out-of-order part not counted")
	}
	// A message that never completes expires.
	d.Add(dgs[0], time.Now())
	d.Add(dgs[1], time.Now())
	d.Add([]byte("ECAL"), time.Now().Add(2*pendingTimeout))
	if len(d.pending) != 0 {
		t.Fatalf("%d messages pending after the timeout", len(d.pending))
	}
}

func TestDecodeRejectsHostileSamples(t *testing.T) {
	long := strings.Repeat("x", maxString+1)
	for name, pb := range map[string][]byte{
		"truncated tag":    {0x2a},
		"length past end":  {0x2a, 0x05, 0x3a, 0x01},
		"oversized string": (&Sample{Cmd: CmdRegPub, Topic: &Topic{Name: long}}).Encode(nil),
		"not UTF-8":        (&Sample{Cmd: CmdRegPub, Topic: &Topic{Name: "\xff\xfe"}}).Encode(nil),
	} {
		if _, err := DecodeSample(pb); !errors.Is(err, ErrInvalidSample) {
			t.Errorf("%s: %v, want ErrInvalidSample", name, err)
		}
	}
}

// FuzzDecodeSample: no input panics; whatever decodes re-encodes to bytes
// that decode to the same sample.
func FuzzDecodeSample(f *testing.F) {
	for _, file := range []string{"pub_hello_connected.bin", "pub_hello_minimal_snd.bin", "sub_hello_minimal_rec.bin", "process_minimal_snd.bin"} {
		b, err := os.ReadFile("testdata/datagrams/" + file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, dg []byte) {
		var d Defragmenter
		_, pb, ok := d.Add(dg, time.Now())
		if !ok {
			pb = dg
		}
		s, err := DecodeSample(pb)
		if err != nil {
			if !errors.Is(err, ErrInvalidSample) {
				t.Fatalf("error %v does not wrap ErrInvalidSample", err)
			}
			return
		}
		again, err := DecodeSample(s.Encode(nil))
		if err != nil {
			t.Fatalf("re-encoded sample does not decode: %v", err)
		}
		if !reflect.DeepEqual(normalise(s), normalise(again)) {
			t.Fatalf("round trip changed the sample:\n%+v\n%+v", s, again)
		}
	})
}

// normalise maps empty and nil slices and maps alike (proto3 drops empties).
func normalise(s *Sample) *Sample {
	c := *s
	if c.Topic != nil {
		tp := *c.Topic
		if len(tp.TDesc) == 0 {
			tp.TDesc = nil
		}
		if len(tp.DataType.Desc) == 0 {
			tp.DataType.Desc = nil
		}
		if len(tp.Attr) == 0 {
			tp.Attr = nil
		}
		var ls []Layer
		for _, l := range tp.Layers {
			if len(l.MemFiles) == 0 {
				l.MemFiles = nil
			}
			ls = append(ls, l)
		}
		tp.Layers = ls
		c.Topic = &tp
	}
	return &c
}

func TestTopicNamesEscapeReversibly(t *testing.T) {
	for ecal, shm := range map[string]string{
		"Hello": "Hello", "/camera/front": "%2Fcamera%2Ffront", "50%": "50%25",
		".": "%2E", "..": "%2E%2E", "a\tb": "a%09b", "ümlaut": "ümlaut",
	} {
		got, err := ShmfsTopic(ecal)
		if err != nil || got != shm {
			t.Errorf("ShmfsTopic(%q) = %q, %v; want %q", ecal, got, err, shm)
		}
		if back := ECALTopic(got); back != ecal {
			t.Errorf("ECALTopic(%q) = %q, want %q", got, back, ecal)
		}
	}
	if _, err := ShmfsTopic(""); err == nil {
		t.Error("empty eCAL topic got a shmfs name")
	}
	if got := ECALTopic("100%sure"); got != "100%sure" {
		t.Errorf("a %% without hex digits changed: %q", got)
	}
}

func TestTypesMapBothWays(t *testing.T) {
	for _, c := range []struct {
		dt  DataType
		typ string
	}{
		{DataType{Encoding: "proto", Name: "pb.People.Person"}, "proto:pb.People.Person"},
		{DataType{Encoding: "base", Name: "std::string"}, "base:std::string"},
		{DataType{Name: "long long"}, "long long"},
		{DataType{}, "raw"},
	} {
		if got := ShmfsType(c.dt); got != c.typ {
			t.Errorf("ShmfsType(%+v) = %q, want %q", c.dt, got, c.typ)
		}
		if got := ECALType(c.typ); !reflect.DeepEqual(got, c.dt) {
			t.Errorf("ECALType(%q) = %+v, want %+v", c.typ, got, c.dt)
		}
	}
}

func TestPatternsMatchSlashes(t *testing.T) {
	p := Patterns{"camera*", "/robot/*"}
	for name, want := range map[string]bool{"camera": true, "camera/front": true, "/robot/arm/joint": true, "cmd": false} {
		if p.Match(name) != want {
			t.Errorf("Match(%q) = %v", name, !want)
		}
	}
	if _, err := (Config{Import: Patterns{"[a"}}).withDefaults(); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bad pattern: %v", err)
	}
}
