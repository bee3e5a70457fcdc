package metrics

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shmfs/shmfs/cmd/shmfs/internal/metrics/metricstest"
	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

// The metrics of a process with a publisher and a subscriber, served over
// real HTTP and parsed with the Prometheus text parser: per-topic counters
// from core, the mount's counters and latency histogram, Go and process
// metrics. A publisher that leaves keeps its messages in the topic's total.
func TestScrape(t *testing.T) {
	d, port := testutil.Domain(t), testutil.Port(t)
	n, err := core.OpenNode(core.Config{Domain: d, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	reg := New()
	m := NewMount()
	if err := reg.Register(NewTopics(n), m); err != nil {
		t.Fatal(err)
	}
	srv, err := reg.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	sub, err := n.NewSubscriber("cam", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	send := func(k int) {
		p, err := n.NewPublisher("cam", &core.PublisherOptions{AckTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for i := 0; i < k; i++ {
			if err := p.Send(ctx, []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
			if _, err := sub.Receive(ctx); err != nil {
				t.Fatal(err)
			}
		}
		fams := metricstest.Scrape(t, srv.URL()) // while the publisher is there
		if v, ok := metricstest.Value(fams, "shmfs_topic_publishers", "cam"); !ok || v != 1 {
			t.Errorf("publishers = %v (%v), want 1", v, ok)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
	send(5)
	m.Published("cam", 100)
	m.Delivered("cam", 100, 50*time.Microsecond)
	m.Delivered("cam", 7, 3*time.Millisecond)
	send(2)

	fams := metricstest.Scrape(t, srv.URL())
	for _, c := range []struct {
		name string
		want float64
	}{
		{"shmfs_topic_messages_total", 7},
		{"shmfs_topic_dropped_total", 0},
		{"shmfs_topic_ack_timeouts_total", 0},
		{"shmfs_topic_subscribers", 1},
		{"shmfs_topic_publishers", 0},
		{"shmfs_mount_published_messages_total", 1},
		{"shmfs_mount_published_bytes_total", 100},
		{"shmfs_mount_delivered_messages_total", 2},
		{"shmfs_mount_delivered_bytes_total", 107},
		{"shmfs_mount_delivery_latency_seconds", 2},
	} {
		if v, ok := metricstest.Value(fams, c.name, "cam"); !ok || v != c.want {
			t.Errorf("%s{topic=cam} = %v (present %v), want %v", c.name, v, ok, c.want)
		}
	}
	// 50 µs falls in the 160 µs bucket, not in the 40 µs one.
	h := fams["shmfs_mount_delivery_latency_seconds"].GetMetric()[0].GetHistogram()
	for _, b := range h.GetBucket() {
		want := uint64(0)
		switch {
		case b.GetUpperBound() >= 3e-3:
			want = 2
		case b.GetUpperBound() >= 50e-6:
			want = 1
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("bucket ≤ %v s: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
}

// An address that cannot be served is an error naming it.
func TestServeBadAddress(t *testing.T) {
	if _, err := New().Serve("127.0.0.1:-1"); err == nil {
		t.Fatal("no error")
	}
}
