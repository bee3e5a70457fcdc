package fs

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
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

// The latency children use raw system calls, like cat and echo: blocking
// read(2) and write(2). os.File would make the Go runtime poll (nonblocking
// reads, EAGAIN, epoll); BenchmarkLatencyFSGoFile measures that path.

// childFSPong copies every message of <mp>/ping/data to <mp>/pong/data
// (args: mountpoint ["os" to use os.File]).
func childFSPong(args []string) int {
	a := testutil.ChildArgs(args)
	in, out, err := openPair(a[0]+"/ping/data", a[0]+"/pong/data", len(a) > 1 && a[1] == "os")
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

// rawFile is a file descriptor read and written with plain system calls.
type rawFile int

func (f rawFile) Read(b []byte) (int, error) {
	for {
		n, err := syscall.Read(int(f), b)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

func (f rawFile) Write(b []byte) (int, error) {
	for {
		n, err := syscall.Write(int(f), b)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// openPair opens in for reading and out for writing, as raw descriptors
// or (goFile) as os.Files.
func openPair(in, out string, goFile bool) (io.Reader, io.Writer, error) {
	if goFile {
		r, err := os.Open(in)
		if err != nil {
			return nil, nil, err
		}
		w, err := os.OpenFile(out, os.O_WRONLY, 0)
		return r, w, err
	}
	r, err := syscall.Open(in, syscall.O_RDONLY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", in, err)
	}
	w, err := syscall.Open(out, syscall.O_WRONLY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", out, err)
	}
	return rawFile(r), rawFile(w), nil
}

// timings collects the duration of each operation; print writes "mean
// p50" in ns (each divided by div).
type timings []time.Duration

func (ts timings) print(div int64) {
	var sum time.Duration
	for _, d := range ts {
		sum += d
	}
	slices.Sort(ts)
	fmt.Println(sum.Nanoseconds()/int64(len(ts))/div, ts[len(ts)/2].Nanoseconds()/div)
}

// childFSPing sends count messages of size bytes to ping and waits for each
// to come back on pong; prints ns per one-way trip (half a round trip):
// mean and median (args: mountpoint count size ["os"]).
func childFSPing(args []string) int {
	a := testutil.ChildArgs(args)
	count, _ := strconv.Atoi(a[1])
	size, _ := strconv.Atoi(a[2])
	in, out, err := openPair(a[0]+"/pong/data", a[0]+"/ping/data", len(a) > 3 && a[3] == "os")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	msg := make([]byte, size)
	buf := make([]byte, size+1)
	ts := make(timings, 0, count)
	for i := -warmup; i < count; i++ {
		start := time.Now()
		if _, err := out.Write(msg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if _, err := in.Read(buf); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if i >= 0 {
			ts = append(ts, time.Since(start))
		}
	}
	ts.print(2)
	return 0
}

// childFSNoop preads the mount's .shmfs file count times: the round trip of
// a FUSE request that does nothing; prints mean and median.
func childFSNoop(args []string) int {
	a := testutil.ChildArgs(args)
	count, _ := strconv.Atoi(a[1])
	fd, err := syscall.Open(a[0]+"/.shmfs", syscall.O_RDONLY, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	buf := make([]byte, 256)
	ts := make(timings, 0, count)
	for i := -warmup; i < count; i++ {
		start := time.Now()
		if _, err := syscall.Pread(fd, buf, 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if i >= 0 {
			ts = append(ts, time.Since(start))
		}
	}
	ts.print(1)
	return 0
}

// childFSWrite writes count messages of size bytes to <mp>/<topic>/data
// with write(2); prints ns per write.
func childFSWrite(args []string) int {
	a := testutil.ChildArgs(args)
	count, _ := strconv.Atoi(a[2])
	size, _ := strconv.Atoi(a[3])
	fd, err := syscall.Open(a[0]+"/"+a[1]+"/data", syscall.O_WRONLY, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	out := rawFile(fd)
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

// childResult waits for a child's numbers (ns per operation: the mean,
// and the median if given) and reports them.
func childResult(b *testing.B, c *testutil.Child, bytes int) {
	b.Helper()
	l := c.Line(b, 2*time.Minute)
	f := strings.Fields(l)
	if len(f) == 0 || len(f) > 2 {
		b.Fatalf("child printed %q", l)
	}
	ns, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		b.Fatalf("child printed %q", l)
	}
	b.ReportMetric(ns, "ns/op")
	if len(f) == 2 {
		p50, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			b.Fatalf("child printed %q", l)
		}
		b.ReportMetric(p50, "p50-ns")
	}
	if bytes > 0 {
		b.ReportMetric(float64(bytes)/ns*1e3, "MB/s")
	}
}

// BenchmarkLatencyFS: one-way latency of write(2) to data -> read(2) of a
// reader, between two processes through the mount (ping-pong / 2), with
// blocking system calls as cat and echo make them.
func BenchmarkLatencyFS(b *testing.B) { benchLatencyFS(b, "raw") }

// BenchmarkLatencyFSGoFile: the same with os.File, whose reads go through
// the Go runtime's epoll (O_NONBLOCK, EAGAIN, NOTIFY_POLL, FUSE_POLL).
func BenchmarkLatencyFSGoFile(b *testing.B) { benchLatencyFS(b, "os") }

func benchLatencyFS(b *testing.B, mode string) {
	for _, size := range []int{64, 4096} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			e := benchEnv(b)
			e.sh(`mkdir "$M/ping" "$M/pong"`, 5*time.Second)
			pong := testutil.StartChild(b, "fspong", e.vars, e.mp, mode)
			pong.Expect(b, "ready", 10*time.Second)
			e.waitSubscribers("ping", 1)
			ping := testutil.StartChild(b, "fsping", e.vars, e.mp, strconv.Itoa(b.N), strconv.Itoa(size), mode)
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
			// The drain first: a subscriber process that disconnects while
			// its publisher goes away may release its ack event in the
			// background, after it exited (core), leaving it for a sweep.
			d.Stop(b, 5*time.Second)
			pub.Close()
		})
	}
}
