package core_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

// Opening and closing: publishers, subscribers and nodes close cleanly at
// any moment, with calls in flight, and leave nothing behind
// (testutil.Domain checks /dev/shm at cleanup).

// Send racing Close returns ErrClosed, never panics.
func TestSendRacingClose(t *testing.T) {
	n, _ := openNode(t)
	ctx := testCtx(t, 20*time.Second)
	for round := 0; round < 20; round++ {
		p, err := n.NewPublisher("sendclose", &core.PublisherOptions{DiscoveryWait: -1, ConnectTimeout: -1})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Send(ctx, []byte("first")); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		fails := make(chan string, 16)
		start := make(chan struct{})
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					if r := recover(); r != nil {
						fails <- fmt.Sprintf("Send panicked: %v", r)
					}
				}()
				<-start
				for {
					err := p.Send(ctx, []byte("x"))
					if errors.Is(err, core.ErrClosed) {
						return
					}
					if err != nil {
						fails <- fmt.Sprintf("Send: %v", err)
						return
					}
				}
			}()
		}
		close(start)
		for p.Stats().Sent < 100 {
			runtime.Gosched()
		}
		p.Close()
		wg.Wait()
		select {
		case f := <-fails:
			t.Fatalf("round %d: %s", round, f)
		default:
		}
	}
}

// Node.Close while a Send waits for an acknowledgement (a subscriber of the
// same node that reads nothing, window 1) and a Receive waits for a
// message: Close does not wait for the ack timeout, every call returns.
func TestNodeCloseWithCallsInFlight(t *testing.T) {
	cfg, _ := newConfig(t)
	n, err := core.OpenNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 20*time.Second)
	if _, err := n.NewSubscriber("inflight", nil); err != nil {
		t.Fatal(err)
	}
	waiting, err := n.NewSubscriber("inflight-other", &core.SubscriberOptions{ZeroCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := n.NewPublisher("inflight", &core.PublisherOptions{AckTimeout: time.Minute, Window: 1, DiscoveryWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan error, 2)
	go func() { results <- p.Send(ctx, []byte("blocked")) }()
	go func() {
		_, err := waiting.Receive(ctx)
		results <- err
	}()
	testutil.WaitGoroutines(t, 5*time.Second, "core.(*link).awaitAck", 1)
	testutil.WaitGoroutines(t, 5*time.Second, "core.(*topicReader).wait", 1)
	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Node.Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Node.Close blocked: it waits for the ack timeout of a Send in flight")
	}
	for i := 0; i < 2; i++ {
		select {
		case err := <-results:
			if !errors.Is(err, core.ErrClosed) {
				t.Errorf("call in flight at Node.Close: %v, want ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a call in flight at Node.Close did not return")
		}
	}
	if err := p.Send(ctx, []byte("x")); !errors.Is(err, core.ErrClosed) {
		t.Errorf("Send after Node.Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Publisher.Close after Node.Close: %v", err)
	}
	if err := waiting.Close(); err != nil {
		t.Errorf("Subscriber.Close after Node.Close: %v", err)
	}
}

// Many topics, each with a publisher and a subscriber in this process.
func TestManyTopicsSameProcess(t *testing.T) {
	n, _ := openNode(t)
	ctx := testCtx(t, 20*time.Second)
	const topics = 40
	var subs []*core.Subscriber
	var pubs []*core.Publisher
	for i := 0; i < topics; i++ {
		name := fmt.Sprintf("many-%d", i)
		s, err := n.NewSubscriber(name, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		p, err := n.NewPublisher(name, &core.PublisherOptions{AckTimeout: 2 * time.Second, DiscoveryWait: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		subs, pubs = append(subs, s), append(pubs, p)
	}
	for round := 0; round < 5; round++ {
		for i, p := range pubs {
			if err := p.Send(ctx, []byte(fmt.Sprintf("%d/%d", i, round))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, s := range subs {
		for round := 0; round < 5; round++ {
			m, err := s.Receive(ctx)
			if want := fmt.Sprintf("%d/%d", i, round); err != nil || string(m.Data) != want {
				t.Fatalf("topic %d: %q %v, want %q", i, m.Data, err, want)
			}
		}
	}
}

// Publisher.Close racing the node's periodic counter announcement must be
// free of data races (run with -race).
func TestCloseRacingAnnounce(t *testing.T) {
	cfg, _ := newConfig(t)
	cfg.Refresh = time.Millisecond
	cfg.Timeout = time.Second
	n, err := core.OpenNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for i := 0; i < 200; i++ {
		p, err := n.NewPublisher("announce", &core.PublisherOptions{DiscoveryWait: -1, ConnectTimeout: -1})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i%3) * 300 * time.Microsecond)
		p.Close()
	}
}

// Node.Close stops every goroutine the node started (registration, watch
// streams, Messages) and leaves no shared memory.
func TestNodeCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg, _ := newConfig(t)
	n, err := core.OpenNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 10*time.Second)
	for i := 0; i < 3; i++ {
		topic := fmt.Sprintf("leak-%d", i)
		s, err := n.NewSubscriber(topic, &core.SubscriberOptions{ZeroCopy: i == 1})
		if err != nil {
			t.Fatal(err)
		}
		_ = s.Messages(ctx)
		p, err := n.NewPublisher(topic, &core.PublisherOptions{AckTimeout: time.Second, DiscoveryWait: -1})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Send(ctx, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	changes, _ := n.Watch(16)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	for range changes { // the stream ends with the node
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if g := runtime.NumGoroutine(); g > before {
			return fmt.Errorf("%d goroutines after Node.Close, %d before OpenNode", g, before)
		}
		return nil
	})
}

// Every call on a closed node or entity returns ErrClosed (or nothing),
// never panics, and creates no shared memory.
func TestUseAfterNodeClose(t *testing.T) {
	cfg, _ := newConfig(t)
	n, err := core.OpenNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 5*time.Second)
	s, err := n.NewSubscriber("after", &core.SubscriberOptions{ZeroCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := n.NewPublisher("after", &core.PublisherOptions{DiscoveryWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Send(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.NewPublisher("after", nil); !errors.Is(err, core.ErrClosed) {
		t.Errorf("NewPublisher on a closed node: %v", err)
	}
	if _, err := n.NewSubscriber("after", nil); !errors.Is(err, core.ErrClosed) {
		t.Errorf("NewSubscriber on a closed node: %v", err)
	}
	if err := p.SendFunc(ctx, 4, func([]byte) error { return nil }); !errors.Is(err, core.ErrClosed) {
		t.Errorf("SendFunc after Node.Close: %v", err)
	}
	if err := p.Flush(ctx); !errors.Is(err, core.ErrClosed) && err != nil {
		t.Errorf("Flush after Node.Close: %v", err)
	}
	if err := s.ReceiveFunc(ctx, func(core.Header, []byte) error { return nil }); !errors.Is(err, core.ErrClosed) {
		t.Errorf("ReceiveFunc after Node.Close: %v", err)
	}
	if _, _, err := s.TryReceive(); !errors.Is(err, core.ErrClosed) {
		t.Errorf("TryReceive after Node.Close: %v", err)
	}
	_ = p.Stats()
	_ = s.Stats()
	_ = n.Topics()
	if c, _ := n.Watch(1); c != nil {
		if _, ok := <-c; ok {
			t.Error("Watch on a closed node delivered a change")
		}
	}
}

// Publishers that come and go while a subscriber runs: its process drops
// each feed and removes the ack event it made for it.
func TestClosedPublishersLeaveNoAckEvents(t *testing.T) {
	n, _ := openNode(t)
	s, err := n.NewSubscriber("attach", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 20; i++ {
		p, err := n.NewPublisher("attach", &core.PublisherOptions{DiscoveryWait: -1, ConnectTimeout: -1})
		if err != nil {
			t.Fatal(err)
		}
		p.Close()
	}
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if c := s.Stats().Publishers; c != 0 {
			return fmt.Errorf("still connected to %d closed publishers", c)
		}
		var acks []string
		for _, o := range testutil.ShmObjects(n.Config().Domain) {
			if strings.HasSuffix(o, "_ack") {
				acks = append(acks, o)
			}
		}
		if len(acks) > 0 {
			return fmt.Errorf("%d ack events of closed publishers left: %v", len(acks), acks)
		}
		return nil
	})
}

func TestTopicsShowLiveCounters(t *testing.T) {
	n, _ := openNode(t)
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
