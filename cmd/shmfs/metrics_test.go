package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/shmfs/shmfs/cmd/shmfs/internal/metrics/metricstest"
	"github.com/shmfs/shmfs/internal/testutil"
)

// shmfs mount --metrics: messages written and read through the mount
// (by dd and sh, child processes) show in the metrics scraped from the real
// HTTP endpoint and parsed with Prometheus's text parser: the topic's
// messages and publishers (core), the mount's bytes and delivery-latency
// histogram, and the Go and process metrics.
func TestMountMetrics(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testutil.RequireCI(t, "no /dev/fuse")
	}
	e := newEnv(t)
	dir := filepath.Join(t.TempDir(), "mnt")
	m := startShmfs(t, e.vars(), "mount", "--metrics", "127.0.0.1:0", dir)
	t.Cleanup(func() {
		if isShmfsMount(dir) {
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	url := ""
	for url == "" {
		if _, u, ok := strings.Cut(m.StderrLine(t, 20*time.Second), "shmfs: metrics on "); ok {
			url = u
		}
	}
	m.ExpectStderr(t, "mounted domain", 20*time.Second)
	if err := os.Mkdir(filepath.Join(dir, "t"), 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "t", "data")
	reader := testutil.Start(t, testutil.Options{}, "dd", "if="+data, "of=/dev/null", "bs=1M", "count=3", "status=none")
	testutil.WaitBlockedInRead(t, reader.PID(), 20*time.Second)
	w := testutil.Run(t, 30*time.Second, testutil.Options{}, "sh", "-c", "echo a > \"$1\"; echo bb > \"$1\"; echo ccc > \"$1\"", "sh", data)
	if w.Code != 0 {
		t.Fatalf("writes: exit %d: %s", w.Code, w.Stderr)
	}
	if code := reader.ExitCode(t, 30*time.Second); code != 0 {
		t.Fatalf("dd: exit %d", code)
	}

	fams := metricstest.Scrape(t, url)
	for _, c := range []struct {
		name string
		want float64
	}{
		{"shmfs_topic_messages_total", 3},
		{"shmfs_topic_dropped_total", 0},
		{"shmfs_topic_ack_timeouts_total", 0},
		{"shmfs_topic_publishers", 1}, // the mount's, lingering after the writes
		{"shmfs_mount_published_messages_total", 3},
		{"shmfs_mount_published_bytes_total", 2 + 3 + 4},
		{"shmfs_mount_delivered_messages_total", 3},
		{"shmfs_mount_delivered_bytes_total", 2 + 3 + 4},
		{"shmfs_mount_delivery_latency_seconds", 3}, // samples
	} {
		if v, ok := metricstest.Value(fams, c.name, "t"); !ok || v != c.want {
			t.Errorf("%s{topic=\"t\"} = %v (present %v), want %v", c.name, v, ok, c.want)
		}
	}
	if _, ok := metricstest.Value(fams, "shmfs_topic_subscribers", "t"); !ok {
		t.Error("no shmfs_topic_subscribers{topic=\"t\"}")
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "process_open_fds"} {
		if fams[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	m.Signal(syscall.SIGINT)
	if code := m.ExitCode(t, 20*time.Second); code != 0 {
		t.Errorf("mount: exit %d after SIGINT", code)
	}
	if _, err := http.Get(url); err == nil {
		t.Errorf("metrics still served after the mount exited")
	}
}

// A --metrics address without a port is a usage error, before mounting.
func TestMountMetricsBadAddress(t *testing.T) {
	t.Parallel()
	r := runShmfs(t, 10*time.Second, nil, "", "mount", "--metrics", "localhost", filepath.Join(t.TempDir(), "mnt"))
	if r.code != 2 || !strings.Contains(r.stderr, "--metrics") {
		t.Errorf("exit %d, stderr %q; want a usage error naming --metrics", r.code, r.stderr)
	}
}

// metricsURL reads the "shmfs: metrics on URL" line of a command's stderr.
func metricsURL(t *testing.T, c *testutil.Child) string {
	t.Helper()
	for {
		if _, u, ok := strings.Cut(c.StderrLine(t, 20*time.Second), "shmfs: metrics on "); ok {
			return u
		}
	}
}

// shmfs bridge --metrics: two bridges on this host join two separate
// worlds of one domain (each with its own registration port, as if on two
// hosts; one bridge serves NATS, the other uses it); a topic published in
// one reaches a subscriber in the other, and both bridges' counters show it.
func TestBridgeMetrics(t *testing.T) {
	t.Parallel()
	a := newEnv(t)
	b := env{domain: a.domain, port: testutil.Port(t)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := l.Addr().String()
	l.Close()
	ba := startShmfs(t, a.vars(), "bridge", "--listen", natsAddr, "--name", "hosta", "--metrics", "127.0.0.1:0")
	urlA := metricsURL(t, ba)
	bb := startShmfs(t, b.vars(), "bridge", "--nats", "nats://"+natsAddr, "--name", "hostb", "--metrics", "127.0.0.1:0")
	urlB := metricsURL(t, bb)
	sub := startShmfs(t, b.vars(), "sub", "--count", "3", "t")
	// The sub is announced to bridge a through bridge b; then a exports.
	testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if v, _ := metricstest.Value(metricstest.Scrape(t, urlA), "shmfs_bridge_peers", ""); v != 1 {
			return fmt.Errorf("bridge a hears %v bridges", v)
		}
		return nil
	})
	testutil.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		r := runShmfs(t, 20*time.Second, a.vars(), "", "pub", "t", "x")
		if r.code != 0 {
			return fmt.Errorf("pub: exit %d: %s", r.code, r.stderr)
		}
		if v, _ := metricstest.Value(metricstest.Scrape(t, urlB), "shmfs_bridge_received_messages_total", "t"); v < 3 {
			return fmt.Errorf("bridge b received %v messages of t", v)
		}
		return nil
	})
	if code := sub.ExitCode(t, 20*time.Second); code != 0 {
		t.Fatalf("sub: exit %d", code)
	}
	fa, fb := metricstest.Scrape(t, urlA), metricstest.Scrape(t, urlB)
	sent, _ := metricstest.Value(fa, "shmfs_bridge_sent_messages_total", "t")
	recv, _ := metricstest.Value(fb, "shmfs_bridge_received_messages_total", "t")
	if sent < 3 || recv < 3 || recv > sent {
		t.Errorf("bridge a sent %v messages of t, bridge b received %v", sent, recv)
	}
	for _, u := range []map[string]*dto.MetricFamily{fa, fb} {
		if v, ok := metricstest.Value(u, "shmfs_bridge_connected", ""); !ok || v != 1 {
			t.Errorf("shmfs_bridge_connected = %v (present %v)", v, ok)
		}
		if u["go_goroutines"] == nil || u["process_open_fds"] == nil {
			t.Error("Go or process metrics missing beside the bridge's")
		}
	}
}
