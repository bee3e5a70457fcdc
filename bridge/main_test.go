package bridge_test

import (
	"context"
	"testing"
	"time"

	"github.com/shmfs/shmfs/bridge"
	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

// children are the test binary's re-executed roles; each test file adds
// its own in init.
var children = map[string]func([]string) int{}

func TestMain(m *testing.M) {
	testutil.Main(m, children)
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// coreConfig is a private domain and port with fast registration.
func coreConfig(t testing.TB) core.Config {
	return core.Config{Domain: testutil.Domain(t), Port: testutil.Port(t), Refresh: 200 * time.Millisecond, Timeout: 2 * time.Second}
}

// openNode opens a node of cfg, closed at cleanup.
func openNode(t testing.TB, cfg core.Config) *core.Node {
	t.Helper()
	n, err := core.OpenNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// startBridge starts a bridge closed at cleanup (before the nodes the
// test opened earlier: cleanups run last-in first-out).
func startBridge(t testing.TB, cfg bridge.Config) *bridge.Bridge {
	t.Helper()
	if cfg.Refresh == 0 {
		cfg.Refresh, cfg.Timeout = 200*time.Millisecond, 2*time.Second
	}
	if cfg.URL == "" && cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	name := cfg.Name
	cfg.Logf = func(format string, args ...any) { logf(t, name+": "+format, args...) }
	b, err := bridge.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close bridge %s: %v", name, err)
		}
	})
	return b
}

func logf(t testing.TB, format string, args ...any) {
	defer func() { _ = recover() }() // the test may have ended
	t.Logf(format, args...)
}

// pair is two simulated hosts in one process: two domains, two bridges
// (a runs the embedded server, b connects to it).
type pair struct {
	a, b   *bridge.Bridge
	na, nb *core.Node
	ca, cb core.Config
}

func newPair(t *testing.T, ca, cb bridge.Config) *pair {
	t.Helper()
	p := &pair{ca: coreConfig(t), cb: coreConfig(t)}
	// The two domains meet in NATS under one (per-test) name.
	ca.Domain, cb.Domain = p.ca.Domain, p.ca.Domain
	p.na, p.nb = openNode(t, p.ca), openNode(t, p.cb)
	ca.Core, ca.Name = p.ca, "host-a"
	p.a = startBridge(t, ca)
	cb.Core, cb.Name = p.cb, "host-b"
	if cb.URL == "" {
		cb.URL = p.a.URL()
	}
	p.b = startBridge(t, cb)
	return p
}

// waitLinked waits until pub has a subscriber process (the bridge's
// exporter, after the remote interest arrived).
func waitLinked(t testing.TB, pub *core.Publisher) {
	t.Helper()
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if pub.Stats().Subscribers == 0 {
			return errNotYet
		}
		return nil
	})
}

type notYet struct{}

func (notYet) Error() string { return "not yet" }

var errNotYet error = notYet{}
