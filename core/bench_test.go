package core_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

// Benchmarks between two processes. The parent publishes in ack mode (one
// message in flight); a child subscriber measures each message's one-way
// latency from the start of Send (a timestamp in the payload) to its
// delivery, and reports p50/p99 when it has seen b.N messages.
//
//	go test -run '^$' -bench . ./core/

var benchSizes = []int{64, 4 << 10, 64 << 10, 1 << 20, 8 << 20}

func init() {
	benchChildren["latsub"] = childLatencySub
}

// benchChildren is merged into TestMain's children (see core_test.go).
var benchChildren = map[string]func([]string) int{}

// childLatencySub: args topic count zc. Prints "ready", then after count
// messages "lat <p50ns> <p99ns>".
func childLatencySub(args []string) int {
	a := testutil.ChildArgs(args)
	topic, count, zc := a[0], atoi(a[1]), a[2] == "zc"
	s, err := core.NewSubscriber(topic, &core.SubscriberOptions{Config: testConfig(), ZeroCopy: zc})
	if err != nil {
		return fail("NewSubscriber: %v", err)
	}
	defer s.Close()
	fmt.Println("ready")
	lat := make([]int64, 0, count)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for len(lat) < count {
		err := s.ReceiveFunc(ctx, func(h core.Header, view []byte) error {
			now := time.Now().UnixNano()
			if len(view) >= 16 {
				lat = append(lat, now-int64(binary.LittleEndian.Uint64(view[8:])))
			}
			return nil
		})
		if err != nil {
			return fail("receive: %v", err)
		}
	}
	slices.Sort(lat)
	fmt.Printf("lat %d %d\n", lat[len(lat)/2], lat[len(lat)*99/100])
	return 0
}

func BenchmarkLatency(b *testing.B) {
	for _, mode := range []string{"copy", "zc"} {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/%s", mode, sizeName(size)), func(b *testing.B) {
				benchLatency(b, mode, size)
			})
		}
	}
}

func benchLatency(b *testing.B, mode string, size int) {
	d, port := testutil.Domain(b), testutil.Port(b)
	cfg := testConfig()
	cfg.Domain, cfg.Port = d, port
	child := testutil.StartChild(b, "latsub", env(d, port), "lat", strconv.Itoa(b.N), mode)
	child.Expect(b, "ready", 10*time.Second)
	p, err := core.NewPublisher("lat", &core.PublisherOptions{Config: cfg, AckTimeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		err := p.SendFunc(ctx, size, func(buf []byte) error {
			binary.LittleEndian.PutUint64(buf, uint64(i))
			binary.LittleEndian.PutUint64(buf[8:], uint64(time.Now().UnixNano()))
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	elapsed := b.Elapsed()
	b.StopTimer()
	line := child.Line(b, time.Minute)
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "lat" {
		b.Fatalf("child said %q", line)
	}
	p50, _ := strconv.ParseFloat(f[1], 64)
	p99, _ := strconv.ParseFloat(f[2], 64)
	b.ReportMetric(p50/1e3, "p50-µs")
	b.ReportMetric(p99/1e3, "p99-µs")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
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

