package core_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

// children are the functions a test runs in a re-executed copy of the test
// binary; each test file adds its own in init.
var children = map[string]func([]string) int{}

func TestMain(m *testing.M) {
	if !testutil.IsChild() {
		// The godoc examples run without a port: give them a private one,
		// so that they cannot talk to another test run or a real shmfs on
		// this host.
		if c, err := net.ListenPacket("udp4", "127.0.0.1:0"); err == nil {
			os.Setenv("SHMFS_PORT", strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port))
			c.Close()
		}
	}
	testutil.Main(m, children)
}

// env carries a test's domain and port to its children.
func env(domain string, port int) []string {
	return []string{"SHMFS_DOMAIN=" + domain, "SHMFS_PORT=" + strconv.Itoa(port)}
}

// testConfig is the Config of a test or child: domain and port from env,
// fast registration timings.
func testConfig() core.Config {
	return core.Config{Refresh: 200 * time.Millisecond, Timeout: 2 * time.Second}
}

func newConfig(t testing.TB) (core.Config, []string) {
	d, p := testutil.Domain(t), testutil.Port(t)
	c := testConfig()
	c.Domain, c.Port = d, p
	return c, env(d, p)
}

// openNode opens a node on a private domain and port, closed at cleanup.
func openNode(t testing.TB) (*core.Node, []string) {
	t.Helper()
	cfg, e := newConfig(t)
	n, err := core.OpenNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, e
}

// childNode opens the node of a child process (domain and port from env).
func childNode() (*core.Node, error) { return core.OpenNode(testConfig()) }

// childSubscribers is the start of a subscribing child: its context (done
// after d or at SIGTERM, see childContext), its node and n subscribers of
// topic with options o. done closes them all; on an error the child
// should return fail(err).
func childSubscribers(topic string, n int, o *core.SubscriberOptions, d time.Duration) (ctx context.Context, subs []*core.Subscriber, done func(), err error) {
	ctx, cancel := childContext(d)
	node, err := childNode()
	if err != nil {
		cancel()
		return nil, nil, nil, fmt.Errorf("OpenNode: %w", err)
	}
	done = func() { node.Close(); cancel() }
	for i := 0; i < n; i++ {
		s, err := node.NewSubscriber(topic, o)
		if err != nil {
			done()
			return nil, nil, nil, fmt.Errorf("NewSubscriber: %w", err)
		}
		subs = append(subs, s)
	}
	return ctx, subs, done, nil
}

// childPublisher is the start of a publishing child: its context (done
// after d or at SIGTERM, see childContext), its node and a publisher of
// topic with options o. done closes them; on an error the child should
// return fail(err).
func childPublisher(topic string, o *core.PublisherOptions, d time.Duration) (ctx context.Context, n *core.Node, p *core.Publisher, done func(), err error) {
	ctx, cancel := childContext(d)
	n, err = childNode()
	if err != nil {
		cancel()
		return nil, nil, nil, nil, fmt.Errorf("OpenNode: %w", err)
	}
	p, err = n.NewPublisher(topic, o)
	if err != nil {
		n.Close()
		cancel()
		return nil, nil, nil, nil, fmt.Errorf("NewPublisher: %w", err)
	}
	return ctx, n, p, func() { p.Close(); n.Close(); cancel() }, nil
}

// childContext is a child's context: done after d or at SIGTERM, so that a
// child stopped by stopChild closes its node and leaves nothing behind.
func childContext(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, func() { cancel(); stop() }
}

// stopChild ends a child that waits in childContext and waits for it.
func stopChild(t testing.TB, c *testutil.Child) {
	t.Helper()
	_ = c.Cmd.Process.Signal(syscall.SIGTERM)
	if err := c.Wait(t, 10*time.Second); err != nil {
		t.Errorf("child after SIGTERM: %v", err)
	}
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// payload fills a message of size bytes for (publisher, seq): the first 8
// bytes hold seq, the rest a pattern derived from both.
func payload(pub, seq uint64, size int) []byte {
	b := make([]byte, size)
	fill(b, pub, seq)
	return b
}

func fill(b []byte, pub, seq uint64) {
	if len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, seq)
	}
	x := pub*0x9e3779b97f4a7c15 + seq
	for i := 8; i < len(b); i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
}

func fail(format string, a ...any) int {
	fmt.Fprintf(os.Stderr, format+"\n", a...)
	return 1
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}
