package core_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/core/event"
	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
)

// Benchmarks between two processes (the parent publishes, a re-executed
// child receives), each beside the reference it is judged by, measured in
// the same run:
//
//	go test -run '^$' -bench . -benchtime 20000x ./core/
//
// Latency: one message in flight (ack mode with a window of 1: Send returns
// when the subscriber took the message), one-way from the start of Send (a
// timestamp in the payload) to the subscriber's hands; p50/p99. Reference:
// the same exchange over a Unix stream socket (BenchmarkReferenceUnixPingPong)
// and a bare futex wake-up there and back (BenchmarkReferenceFutexPingPong).
//
// Throughput: lossless (ack mode, default window) messages per second until
// the subscriber took them all. Reference: a Unix stream socket streaming
// the same messages (BenchmarkReferenceUnixStream).

var benchSizes = []int{64, 1 << 10, 4 << 10, 64 << 10, 1 << 20, 8 << 20}

func init() {
	children["latsub"] = childLatencySub
	children["countsub"] = childCountSub
	children["unixlat"] = childUnixLatency
	children["unixsink"] = childUnixSink
	children["evpong"] = childEventPong
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20:
		return strconv.Itoa(n>>20) + "MiB"
	case n >= 1<<10:
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// stamp writes the wall clock into b[8:16] (processes share it; the
// monotonic clock is per process in Go).
func stamp(b []byte) { binary.LittleEndian.PutUint64(b[8:], uint64(time.Now().UnixNano())) }

func since(b []byte) int64 { return time.Now().UnixNano() - int64(binary.LittleEndian.Uint64(b[8:])) }

// percentiles reports p50 and p99 of ns samples in µs.
func percentiles(lat []int64) (p50, p99 float64) {
	slices.Sort(lat)
	return float64(lat[len(lat)/2]) / 1e3, float64(lat[len(lat)*99/100]) / 1e3
}

// reportChildLatency reads the child's "lat <p50-µs> <p99-µs>" line.
func reportChildLatency(b *testing.B, c *testutil.Child) {
	f := strings.Fields(c.Line(b, time.Minute))
	if len(f) != 3 || f[0] != "lat" {
		b.Fatalf("child said %q", f)
	}
	p50, _ := strconv.ParseFloat(f[1], 64)
	p99, _ := strconv.ParseFloat(f[2], 64)
	b.ReportMetric(p50, "p50-µs")
	b.ReportMetric(p99, "p99-µs")
}

// childLatencySub: args topic count copy|zc|relay. Prints "ready", then after count
// messages "lat <p50-µs> <p99-µs>".
func childLatencySub(args []string) int {
	a := testutil.ChildArgs(args)
	topic, count, zc := a[0], atoi(a[1]), a[2] == "zc"
	ctx, subs, done, err := childSubscribers(topic, 1, &core.SubscriberOptions{ZeroCopy: zc}, 10*time.Minute)
	if err != nil {
		return fail("%v", err)
	}
	defer done()
	s := subs[0]
	fmt.Println("ready")
	lat := make([]int64, 0, count)
	if a[2] == "relay" {
		// The old design's path: a goroutine receives and relays each
		// message over a channel to the one that uses it (Messages).
		for m := range s.Messages(ctx) {
			if len(m.Data) >= 16 && binary.LittleEndian.Uint64(m.Data) != 1<<63 {
				lat = append(lat, since(m.Data))
			}
			s.Release(m)
			if len(lat) == count {
				break
			}
		}
		if len(lat) < count {
			return fail("relay: %d of %d messages", len(lat), count)
		}
	}
	for len(lat) < count {
		err := s.ReceiveFunc(ctx, func(h core.Header, view []byte) error {
			if len(view) >= 16 && binary.LittleEndian.Uint64(view) != 1<<63 {
				lat = append(lat, since(view))
			}
			return nil
		})
		if err != nil {
			return fail("receive: %v", err)
		}
	}
	p50, p99 := percentiles(lat)
	fmt.Printf("lat %.2f %.2f\n", p50, p99)
	return 0
}

// BenchmarkLatency: one message in flight, copy (Send copies in, the
// subscriber copies out), zc (SendFunc fills in place, the subscriber
// reads in place) and relay (copy, but the subscriber's goroutine gets
// each message over a channel from another goroutine that received it,
// Subscriber.Messages: the relay of the old design, one wake-up more).
func BenchmarkLatency(b *testing.B) {
	for _, mode := range []string{"copy", "zc", "relay"} {
		for _, size := range benchSizes {
			b.Run(mode+"/"+sizeName(size), func(b *testing.B) { benchLatency(b, mode, size) })
		}
	}
}

func benchLatency(b *testing.B, mode string, size int) {
	n, e := openNode(b)
	child := testutil.StartChild(b, "latsub", e, "lat", strconv.Itoa(b.N), mode)
	child.Expect(b, "ready", 10*time.Second)
	p, err := n.NewPublisher("lat", &core.PublisherOptions{AckTimeout: 10 * time.Second, Window: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	msg := make([]byte, max(size, 16))
	// The first Send waits for the subscriber to connect: keep it out.
	binary.LittleEndian.PutUint64(msg, 1<<63)
	if err := p.Send(ctx, msg); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if mode == "zc" {
			err = p.SendFunc(ctx, len(msg), func(buf []byte) error {
				binary.LittleEndian.PutUint64(buf, uint64(i))
				stamp(buf)
				return nil
			})
		} else {
			binary.LittleEndian.PutUint64(msg, uint64(i))
			stamp(msg)
			err = p.Send(ctx, msg)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportChildLatency(b, child)
	if err := child.Wait(b, 10*time.Second); err != nil {
		b.Fatal(err)
	}
}

// unixPair listens on a fresh Unix socket and returns its path and listener.
func unixPair(b *testing.B) (string, *net.UnixListener) {
	path := filepath.Join(b.TempDir(), "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return path, l
}

// childUnixLatency: args path count size. Reads count messages of size
// bytes, answers each with one byte, prints "lat <p50-µs> <p99-µs>".
func childUnixLatency(args []string) int {
	a := testutil.ChildArgs(args)
	count, size := atoi(a[1]), atoi(a[2])
	c, err := net.Dial("unix", a[0])
	if err != nil {
		return fail("dial: %v", err)
	}
	defer c.Close()
	buf := make([]byte, size)
	lat := make([]int64, 0, count)
	for i := 0; i < count; i++ {
		if _, err := io.ReadFull(c, buf); err != nil {
			return fail("read %d: %v", i, err)
		}
		lat = append(lat, since(buf))
		if _, err := c.Write(buf[:1]); err != nil {
			return fail("write: %v", err)
		}
	}
	p50, p99 := percentiles(lat)
	fmt.Printf("lat %.2f %.2f\n", p50, p99)
	return 0
}

// BenchmarkReferenceUnixPingPong is BenchmarkLatency over a Unix stream
// socket: the parent writes a stamped message, the child reads it whole
// and answers with one byte.
func BenchmarkReferenceUnixPingPong(b *testing.B) {
	for _, size := range []int{64, 4 << 10, 64 << 10, 1 << 20} {
		b.Run(sizeName(size), func(b *testing.B) {
			path, l := unixPair(b)
			child := testutil.StartChild(b, "unixlat", nil, path, strconv.Itoa(b.N), strconv.Itoa(size))
			c, err := l.Accept()
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			msg, ack := make([]byte, size), make([]byte, 1)
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				stamp(msg)
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, ack); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			reportChildLatency(b, child)
		})
	}
}

// childEventPong: args pingName pongName count. Answers every ping.
func childEventPong(args []string) int {
	a := testutil.ChildArgs(args)
	ping, err := event.Open(a[0], event.Options{})
	if err != nil {
		return fail("open ping: %v", err)
	}
	defer ping.Close()
	pong, err := event.Open(a[1], event.Options{})
	if err != nil {
		return fail("open pong: %v", err)
	}
	defer pong.Close()
	seq := ping.Seq() // before "ready": the parent sets ping only after it
	fmt.Println("ready")
	for i, n := 0, atoi(a[2]); i < n; i++ {
		next, err := ping.Wait(seq, 10*time.Second)
		if err != nil {
			return fail("wait ping %d: %v", i, err)
		}
		seq = next
		pong.Set()
	}
	return 0
}

// BenchmarkReferenceFutexPingPong is the floor for event-driven delivery
// between two processes: a futex wake-up there and back (core/event). Its
// one-way figure is half the round trip.
func BenchmarkReferenceFutexPingPong(b *testing.B) {
	d := testutil.Domain(b)
	pingName := shmname.Object(d, proc.RandomID(), "ping")
	pongName := shmname.Object(d, proc.RandomID(), "pong")
	ping, err := event.Create(pingName, event.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer ping.Destroy()
	pong, err := event.Create(pongName, event.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer pong.Destroy()
	child := testutil.StartChild(b, "evpong", nil, pingName, pongName, strconv.Itoa(b.N))
	child.Expect(b, "ready", 10*time.Second)
	rt := make([]int64, 0, b.N)
	seq := pong.Seq()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		ping.Set()
		next, err := pong.Wait(seq, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		seq = next
		rt = append(rt, int64(time.Since(t0))/2)
	}
	b.StopTimer()
	p50, p99 := percentiles(rt)
	b.ReportMetric(p50, "p50-µs")
	b.ReportMetric(p99, "p99-µs")
	if err := child.Wait(b, 10*time.Second); err != nil {
		b.Fatal(err)
	}
}

// childCountSub: args topic count copy|zc. Takes messages until the one
// with sequence number count-1 arrives, then prints "got <received>
// <dropped>".
func childCountSub(args []string) int {
	a := testutil.ChildArgs(args)
	topic, count, zc := a[0], atoi(a[1]), a[2] == "zc"
	// One context for the whole stream: the last message is always the
	// newest in the ring, so it arrives even when others were overwritten.
	ctx, subs, done, err := childSubscribers(topic, 1, &core.SubscriberOptions{ZeroCopy: zc, OnlyNew: true}, 5*time.Minute)
	if err != nil {
		return fail("%v", err)
	}
	defer done()
	s := subs[0]
	fmt.Println("ready")
	var got uint64
	for last := false; !last; {
		err := s.ReceiveFunc(ctx, func(h core.Header, view []byte) error {
			if seq := binary.LittleEndian.Uint64(view); seq != 1<<63 {
				got++
				last = seq == uint64(count-1)
			}
			return nil
		})
		if err != nil {
			return fail("receive after %d: %v", got, err)
		}
	}
	fmt.Printf("got %d %d\n", got, s.Stats().Dropped)
	return 0
}

func childResult(b *testing.B, c *testutil.Child) (got, dropped float64) {
	f := strings.Fields(c.Line(b, time.Minute))
	if len(f) != 3 || f[0] != "got" {
		b.Fatalf("child said %q", f)
	}
	got, _ = strconv.ParseFloat(f[1], 64)
	dropped, _ = strconv.ParseFloat(f[2], 64)
	return got, dropped
}

// BenchmarkThroughput: lossless (ack mode: default window, and window 1 =
// an acknowledgement round trip per message as eCAL) and fire-and-forget streams at full speed to a subscriber in another process.
// msg/s counts until the subscriber has taken every message; %received is
// what it got (100 in ack mode, else what it kept up with).
func BenchmarkThroughput(b *testing.B) {
	for _, mode := range []string{"ack", "ack-w1", "ack-zc", "nack"} {
		for _, size := range []int{64, 1 << 10, 64 << 10, 1 << 20} {
			b.Run(mode+"/"+sizeName(size), func(b *testing.B) {
				ack := time.Duration(0)
				if mode != "nack" {
					ack = 10 * time.Second
				}
				sub := "copy"
				if mode == "ack-zc" {
					sub = "zc"
				}
				window := 0 // the default
				if mode == "ack-w1" {
					window = 1
				}
				benchStream(b, size, ack, window, sub)
			})
		}
	}
}

func benchStream(b *testing.B, size int, ack time.Duration, window int, sub string) {
	n, e := openNode(b)
	child := testutil.StartChild(b, "countsub", e, "tp", strconv.Itoa(b.N), sub)
	child.Expect(b, "ready", 10*time.Second)
	p, err := n.NewPublisher("tp", &core.PublisherOptions{AckTimeout: ack, Window: window})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	msg := make([]byte, max(size, 8))
	binary.LittleEndian.PutUint64(msg, 1<<63)
	if err := p.Send(ctx, msg); err != nil { // waits for the subscriber
		b.Fatal(err)
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		binary.LittleEndian.PutUint64(msg, uint64(i))
		if err := p.Send(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	elapsed := b.Elapsed()
	b.StopTimer()
	got, dropped := childResult(b, child)
	if err := child.Wait(b, 10*time.Second); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
	b.ReportMetric(100*got/float64(b.N), "%received")
	b.ReportMetric(dropped, "dropped")
}

// childUnixSink: args path count size. Reads count messages of size bytes
// (each into its own buffer, as a subscriber's copy), prints "got <n> 0".
func childUnixSink(args []string) int {
	a := testutil.ChildArgs(args)
	count, size := atoi(a[1]), atoi(a[2])
	c, err := net.Dial("unix", a[0])
	if err != nil {
		return fail("dial: %v", err)
	}
	defer c.Close()
	buf := make([]byte, size)
	for i := 0; i < count; i++ {
		if _, err := io.ReadFull(c, buf); err != nil {
			return fail("read %d: %v", i, err)
		}
	}
	if _, err := c.Write([]byte{1}); err != nil {
		return fail("write: %v", err)
	}
	fmt.Printf("got %d 0\n", count)
	return 0
}

// BenchmarkReferenceUnixStream streams messages of a fixed size over a Unix
// stream socket as fast as it takes them; msg/s counts until the reader
// confirmed the last one.
func BenchmarkReferenceUnixStream(b *testing.B) {
	for _, size := range []int{64, 1 << 10, 64 << 10, 1 << 20} {
		b.Run(sizeName(size), func(b *testing.B) {
			path, l := unixPair(b)
			child := testutil.StartChild(b, "unixsink", nil, path, strconv.Itoa(b.N), strconv.Itoa(size))
			c, err := l.Accept()
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			msg := make([]byte, size)
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				binary.LittleEndian.PutUint64(msg, uint64(i))
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := io.ReadFull(c, msg[:1]); err != nil {
				b.Fatal(err)
			}
			elapsed := b.Elapsed()
			b.StopTimer()
			childResult(b, child)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
		})
	}
}

// BenchmarkOffered100kHz offers 1 KiB messages at 100 kHz, fire-and-forget,
// to a copying subscriber in another process, with windows of 64, 256
// (the default) and 1024 messages: eCAL 5.13 receives about 20 k msg/s of
// this with ~15 % lost on a machine like ours (DESIGN §5).
func BenchmarkOffered100kHz(b *testing.B) {
	for _, w := range []int{64, 256, 1024} {
		b.Run(fmt.Sprintf("window%d", w), func(b *testing.B) { benchOffered(b, w) })
	}
}

func benchOffered(b *testing.B, window int) {
	n, e := openNode(b)
	child := testutil.StartChild(b, "countsub", e, "offer", strconv.Itoa(b.N), "copy")
	child.Expect(b, "ready", 10*time.Second)
	p, err := n.NewPublisher("offer", &core.PublisherOptions{Window: window})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	msg := make([]byte, 1024)
	binary.LittleEndian.PutUint64(msg, 1<<63)
	if err := p.Send(ctx, msg); err != nil {
		b.Fatal(err)
	}
	const period = 10 * time.Microsecond
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for time.Since(start) < time.Duration(i)*period {
		}
		binary.LittleEndian.PutUint64(msg, uint64(i))
		if err := p.Send(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := b.Elapsed()
	b.StopTimer()
	got, _ := childResult(b, child)
	if err := child.Wait(b, 10*time.Second); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "offered-msg/s")
	b.ReportMetric(got/elapsed.Seconds(), "received-msg/s")
	b.ReportMetric(100*(1-got/float64(b.N)), "%lost")
}

func init() {
	children["fansub"] = childFanSub
}

// childFanSub: args topic count subscribers. Each subscriber takes
// messages until the one with sequence number count-1; then the child
// prints "got <total received> <total dropped>".
func childFanSub(args []string) int {
	a := testutil.ChildArgs(args)
	topic, count, nsubs := a[0], atoi(a[1]), atoi(a[2])
	ctx, subs, done, err := childSubscribers(topic, nsubs, &core.SubscriberOptions{OnlyNew: true}, 5*time.Minute)
	if err != nil {
		return fail("%v", err)
	}
	defer done()
	fmt.Println("ready")
	got := make(chan uint64, nsubs)
	for _, s := range subs {
		go func() {
			var k uint64
			for last := false; !last; {
				err := s.ReceiveFunc(ctx, func(h core.Header, view []byte) error {
					if seq := binary.LittleEndian.Uint64(view); seq != 1<<63 {
						k++
						last = seq == uint64(count-1)
					}
					return nil
				})
				if err != nil {
					break
				}
			}
			got <- k
		}()
	}
	var total, dropped uint64
	for _, s := range subs {
		total += <-got
		dropped += s.Stats().Dropped
	}
	fmt.Printf("got %d %d\n", total, dropped)
	return 0
}

// BenchmarkFanOut: the cost of one Send (64 B, ack mode, default window)
// with 1 subscriber, and with 64 subscribers spread over 8 processes; every
// subscriber takes every message. cpu-ns/send is the publisher's own work
// (CPU time of this process, which runs only the publisher); msg/s the
// rate every subscriber got, bounded on a small machine by the
// subscribers' work.
func BenchmarkFanOut(b *testing.B) {
	for _, c := range []struct{ procs, per int }{{1, 1}, {8, 8}} {
		b.Run(fmt.Sprintf("%dsubs", c.procs*c.per), func(b *testing.B) {
			n, e := openNode(b)
			var kids []*testutil.Child
			for i := 0; i < c.procs; i++ {
				kids = append(kids, testutil.StartChild(b, "fansub", e, "fan", strconv.Itoa(b.N), strconv.Itoa(c.per)))
			}
			for _, k := range kids {
				k.Expect(b, "ready", 30*time.Second)
			}
			p, err := n.NewPublisher("fan", &core.PublisherOptions{AckTimeout: 10 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			ctx := context.Background()
			msg := make([]byte, 64)
			binary.LittleEndian.PutUint64(msg, 1<<63)
			if err := p.Send(ctx, msg); err != nil {
				b.Fatal(err)
			}
			cpu0 := processCPU(b)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				binary.LittleEndian.PutUint64(msg, uint64(i))
				if err := p.Send(ctx, msg); err != nil {
					b.Fatal(err)
				}
			}
			if err := p.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			elapsed := b.Elapsed()
			b.StopTimer()
			cpu := processCPU(b) - cpu0
			for _, k := range kids {
				got, dropped := childResult(b, k)
				if got != float64(b.N*c.per) || dropped != 0 {
					b.Fatalf("a subscriber process got %v of %d messages, dropped %v", got, b.N*c.per, dropped)
				}
				if err := k.Wait(b, 10*time.Second); err != nil {
					b.Fatal(err)
				}
			}
			// The publisher's own work per Send (this process runs only
			// the publisher), and the rate every subscriber was served at.
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/send")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
		})
	}
}

// processCPU returns the CPU time (user + system) this process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
