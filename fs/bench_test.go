package fs

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

// Benchmarks run the programs that touch the mount as children; each child
// times its own loop (after a warm-up) and prints ns per operation, which
// the benchmark reports as ns/op.

const warmup = 50

// benchChildren are the benchmark's child programs (see TestMain).
var benchChildren = map[string]func([]string) int{
	"fspong":   childFSPong,
	"fsping":   childFSPing,
	"fsnoop":   childFSNoop,
	"fswrite":  childFSWrite,
	"corepong": childCorePong,
	"coredrain": func(args []string) int {
		a := testutil.ChildArgs(args)
		s, err := coreNode().NewSubscriber(a[0], nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer s.Close()
		fmt.Println("ready")
		ctx, stop := context.WithTimeout(context.Background(), 5*time.Minute)
		defer stop()
		go func() { // SIGTERM ends it
			c := make(chan os.Signal, 1)
			signalNotify(c)
			<-c
			stop()
		}()
		for {
			if _, err := s.Receive(ctx); err != nil {
				return 0
			}
		}
	},
}

// childFSPong copies every message of <mp>/ping/data to <mp>/pong/data.
func childFSPong(args []string) int {
	a := testutil.ChildArgs(args)
	in, err := os.Open(a[0] + "/ping/data")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	out, err := os.OpenFile(a[0]+"/pong/data", os.O_WRONLY, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	buf := make([]byte, 1<<20)
	for {
		n, err := in.Read(buf)
		if err != nil || n == 0 {
			return 0
		}
		if _, err := out.Write(buf[:n]); err != nil {
			return 1
		}
	}
}

// childFSPing sends count messages of size bytes to ping and waits for each
// to come back on pong; prints ns per one-way trip.
func childFSPing(args []string) int {
	a := testutil.ChildArgs(args)
	count, _ := strconv.Atoi(a[1])
	size, _ := strconv.Atoi(a[2])
	in, err := os.Open(a[0] + "/pong/data")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	out, err := os.OpenFile(a[0]+"/ping/data", os.O_WRONLY, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	msg := make([]byte, size)
	buf := make([]byte, size+1)
	var start time.Time
	for i := -warmup; i < count; i++ {
		if i == 0 {
			start = time.Now()
		}
		if _, err := out.Write(msg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if _, err := in.Read(buf); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	fmt.Println(time.Since(start).Nanoseconds() / int64(2*count))
	return 0
}

// childFSNoop preads the mount's .shmfs file count times: the round trip of
// a FUSE request that does nothing.
func childFSNoop(args []string) int {
	a := testutil.ChildArgs(args)
	count, _ := strconv.Atoi(a[1])
	fd, err := syscall.Open(a[0]+"/.shmfs", syscall.O_RDONLY, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	buf := make([]byte, 256)
	var start time.Time
	for i := -warmup; i < count; i++ {
		if i == 0 {
			start = time.Now()
		}
		if _, err := syscall.Pread(fd, buf, 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	fmt.Println(time.Since(start).Nanoseconds() / int64(count))
	return 0
}

// childFSWrite writes count messages of size bytes to <mp>/<topic>/data;
// prints ns per write.
func childFSWrite(args []string) int {
	a := testutil.ChildArgs(args)
	count, _ := strconv.Atoi(a[2])
	size, _ := strconv.Atoi(a[3])
	out, err := os.OpenFile(a[0]+"/"+a[1]+"/data", os.O_WRONLY, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	msg := make([]byte, size)
	var start time.Time
	for i := -warmup; i < count; i++ {
		if i == 0 {
			start = time.Now()
		}
		if _, err := out.Write(msg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	fmt.Println(time.Since(start).Nanoseconds() / int64(count))
	return 0
}

// childCorePong echoes topic ping to topic pong with the core API.
func childCorePong(args []string) int {
	s, err := coreNode().NewSubscriber("ping", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	p, err := coreNode().NewPublisher("pong", &core.PublisherOptions{AckTimeout: time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer p.Close()
	fmt.Println("ready")
	ctx, stop := context.WithTimeout(context.Background(), 5*time.Minute)
	defer stop()
	for {
		m, err := s.Receive(ctx)
		if err != nil {
			return 0
		}
		if len(m.Data) == 1 && m.Data[0] == 'q' {
			return 0
		}
		if err := p.Send(ctx, m.Data); err != nil {
			return 1
		}
	}
}

func benchEnv(b *testing.B) *env {
	b.Helper()
	o := MountOptions{}
	if os.Getenv("SHMFS_BENCH_NOACK") != "" {
		o.AckTimeout = -1
	}
	return newEnv(b, "core", o)
}

// childResult waits for a child's number (ns per operation) and reports it.
func childResult(b *testing.B, c *testutil.Child, bytes int) {
	b.Helper()
	l := c.Line(b, 2*time.Minute)
	ns, err := strconv.ParseFloat(strings.TrimSpace(l), 64)
	if err != nil {
		b.Fatalf("child printed %q", l)
	}
	b.ReportMetric(ns, "ns/op")
	if bytes > 0 {
		b.ReportMetric(float64(bytes)/ns*1e3, "MB/s")
	}
}

// BenchmarkLatencyFS: one-way latency of write(2) to data -> read(2) of a
// reader, between two processes through the mount (ping-pong / 2).
func BenchmarkLatencyFS(b *testing.B) {
	for _, size := range []int{64, 4096} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			e := benchEnv(b)
			e.sh(`mkdir "$M/ping" "$M/pong"`, 5*time.Second)
			pong := testutil.StartChild(b, "fspong", e.vars, e.mp)
			pong.Expect(b, "ready", 10*time.Second)
			e.waitSubscribers("ping", 1)
			ping := testutil.StartChild(b, "fsping", e.vars, e.mp, strconv.Itoa(b.N), strconv.Itoa(size))
			childResult(b, ping, 0)
		})
	}
}

// BenchmarkLatencyCore: the same ping-pong with the core API (this process
// pings, a child pongs), acknowledged like the mount's publishers.
func BenchmarkLatencyCore(b *testing.B) {
	for _, size := range []int{64, 4096} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			e := benchEnv(b)
			n := e.srv.fs.be.(coreBackend).n
			pong := testutil.StartChild(b, "corepong", e.vars)
			pong.Expect(b, "ready", 10*time.Second)
			sub, err := n.NewSubscriber("pong", nil)
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Close()
			pub, err := n.NewPublisher("ping", &core.PublisherOptions{AckTimeout: time.Second})
			if err != nil {
				b.Fatal(err)
			}
			defer pub.Close()
			ctx := context.Background()
			msg := make([]byte, size)
			var start time.Time
			for i := -warmup; i < b.N; i++ {
				if i == 0 {
					start = time.Now()
				}
				if err := pub.Send(ctx, msg); err != nil {
					b.Fatal(err)
				}
				if _, err := sub.Receive(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(2*b.N), "ns/op")
			_ = pub.Send(ctx, []byte("q"))
			_ = pong.Wait(b, 10*time.Second)
		})
	}
}

// BenchmarkNoopFUSE: a pread of a fixed 30-byte file of the same mount: the
// floor of any FUSE request.
func BenchmarkNoopFUSE(b *testing.B) {
	e := benchEnv(b)
	c := testutil.StartChild(b, "fsnoop", e.vars, e.mp, strconv.Itoa(b.N))
	childResult(b, c, 0)
}

// BenchmarkWriteFS: write(2) to data, one message each, with one core
// subscriber process draining the topic.
func BenchmarkWriteFS(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			e := benchEnv(b)
			d := testutil.StartChild(b, "coredrain", e.vars, "tput")
			d.Expect(b, "ready", 10*time.Second)
			e.waitSubscribers("tput", 1)
			c := testutil.StartChild(b, "fswrite", e.vars, e.mp, "tput", strconv.Itoa(b.N), strconv.Itoa(size))
			childResult(b, c, size)
			d.Stop(b, 5*time.Second)
		})
	}
}

// BenchmarkWriteCore: Publisher.Send of the same sizes (acknowledged like
// the mount's publishers) to one core subscriber process.
func BenchmarkWriteCore(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			e := benchEnv(b)
			d := testutil.StartChild(b, "coredrain", e.vars, "tput")
			d.Expect(b, "ready", 10*time.Second)
			e.waitSubscribers("tput", 1)
			n := e.srv.fs.be.(coreBackend).n
			pub, err := n.NewPublisher("tput", &core.PublisherOptions{AckTimeout: time.Second})
			if err != nil {
				b.Fatal(err)
			}
			msg := make([]byte, size)
			ctx := context.Background()
			var start time.Time
			for i := -warmup; i < b.N; i++ {
				if i == 0 {
					start = time.Now()
				}
				if err := pub.Send(ctx, msg); err != nil {
					b.Fatal(err)
				}
			}
			ns := float64(time.Since(start).Nanoseconds()) / float64(b.N)
			b.ReportMetric(ns, "ns/op")
			b.ReportMetric(float64(size)/ns*1e3, "MB/s")
			pub.Close()
			d.Stop(b, 5*time.Second)
		})
	}
}
