package core_test

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

// Leaks: cycles of everything the API opens and closes must leave this
// process with the same descriptors, goroutines and shared-memory
// mappings, and /dev/shm with the same files, as before. SHMFS_LEAK_CYCLES
// sets the number of cycles (default 200; 10 000 for the figures in
// docs/reliability.md).

// leakCycles is SHMFS_LEAK_CYCLES, else def.
func leakCycles(t *testing.T, def int) int {
	if s := os.Getenv("SHMFS_LEAK_CYCLES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("SHMFS_LEAK_CYCLES=%q: want a positive number", s)
		}
		return n
	}
	return def
}

// TestNoLeaksThroughTheAPI: cycles of NewPublisher, NewSubscriber (copy and
// zero-copy), a message each way through them, Close — within one node,
// and cycles of OpenNode..Close around the same.
func TestNoLeaksThroughTheAPI(t *testing.T) {
	cycles := leakCycles(t, 200)
	cfg, _ := newConfig(t)
	ctx := testCtx(t, time.Hour)
	cycle := func(n *core.Node, i int) {
		topic := fmt.Sprintf("leak%d", i%7)
		p, err := n.NewPublisher(topic, &core.PublisherOptions{DiscoveryWait: -1, AckTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		s, err := n.NewSubscriber(topic, nil)
		if err != nil {
			t.Fatal(err)
		}
		z, err := n.NewSubscriber(topic, &core.SubscriberOptions{ZeroCopy: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Send(ctx, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		if err := z.ReceiveFunc(ctx, func(core.Header, []byte) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := z.Close(); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
	open := func() *core.Node {
		n, err := core.OpenNode(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("in-one-node", func(t *testing.T) {
		n := open()
		defer n.Close()
		for i := range 20 { // warm up: lazy initialisation, pools
			cycle(n, i)
		}
		base := testutil.Stable(t, cfg.Domain)
		start := time.Now()
		for i := range cycles {
			cycle(n, i)
		}
		took := time.Since(start)
		after := testutil.Settled(t, cfg.Domain, base, 15*time.Second)
		t.Logf("%d cycles of NewPublisher/NewSubscriber x2/Send/Receive x2/Close x3 in %v: before %v; after %v", cycles, took.Round(time.Millisecond), base, after)
	})
	t.Run("nodes", func(t *testing.T) {
		for i := range 5 {
			n := open()
			cycle(n, i)
			n.Close()
		}
		base := testutil.Stable(t, cfg.Domain)
		start := time.Now()
		for i := range cycles {
			n := open()
			cycle(n, i)
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
		}
		took := time.Since(start)
		after := testutil.Settled(t, cfg.Domain, base, 15*time.Second)
		t.Logf("%d cycles of OpenNode/NewPublisher/NewSubscriber x2/Send/Receive x2/Close x4 in %v: before %v; after %v", cycles, took.Round(time.Millisecond), base, after)
	})
}
