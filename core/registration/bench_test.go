package registration

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
	"golang.org/x/sys/unix"
)

func BenchmarkEncode(b *testing.B) {
	es := []Entity{testEntity("default")}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = Encode(buf[:0], es); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecode(b *testing.B) {
	buf, err := Encode(nil, []Entity{testEntity("default")})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIdleAgent100 measures the CPU time (getrusage, whole process) of
// one idle agent with 100 registered entities and the default refresh of
// 1 s, over SHMFS_IDLE_DURATION (default 30s). It reports %cpu of one core;
// nothing is asserted. Run: go test -run '^$' -bench IdleAgent100 -benchtime 1x
func BenchmarkIdleAgent100(b *testing.B) {
	dur := 30 * time.Second
	if s := os.Getenv("SHMFS_IDLE_DURATION"); s != "" {
		var err error
		if dur, err = time.ParseDuration(s); err != nil {
			b.Fatal(err)
		}
	}
	d, port := testutil.Domain(b), testutil.Port(b)
	a, err := NewAgent(Config{Domain: d, Port: port})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	for i := range 100 {
		e := Entity{Kind: KindPublisher, ID: uint64(i + 1), Topic: fmt.Sprintf("topic.%03d", i), Type: "proto:sensor.Image", Encoding: "proto"}
		if err := a.Register(e); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		var r0, r1 unix.Rusage
		_ = unix.Getrusage(unix.RUSAGE_SELF, &r0)
		s0, t0 := a.Stats(), time.Now()
		time.Sleep(dur)
		_ = unix.Getrusage(unix.RUSAGE_SELF, &r1)
		wall, s1 := time.Since(t0), a.Stats()
		cpu := time.Duration(r1.Utime.Nano() - r0.Utime.Nano() + r1.Stime.Nano() - r0.Stime.Nano())
		b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "%cpu")
		b.ReportMetric(float64(cpu.Microseconds())/wall.Seconds(), "cpu-µs/s")
		b.ReportMetric(float64(s1.DatagramsSent-s0.DatagramsSent)/wall.Seconds(), "datagrams/s")
	}
}

// BenchmarkSocketOwners measures one read of /proc/net/udp and udp6 (what
// attributes a batch of datagrams from this host to a uid) with the
// sockets of this host as they are; sockets/op says how many.
func BenchmarkSocketOwners(b *testing.B) {
	var n int
	for b.Loop() {
		n = len(readSocketOwners().uid)
	}
	b.ReportMetric(float64(n), "ports")
}

// BenchmarkPeerSample measures the receive path of one peer's sample from
// this host, as a batch of one: attribution (the socket table read),
// decode, and the registry update (a refresh of a known entity).
func BenchmarkPeerSample(b *testing.B) {
	d, port := testutil.Domain(b), testutil.Port(b)
	a, err := NewAgent(Config{Domain: d, Port: port, Refresh: time.Hour, Timeout: 2 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	e := testEntity(d)
	peer, err := openSend(Config{Mode: ModeLocal}, 0) // the peer's send socket: its port is attributed
	if err != nil {
		b.Fatal(err)
	}
	defer peer.Close()
	from := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(peer.LocalAddr().(*net.UDPAddr).Port))
	b.ReportAllocs()
	for b.Loop() {
		e.Seq++
		buf := rawDatagram(e)
		a.handleBatch(buf, []received{{start: 0, end: len(buf), from: from}})
	}
	if s := a.Stats(); s.SamplesReceived == 0 || s.DroppedUnverified != 0 {
		b.Fatalf("the peer's samples were not taken: %+v", s)
	}
}
