package core_test

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/core/memfile"
)

func TestSameProcessRoundTrip(t *testing.T) {
	cfg, _ := newConfig(t)
	s, err := core.NewSubscriber("local", &core.SubscriberOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := core.NewPublisher("local", &core.PublisherOptions{Config: cfg, AckTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// In ack mode a subscriber whose queue is full holds back its ack, so
	// send from another goroutine while this one receives.
	sent := make(chan error, 1)
	go func() {
		for i := 0; i < 1000; i++ {
			if err := p.SendID(ctx, int64(i), []byte{byte(i), 1, 2, 3}); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	for i := 0; i < 1000; i++ {
		m, err := s.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.ID != int64(i) || m.Clock != uint64(i+1) || !bytes.Equal(m.Data, []byte{byte(i), 1, 2, 3}) || m.Publisher != p.ID() || m.Dropped != 0 {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	// Cancelled receive consumes nothing and returns the context's error.
	short, cancel2 := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel2()
	if _, err := s.Receive(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive with nothing pending: %v", err)
	}
	if err := p.Send(ctx, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Receive(ctx); err != nil || string(m.Data) != "after" {
		t.Fatalf("Receive after a cancelled one: %q %v", m.Data, err)
	}
}

func TestLateSubscriberGetsLatest(t *testing.T) {
	cfg, _ := newConfig(t)
	p, err := core.NewPublisher("latch", &core.PublisherOptions{Config: cfg, DiscoveryWait: -1, ConnectTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, m := range []string{"one", "two", "three"} {
		if err := p.Send(context.Background(), []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	for _, zc := range []bool{false, true} {
		s, err := core.NewSubscriber("latch", &core.SubscriberOptions{Config: cfg, ZeroCopy: zc})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m, err := s.Receive(ctx)
		cancel()
		s.Close()
		if err != nil || string(m.Data) != "three" {
			t.Fatalf("zero-copy %v: late subscriber got %q, %v; want the latest message", zc, m.Data, err)
		}
	}
}

func TestCloseWakesReceive(t *testing.T) {
	cfg, _ := newConfig(t)
	s, err := core.NewSubscriber("wake", &core.SubscriberOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Receive(context.Background())
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, core.ErrClosed) {
			t.Fatalf("Receive after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake Receive")
	}
}

func TestZeroCopyReceiveAllocatesNothing(t *testing.T) {
	cfg, _ := newConfig(t)
	s, err := core.NewSubscriber("zc", &core.SubscriberOptions{Config: cfg, ZeroCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := core.NewPublisher("zc", &core.PublisherOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msg := make([]byte, 4096)
	var got int
	fn := func(h core.Header, view []byte) error { got += len(view); return nil }
	// Warm up: connection, first message, map entries.
	for i := 0; i < 3; i++ {
		if err := p.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
		if err := s.ReceiveFunc(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	// One publish plus one zero-copy receive per run; the observer goroutine
	// runs in between, so its allocations count too.
	allocs := testing.AllocsPerRun(500, func() {
		if err := p.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
		if err := s.ReceiveFunc(ctx, fn); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("zero-copy send+receive allocates %.2f objects per message, want 0", allocs)
	}
	// AllocsPerRun runs the function once more than asked, to warm up.
	if want := (3 + 501) * len(msg); got != want {
		t.Errorf("received %d bytes, want %d", got, want)
	}
}

// Without acks a slow subscriber misses messages, and every miss is counted:
// received + dropped accounts for every message sent.
func TestFireAndForgetDropsAreCounted(t *testing.T) {
	for _, zc := range []bool{false, true} {
		t.Run(map[bool]string{false: "copy", true: "zerocopy"}[zc], func(t *testing.T) { testDrops(t, zc) })
	}
}

func testDrops(t *testing.T, zeroCopy bool) {
	cfg, _ := newConfig(t)
	s, err := core.NewSubscriber("drops", &core.SubscriberOptions{Config: cfg, QueueSize: 1, ZeroCopy: zeroCopy})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := core.NewPublisher("drops", &core.PublisherOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 2000
	for i := 0; i < n; i++ {
		if err := p.Send(ctx, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var received, dropped uint64
	var last uint64
	for last < n {
		m, err := s.Receive(ctx)
		if err != nil {
			t.Fatalf("after %d received, %d dropped (last clock %d): %v", received, dropped, last, err)
		}
		if m.Clock <= last {
			t.Fatalf("clock went from %d to %d", last, m.Clock)
		}
		received++
		dropped += m.Dropped
		if m.Clock-last-1 > m.Dropped {
			t.Fatalf("clock %d after %d but only %d reported dropped", m.Clock, last, m.Dropped)
		}
		last = m.Clock
	}
	st := s.Stats()
	if received+dropped != n || st.Received != received || st.Dropped != dropped {
		t.Fatalf("received %d + dropped %d != sent %d (stats %+v)", received, dropped, n, st)
	}
	if dropped == 0 {
		t.Fatalf("a subscriber with a 1-message queue that read nothing during %d sends dropped nothing", n)
	}
}

func TestOnlyNewSkipsHistory(t *testing.T) {
	for _, zc := range []bool{false, true} {
		t.Run(map[bool]string{false: "copy", true: "zerocopy"}[zc], func(t *testing.T) {
			cfg, _ := newConfig(t)
			p, err := core.NewPublisher("fresh", &core.PublisherOptions{Config: cfg, AckTimeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// Make sure this process observes the publisher (a first
			// subscriber) so that the history is in place.
			first, err := core.NewSubscriber("fresh", &core.SubscriberOptions{Config: cfg})
			if err != nil {
				t.Fatal(err)
			}
			defer first.Close()
			if err := p.Send(ctx, []byte("old")); err != nil {
				t.Fatal(err)
			}
			if m, err := first.Receive(ctx); err != nil || string(m.Data) != "old" {
				t.Fatalf("first subscriber: %q %v", m.Data, err)
			}
			s, err := core.NewSubscriber("fresh", &core.SubscriberOptions{Config: cfg, OnlyNew: true, ZeroCopy: zc})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			short, cancel2 := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel2()
			if m, err := s.Receive(short); err == nil {
				t.Fatalf("OnlyNew subscriber received %q, published before it existed", m.Data)
			}
			go p.Send(ctx, []byte("new"))
			m, err := s.Receive(ctx)
			if err != nil || string(m.Data) != "new" || m.Dropped != 0 {
				t.Fatalf("OnlyNew subscriber: %q dropped %d, %v; want \"new\"", m.Data, m.Dropped, err)
			}
		})
	}
}

func TestTopicsShowLiveCounters(t *testing.T) {
	cfg, _ := newConfig(t)
	n, err := core.OpenNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	p, err := n.NewPublisher("counted", &core.PublisherOptions{Type: "text", DiscoveryWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := 0; i < 3; i++ {
		if err := p.Send(context.Background(), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	ti, ok := n.Topic("counted")
	if !ok || len(ti.Publishers) != 1 || ti.Type != "text" {
		t.Fatalf("Topic = %+v, %v", ti, ok)
	}
	if got := ti.Publishers[0].Sent; got != 3 {
		t.Fatalf("own publisher's Sent = %d right after 3 sends, want 3", got)
	}
	found := false
	for _, x := range n.Topics() {
		if x.Name == "counted" && len(x.Publishers) == 1 && x.Publishers[0].Sent == 3 {
			found = true
		}
	}
	if !found {
		t.Fatalf("Topics() lacks the topic with live counters: %+v", n.Topics())
	}
}

func TestChecksum(t *testing.T) {
	for _, zc := range []bool{false, true} {
		t.Run(map[bool]string{false: "copy", true: "zerocopy"}[zc], func(t *testing.T) {
			cfg, _ := newConfig(t)
			n, err := core.OpenNode(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			p, err := n.NewPublisher("summed", &core.PublisherOptions{Checksum: true, DiscoveryWait: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			data := []byte("payload with a checksum")
			if err := p.Send(ctx, data); err != nil {
				t.Fatal(err)
			}
			s, err := n.NewSubscriber("summed", &core.SubscriberOptions{VerifyChecksum: true, ZeroCopy: zc})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			m, err := s.Receive(ctx)
			if err != nil || !bytes.Equal(m.Data, data) {
				t.Fatalf("Receive: %q %v", m.Data, err)
			}
			if want := uint64(crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))); m.Hash != want {
				t.Fatalf("Hash = %#x, want CRC-32C %#x", m.Hash, want)
			}

			// Corrupt the next message's payload in shared memory behind
			// the publisher's back: a verifying subscriber drops it.
			ti, _ := n.Topic("summed")
			mf, err := memfile.Open(ti.Publishers[0].MemFiles[0], false)
			if err != nil {
				t.Fatal(err)
			}
			defer mf.Close()
			if err := p.Send(ctx, data); err != nil {
				t.Fatal(err)
			}
			_, view, err := mf.Read()
			if err != nil {
				t.Fatal(err)
			}
			view[0] ^= 0xff
			late, err := n.NewSubscriber("summed", &core.SubscriberOptions{VerifyChecksum: true, ZeroCopy: zc})
			if err != nil {
				t.Fatal(err)
			}
			defer late.Close()
			if _, err := late.Receive(ctx); !errors.Is(err, core.ErrChecksum) {
				t.Fatalf("Receive of a corrupted message: %v, want ErrChecksum", err)
			}
			if st := late.Stats(); st.ChecksumErrors != 1 || st.Dropped != 1 {
				t.Fatalf("stats after a corrupted message: %+v", st)
			}
		})
	}
}
