package core_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

func init() {
	children["monpub"] = childMonPub
}

// childMonPub: args topic. An ack-mode publisher (window 256): it sends
// "first", prints "one", and at each SIGUSR1 sends 1000 messages and
// prints "sent <subscribers> <ack-timeouts>"; it closes at SIGTERM.
func childMonPub(args []string) int {
	a := testutil.ChildArgs(args)
	usr := make(chan os.Signal, 1)
	signal.Notify(usr, syscall.SIGUSR1)
	ctx, _, p, done, err := childPublisher(a[0], &core.PublisherOptions{AckTimeout: time.Second, Window: 256}, time.Minute)
	if err != nil {
		return fail("%v", err)
	}
	defer done()
	if err := p.Send(ctx, []byte("first")); err != nil {
		return fail("Send: %v", err)
	}
	fmt.Println("one")
	for {
		select {
		case <-ctx.Done():
			return 0
		case <-usr:
		}
		for i := range 1000 {
			if err := p.Send(ctx, fmt.Appendf(nil, "m%d", i)); err != nil {
				return fail("Send: %v", err)
			}
		}
		st := p.Stats()
		fmt.Println("sent", st.Subscribers, st.AckTimeouts)
	}
}

// A Monitor reads the headers of another process's publisher without being
// a subscriber: nothing registered, nothing created in /dev/shm, never
// waited for; Follow hands out every header it can still read and counts
// the ones overwritten before it looked; Latest outlives the publisher.
func TestMonitorWatchesWithoutSubscribing(t *testing.T) {
	n, e := openNode(t)
	domain := n.Config().Domain
	m, err := n.Monitor("mon")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, ok := m.Latest(); ok {
		t.Fatal("Latest of a topic without publishers")
	}
	pub := testutil.StartChild(t, "monpub", e, "mon")
	pub.Expect(t, "one", 10*time.Second)
	objects := testutil.ShmObjects(domain)
	var first core.Header
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		h, ok := m.Latest()
		if !ok {
			return errors.New("Latest: none")
		}
		first = h
		return nil
	})
	if first.Clock != 1 || first.Size != len("first") || first.AckTimeout != time.Second || first.Publisher == 0 {
		t.Fatalf("Latest = %+v, want clock 1, size 5, ack timeout 1s", first)
	}
	if hs := m.Heads(); len(hs) != 1 || hs[0] != first {
		t.Fatalf("Heads = %+v, want [%+v]", hs, first)
	}
	var seen []core.Header
	m.Follow(func(h core.Header) { seen = append(seen, h) }) // clock 1 or nothing, as it connected before or after it
	seen = nil

	// 1000 messages in ack mode, more than the window, while the monitor
	// does not look: the publisher never waits for it.
	pub.Signal(syscall.SIGUSR1)
	if l := pub.Line(t, 10*time.Second); l != "sent 0 0" {
		t.Fatalf("publisher: %q, want \"sent 0 0\" (no subscriber process, no ack timeout)", l)
	}
	got := m.Follow(func(h core.Header) { seen = append(seen, h) })
	if got != len(seen) || got != 256 {
		t.Fatalf("Follow handed out %d headers (%d collected), want the 256 the ring still holds", got, len(seen))
	}
	if seen[0].Clock != 1001-255 || seen[0].Dropped != 1000-256 {
		t.Fatalf("first header after the burst: %+v, want clock %d with %d dropped", seen[0], 1001-255, 1000-256)
	}
	for i, h := range seen {
		if h.Clock != seen[0].Clock+uint64(i) || (i > 0 && h.Dropped != 0) || h.Publisher != first.Publisher {
			t.Fatalf("header %d: %+v", i, h)
		}
	}
	if got := m.Follow(func(core.Header) {}); got != 0 {
		t.Fatalf("Follow again handed out %d headers, want 0", got)
	}
	last := seen[len(seen)-1]
	if h, _ := m.Latest(); h != last {
		t.Fatalf("Latest = %+v, want %+v", h, last)
	}
	ti, _ := n.Topic("mon")
	if len(ti.Subscribers) != 0 {
		t.Fatalf("registration lists subscribers: %+v", ti.Subscribers)
	}
	if now := testutil.ShmObjects(domain); !slices.Equal(now, objects) {
		t.Fatalf("objects in /dev/shm changed while monitoring: %v, before %v", now, objects)
	}

	// The publisher goes: its newest header stays, its mapping does not.
	stopChild(t, pub)
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if hs := m.Heads(); len(hs) != 0 {
			return fmt.Errorf("Heads after the publisher closed: %+v", hs)
		}
		return nil
	})
	if h, ok := m.Latest(); !ok || h != last {
		t.Fatalf("Latest after the publisher closed = %+v %v, want %+v", h, ok, last)
	}
	m.Close()
	if _, ok := m.Latest(); ok {
		t.Fatal("Latest after Close")
	}
}

func TestMonitorInvalidTopic(t *testing.T) {
	n, _ := openNode(t)
	if _, err := n.Monitor("a/b"); !errors.Is(err, core.ErrInvalidTopic) {
		t.Fatalf("Monitor(\"a/b\"): %v, want ErrInvalidTopic", err)
	}
}

// Ready and Wait tell whether a message is waiting, consuming nothing.
func TestSubscriberReadyAndWait(t *testing.T) {
	n, _ := openNode(t)
	s, err := n.NewSubscriber("ready", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := n.NewPublisher("ready", &core.PublisherOptions{AckTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if s.Ready() {
		t.Fatal("Ready before any message")
	}
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait without a message: %v, want DeadlineExceeded", err)
	}
	woke := make(chan error, 1)
	go func() { woke <- s.Wait(testCtx(t, 10*time.Second)) }()
	if err := p.Send(testCtx(t, 5*time.Second), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := <-woke; err != nil {
		t.Fatalf("Wait: %v", err)
	}
	for range 2 { // looking twice consumes nothing
		if !s.Ready() {
			t.Fatal("not Ready with a message waiting")
		}
	}
	if m, ok, err := s.TryReceive(); !ok || err != nil || string(m.Data) != "x" {
		t.Fatalf("TryReceive: %q %v %v", m.Data, ok, err)
	}
	if s.Ready() {
		t.Fatal("Ready after the message was taken")
	}
	go func() { woke <- s.Wait(testCtx(t, 10*time.Second)) }()
	testutil.WaitGoroutines(t, 5*time.Second, "(*topicReader).wait", 1)
	s.Close()
	if err := <-woke; !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Wait after Close: %v, want ErrClosed", err)
	}
	if !s.Ready() {
		t.Fatal("a closed subscriber is not Ready (Receive returns at once)")
	}
}

// WouldWait says when a Send would wait for a subscriber a window behind.
func TestPublisherWouldWait(t *testing.T) {
	n, _ := openNode(t)
	s, err := n.NewSubscriber("ww", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := n.NewPublisher("ww", &core.PublisherOptions{AckTimeout: 5 * time.Second, Window: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := testCtx(t, 10*time.Second)
	for i := range 3 {
		if p.WouldWait() {
			t.Fatalf("WouldWait before message %d of a window of 4", i+1)
		}
		if err := p.Send(ctx, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if !p.WouldWait() {
		t.Fatal("WouldWait false: the 4th Send needs the 1st acknowledged, the subscriber read nothing")
	}
	if _, err := s.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if p.WouldWait() {
		t.Fatal("WouldWait after the subscriber took the 1st message")
	}
	ff, err := n.NewPublisher("ww2", &core.PublisherOptions{Window: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer ff.Close()
	if ff.WouldWait() {
		t.Fatal("WouldWait without ack mode")
	}
}
