package core_test

// Tests from a review of the publish/subscribe handshake (core). Each one
// states the behaviour it checks; the ones named in the review report fail
// until the bug they show is fixed.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

// openNode opens a node on a fresh domain and closes it at cleanup.
func openNode(t *testing.T) *core.Node {
	t.Helper()
	cfg, _ := newConfig(t)
	n, err := core.OpenNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Send racing Close must return ErrClosed, never panic: a Send that passed
// the closed check before Close and takes sendMu after it finds no buffers.
func TestReviewSendRacingCloseDoesNotPanic(t *testing.T) {
	n := openNode(t)
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
		time.Sleep(time.Millisecond)
		p.Close()
		wg.Wait()
		select {
		case f := <-fails:
			t.Fatalf("round %d: %s", round, f)
		default:
		}
	}
}

// In ack mode a connection that timed out is skipped only until it has
// caught up. With two buffers the ack value of buffer i only ever holds
// clocks sent to buffer i, so it never reaches clock-1 and the subscriber
// would be skipped for good: no back-pressure, silent losses.
func TestReviewAckLaggingRecoversWithTwoBuffers(t *testing.T) {
	n := openNode(t)
	ctx := testCtx(t, 10*time.Second)
	s, err := n.NewSubscriber("lag2", &core.SubscriberOptions{QueueSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := n.NewPublisher("lag2", &core.PublisherOptions{BufferCount: 2, AckTimeout: 200 * time.Millisecond, DiscoveryWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// Clock 1 fills the one-message queue; clock 2 cannot be queued, so its
	// ack times out and the connection lags.
	if err := p.Send(ctx, []byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := p.Send(ctx, []byte{2}); !errors.Is(err, core.ErrAckTimeout) {
		t.Fatalf("Send 2 into a full queue: %v, want ErrAckTimeout", err)
	}
	// The subscriber catches up: both messages, nothing dropped.
	for want := uint64(1); want <= 2; want++ {
		m, err := s.Receive(ctx)
		if err != nil || m.Clock != want || m.Dropped != 0 {
			t.Fatalf("Receive: clock %d dropped %d %v, want clock %d", m.Clock, m.Dropped, err, want)
		}
	}
	// Caught up: it must be waited for again. Clock 3 fills the queue, so
	// clock 4's ack must time out again (back-pressure), not be skipped.
	if err := p.Send(ctx, []byte{3}); err != nil {
		t.Fatalf("Send 3 to a subscriber that caught up: %v", err)
	}
	err = p.Send(ctx, []byte{4})
	if !errors.Is(err, core.ErrAckTimeout) {
		t.Fatalf("Send 4 into a full queue after the subscriber caught up: %v, want ErrAckTimeout "+
			"(the connection is still skipped as lagging; AckTimeouts = %d)", err, p.Stats().AckTimeouts)
	}
}

// A zero-copy view must stay valid until fn returns, even when the
// publisher closes meanwhile (the observer stops and unmaps the file).
func TestReviewZeroCopyViewOutlivesPublisherClose(t *testing.T) {
	n := openNode(t)
	ctx := testCtx(t, 10*time.Second)
	s, err := n.NewSubscriber("zcview", &core.SubscriberOptions{ZeroCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := n.NewPublisher("zcview", &core.PublisherOptions{DiscoveryWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ti, _ := n.Topic("zcview")
	if len(ti.Publishers) != 1 {
		t.Fatalf("topic: %+v", ti)
	}
	ino := inode(t, ti.Publishers[0].MemFiles[0])
	msg := payload(1, 1, 1<<16)
	if err := p.Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
	var fault any
	err = s.ReceiveFunc(ctx, func(h core.Header, view []byte) error {
		p.Close()
		// Wait (boundedly) until this process no longer maps the file.
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline) && mapped(t, ino); {
			time.Sleep(5 * time.Millisecond)
		}
		old := debug.SetPanicOnFault(true)
		defer debug.SetPanicOnFault(old)
		defer func() { fault = recover() }()
		for _, b := range view {
			viewSink += b
		}
		return nil
	})
	if fault != nil {
		t.Fatalf("reading the zero-copy view inside fn after the publisher closed: %v", fault)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// inode returns the inode number of the shared-memory object name.
func inode(t *testing.T, name string) uint64 {
	t.Helper()
	fi, err := os.Stat("/dev/shm/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// viewSink keeps reads of a view from being optimized away.
var viewSink byte

// mapped reports whether this process maps the /dev/shm file with inode ino
// (mappings show the name the file was created under, not its final name).
func mapped(t *testing.T, ino uint64) bool {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 6 && strings.HasPrefix(f[5], "/dev/shm/") && f[4] == strconv.FormatUint(ino, 10) {
			return true
		}
	}
	return false
}

// A zero-copy subscriber drops messages above its MaxMessageSize like a
// copy subscriber does: counted, not silently.
func TestReviewZeroCopyOversizeIsCounted(t *testing.T) {
	for _, zc := range []bool{false, true} {
		t.Run(map[bool]string{false: "copy", true: "zerocopy"}[zc], func(t *testing.T) {
			n := openNode(t)
			ctx := testCtx(t, 10*time.Second)
			s, err := n.NewSubscriber("big", &core.SubscriberOptions{ZeroCopy: zc, MaxMessageSize: 10})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			p, err := n.NewPublisher("big", &core.PublisherOptions{DiscoveryWait: -1, AckTimeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			recv := make(chan core.Message, 1)
			go func() {
				m, _ := s.Receive(ctx)
				recv <- m
			}()
			if err := p.Send(ctx, make([]byte, 20)); err != nil {
				t.Fatal(err)
			}
			if err := p.Send(ctx, []byte("small")); err != nil {
				t.Fatal(err)
			}
			m := <-recv
			if string(m.Data) != "small" {
				t.Fatalf("received %q", m.Data)
			}
			if st := s.Stats(); st.Dropped+m.Dropped == 0 {
				t.Fatalf("a 20-byte message to a subscriber with MaxMessageSize 10 was dropped without being counted: header %+v stats %+v", m.Header, st)
			}
		})
	}
}

// A zero-copy subscriber that verifies checksums counts one corrupted
// message once (the observer and the subscriber both check it).
func TestReviewZeroCopyChecksumErrorCountedOnce(t *testing.T) {
	n := openNode(t)
	ctx := testCtx(t, 10*time.Second)
	p, err := n.NewPublisher("crc", &core.PublisherOptions{Checksum: true, DiscoveryWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	msg := payload(7, 7, 256)
	if err := p.Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
	// Corrupt the payload in shared memory before any observer reads it.
	ti, _ := n.Topic("crc")
	corrupt(t, ti.Publishers[0].MemFiles[0], msg[8:40])
	s, err := n.NewSubscriber("crc", &core.SubscriberOptions{ZeroCopy: true, VerifyChecksum: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Receive(ctx); !errors.Is(err, core.ErrChecksum) {
		t.Fatalf("Receive of a corrupted message: %v, want ErrChecksum", err)
	}
	// Let any second report arrive.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = s.Receive(short)
	if st := s.Stats(); st.ChecksumErrors != 1 || st.Dropped != 1 || errors.Is(err, core.ErrChecksum) {
		t.Fatalf("one corrupted message: stats %+v, second Receive %v; want 1 checksum error, 1 dropped, one report", st, err)
	}
}

// corrupt flips the bytes of the first occurrence of pattern in the
// shared-memory object name.
func corrupt(t *testing.T, name string, pattern []byte) {
	t.Helper()
	path := "/dev/shm/" + name
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), string(pattern))
	if i < 0 {
		t.Fatalf("payload not found in %s", path)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{^b[i]}, int64(i)); err != nil {
		t.Fatal(err)
	}
}

// In ack mode the observer waits for zero-copy subscribers to consume a
// message before it acknowledges. A zero-copy subscriber whose IDs filter
// rejects the message never reads it and must not hold the ack back.
func TestReviewFilteredZeroCopySubscriberDoesNotHoldAck(t *testing.T) {
	n := openNode(t)
	ctx := testCtx(t, 10*time.Second)
	// idle takes only id 1 and never reads; reader takes everything.
	idle, err := n.NewSubscriber("ids", &core.SubscriberOptions{ZeroCopy: true, IDs: []int64{1}})
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	reader, err := n.NewSubscriber("ids", &core.SubscriberOptions{ZeroCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	p, err := n.NewPublisher("ids", &core.PublisherOptions{AckTimeout: 500 * time.Millisecond, DiscoveryWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	got := make(chan error, 1)
	go func() {
		m, err := reader.Receive(ctx)
		if err == nil && m.ID != 2 {
			err = fmt.Errorf("got id %d", m.ID)
		}
		got <- err
	}()
	if err := p.SendID(ctx, 2, []byte("for reader only")); err != nil {
		t.Fatalf("SendID 2 (the idle subscriber filters id 2 out): %v", err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// Closing a zero-copy subscriber while the observer waits for it to
// consume a message releases the ack at once, not at the ack timeout.
func TestReviewClosingZeroCopySubscriberReleasesAck(t *testing.T) {
	n := openNode(t)
	ctx := testCtx(t, 10*time.Second)
	idle, err := n.NewSubscriber("zcclose", &core.SubscriberOptions{ZeroCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	reader, err := n.NewSubscriber("zcclose", &core.SubscriberOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	p, err := n.NewPublisher("zcclose", &core.PublisherOptions{AckTimeout: time.Second, DiscoveryWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sent := make(chan error, 1)
	go func() { sent <- p.Send(ctx, []byte("m")) }()
	// reader has it: the observer now waits for idle.
	if _, err := reader.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	idle.Close()
	if err := <-sent; err != nil {
		t.Fatalf("Send whose only pending zero-copy subscriber closed: %v, want nil", err)
	}
}

// Fire and forget with two buffers: every message sent is either received
// or counted as dropped (the two observers race to deliver; a message
// overtaken by the next one must not vanish uncounted).
func TestReviewTwoBuffersEveryMessageReceivedOrCounted(t *testing.T) {
	n := openNode(t)
	ctx := testCtx(t, 20*time.Second)
	s, err := n.NewSubscriber("twobuf", &core.SubscriberOptions{QueueSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := n.NewPublisher("twobuf", &core.PublisherOptions{BufferCount: 2, DiscoveryWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const count = 5000
	type result struct{ received, dropped, last uint64 }
	done := make(chan result, 1)
	go func() {
		var r result
		for r.last < count {
			m, err := s.Receive(ctx)
			if err != nil {
				break
			}
			if m.Clock <= r.last {
				t.Errorf("clock %d after %d", m.Clock, r.last)
			}
			r.received++
			r.dropped += m.Dropped
			r.last = m.Clock
		}
		done <- r
	}()
	msg := make([]byte, 8<<10)
	for i := 0; i < count; i++ {
		if err := p.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	r := <-done
	if r.last != count {
		t.Fatalf("last clock received %d, want %d", r.last, count)
	}
	st := s.Stats()
	if r.received+r.dropped != count || st.Dropped != r.dropped {
		t.Fatalf("received %d + dropped %d = %d, sent %d (stats %+v): %d messages vanished uncounted",
			r.received, r.dropped, r.received+r.dropped, count, st, count-r.received-r.dropped)
	}
}

// Ack mode with several buffers, copy and zero-copy subscribers of one
// process, a publisher in the same process: every message arrives once, in
// order, with nothing dropped, while the file grows.
func TestReviewAckModeFourBuffersInOrder(t *testing.T) {
	n := openNode(t)
	ctx := testCtx(t, 30*time.Second)
	cp, err := n.NewSubscriber("ack4", &core.SubscriberOptions{QueueSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	zc, err := n.NewSubscriber("ack4", &core.SubscriberOptions{ZeroCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	defer zc.Close()
	p, err := n.NewPublisher("ack4", &core.PublisherOptions{BufferCount: 4, AckTimeout: 5 * time.Second, DiscoveryWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const count = 2000
	size := func(i int) int { return 16 + i*37%20000 }
	check := func(name string, recv func() (core.Header, []byte, error)) error {
		for i := 0; i < count; i++ {
			h, data, err := recv()
			if err != nil {
				return fmt.Errorf("%s: message %d: %w", name, i, err)
			}
			if h.Clock != uint64(i+1) || h.Dropped != 0 || string(data) != string(payload(3, uint64(i), size(i))) {
				return fmt.Errorf("%s: message %d: clock %d dropped %d, %d bytes", name, i, h.Clock, h.Dropped, len(data))
			}
		}
		return nil
	}
	errs := make(chan error, 2)
	go func() {
		errs <- check("copy", func() (core.Header, []byte, error) {
			m, err := cp.Receive(ctx)
			return m.Header, m.Data, err
		})
	}()
	go func() {
		errs <- check("zero-copy", func() (h core.Header, data []byte, err error) {
			err = zc.ReceiveFunc(ctx, func(hh core.Header, view []byte) error {
				h, data = hh, append([]byte(nil), view...)
				return nil
			})
			return h, data, err
		})
	}()
	for i := 0; i < count; i++ {
		if err := p.Send(ctx, payload(3, uint64(i), size(i))); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if st := p.Stats(); st.AckTimeouts != 0 || st.Grows == 0 {
		t.Fatalf("publisher stats %+v", st)
	}
}

// A subscriber closed while the observer is blocked on its full queue (ack
// back-pressure) releases the observer: the other subscriber of the process
// and the publisher go on without an ack timeout.
func TestReviewCloseSubscriberBlockingObserver(t *testing.T) {
	n := openNode(t)
	ctx := testCtx(t, 10*time.Second)
	stuck, err := n.NewSubscriber("bp", &core.SubscriberOptions{QueueSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	other, err := n.NewSubscriber("bp", &core.SubscriberOptions{QueueSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	p, err := n.NewPublisher("bp", &core.PublisherOptions{AckTimeout: 3 * time.Second, DiscoveryWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Send(ctx, []byte("1")); err != nil { // fills stuck's queue
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() { sent <- p.Send(ctx, []byte("2")) }()
	// Wait until the observer is blocked on stuck's queue, then close it.
	time.Sleep(50 * time.Millisecond)
	stuck.Close()
	if err := <-sent; err != nil {
		t.Fatalf("Send after the blocking subscriber closed: %v", err)
	}
	for _, want := range []string{"1", "2"} {
		if m, err := other.Receive(ctx); err != nil || string(m.Data) != want {
			t.Fatalf("other subscriber: %q %v, want %q", m.Data, err, want)
		}
	}
}

// Node.Close while a Send waits for an ack (held back by a full queue of a
// subscriber of the same node) and a Receive waits for a message: Close
// must not wait for the ack timeout, every call returns, and no shared
// memory is left (testutil.Domain checks at cleanup).
func TestReviewNodeCloseWithCallsInFlight(t *testing.T) {
	cfg, _ := newConfig(t)
	n, err := core.OpenNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 20*time.Second)
	full, err := n.NewSubscriber("inflight", &core.SubscriberOptions{QueueSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	zc, err := n.NewSubscriber("inflight-zc", &core.SubscriberOptions{ZeroCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	const ackTimeout = 4 * time.Second
	p, err := n.NewPublisher("inflight", &core.PublisherOptions{AckTimeout: ackTimeout, DiscoveryWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Send(ctx, []byte("fills the queue")); err != nil {
		t.Fatal(err)
	}
	results := make(chan error, 2)
	go func() { results <- p.Send(ctx, []byte("blocked")) }()
	go func() {
		_, err := zc.Receive(ctx)
		results <- err
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Node.Close: %v", err)
		}
	case <-time.After(ackTimeout / 2):
		t.Errorf("Node.Close still blocked after %v: it waits for the ack timeout of a Send in flight", ackTimeout/2)
		if err := <-closed; err != nil {
			t.Errorf("Node.Close: %v", err)
		}
		t.Logf("Node.Close returned after %v", time.Since(start).Round(time.Millisecond))
	}
	for i := 0; i < 2; i++ {
		select {
		case err := <-results:
			if err != nil && !errors.Is(err, core.ErrClosed) && !errors.Is(err, core.ErrAckTimeout) {
				t.Errorf("call in flight at Node.Close: %v", err)
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
	if err := full.Close(); err != nil {
		t.Errorf("Subscriber.Close after Node.Close: %v", err)
	}
}

// A zero-copy reader holding a view blocks the publisher's growth (shared
// lock) only while fn runs; the grown message then arrives intact.
func TestReviewGrowthWhileZeroCopyViewHeld(t *testing.T) {
	n := openNode(t)
	ctx := testCtx(t, 10*time.Second)
	s, err := n.NewSubscriber("grow", &core.SubscriberOptions{ZeroCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := n.NewPublisher("grow", &core.PublisherOptions{DiscoveryWait: -1, MinSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	small := payload(5, 0, 64)
	big := payload(5, 1, 4<<20)
	if err := p.Send(ctx, small); err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	err = s.ReceiveFunc(ctx, func(h core.Header, view []byte) error {
		go func() { sent <- p.Send(ctx, big) }()
		time.Sleep(50 * time.Millisecond) // the Send waits for our shared lock
		if string(view) != string(small) {
			return fmt.Errorf("view changed under the reader")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := s.ReceiveFunc(ctx, func(h core.Header, view []byte) error {
		got = append(got, view...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(big) || p.Stats().Grows == 0 {
		t.Fatalf("after growth: %d bytes (want %d), grows %d", len(got), len(big), p.Stats().Grows)
	}
}

// Many topics, each with a publisher and a subscriber in this process.
func TestReviewManyTopicsSameProcess(t *testing.T) {
	n := openNode(t)
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

// Publisher.Close racing the node's periodic counter announcement
// (Node.announceCounters -> Publisher.entity reads p.bufs, which close
// clears): must be free of data races (run with -race).
func TestReviewCloseRacingAnnounce(t *testing.T) {
	cfg, _ := newConfig(t)
	cfg.Refresh = time.Millisecond
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

// A panic in SendFunc's fill must not leave the memory file's mutex locked:
// the caller may recover, and a held lock would block every later Send of
// this publisher and every reader (in any process) for good.
func TestReviewPanicInFillReleasesLock(t *testing.T) {
	n := openNode(t)
	ctx := testCtx(t, 10*time.Second)
	p, err := n.NewPublisher("fillpanic", &core.PublisherOptions{DiscoveryWait: -1, LockTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	func() {
		defer func() { _ = recover() }()
		_ = p.SendFunc(ctx, 8, func([]byte) error { panic("fill failed") })
	}()
	if err := p.Send(ctx, []byte("after a recovered panic")); err != nil {
		t.Fatalf("Send after a panic in fill: %v", err)
	}
}

// A panic in a zero-copy ReceiveFunc callback must not leave the reader's
// shared lock held: the publisher could never write that file again.
func TestReviewPanicInZeroCopyCallbackReleasesLock(t *testing.T) {
	n := openNode(t)
	ctx := testCtx(t, 10*time.Second)
	s, err := n.NewSubscriber("cbpanic", &core.SubscriberOptions{ZeroCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := n.NewPublisher("cbpanic", &core.PublisherOptions{DiscoveryWait: -1, LockTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Send(ctx, []byte("one")); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() { _ = recover() }()
		_ = s.ReceiveFunc(ctx, func(core.Header, []byte) error { panic("callback failed") })
	}()
	if err := p.Send(ctx, []byte("two")); err != nil {
		t.Fatalf("Send after a panic in a zero-copy callback: %v", err)
	}
}

// A zero-copy subscriber of another type counts each ignored message once
// (the observer and the subscriber both evaluate accepts).
func TestReviewZeroCopyTypeMismatchCountedOnce(t *testing.T) {
	n := openNode(t)
	ctx := testCtx(t, 10*time.Second)
	s, err := n.NewSubscriber("typed-zc", &core.SubscriberOptions{ZeroCopy: true, Type: "text"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := n.NewPublisher("typed-zc", &core.PublisherOptions{DiscoveryWait: -1, Type: "json"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := s.Receive(ctx); !errors.Is(err, core.ErrTypeMismatch) {
		t.Fatalf("Receive: %v, want ErrTypeMismatch", err)
	}
	if err := p.Send(ctx, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := s.Receive(short); err == nil {
		t.Fatal("received a message of another type")
	}
	if st := s.Stats(); st.TypeMismatches != 1 {
		t.Fatalf("one message of another type: TypeMismatches = %d, want 1", st.TypeMismatches)
	}
}

// Header.Dropped counts messages "of this publisher" missed before this
// one. With two publishers and queue overflow, the messages evicted from the
// queue must be reported on a message of their own publisher: per
// publisher, received + reported dropped = newest clock received.
func TestReviewQueueOverflowDropsAttributedPerPublisher(t *testing.T) {
	n := openNode(t)
	ctx := testCtx(t, 10*time.Second)
	s, err := n.NewSubscriber("two-pubs", &core.SubscriberOptions{QueueSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var pubs []*core.Publisher
	for i := 0; i < 2; i++ {
		p, err := n.NewPublisher("two-pubs", &core.PublisherOptions{DiscoveryWait: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		pubs = append(pubs, p)
	}
	type acc struct{ received, dropped, last uint64 }
	got := map[uint64]*acc{pubs[0].ID(): {}, pubs[1].ID(): {}}
	for round := 0; round < 20; round++ {
		for i := 0; i < 3; i++ {
			for _, p := range pubs {
				if err := p.Send(ctx, []byte{byte(i)}); err != nil {
					t.Fatal(err)
				}
			}
		}
		for {
			short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			m, err := s.Receive(short)
			cancel()
			if err != nil {
				break
			}
			a := got[m.Publisher]
			a.received++
			a.dropped += m.Dropped
			a.last = m.Clock
		}
	}
	for id, a := range got {
		if a.received+a.dropped != a.last {
			t.Errorf("publisher %x: received %d + dropped %d != newest clock %d (its losses were reported on the other publisher's messages)",
				id, a.received, a.dropped, a.last)
		}
	}
}

// Node.Close stops every goroutine the node started (registration,
// observers, watch streams) and leaves no shared memory (testutil.Domain).
func TestReviewNodeCloseLeavesNoGoroutines(t *testing.T) {
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
		p, err := n.NewPublisher(topic, &core.PublisherOptions{BufferCount: 2, AckTimeout: time.Second, DiscoveryWait: -1})
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
// never panics, and creates no shared memory (testutil.Domain checks).
func TestReviewUseAfterNodeClose(t *testing.T) {
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
	if err := p.Send(ctx, []byte("x")); err != nil { // the observer has attached
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

// A publisher that closes while a subscriber process's observer is still
// attaching (creating its snd/ack pair) must not leave that pair in
// /dev/shm: nobody would ever remove it while the subscriber process lives.
func TestReviewPublisherCloseDuringAttachLeavesNoEvents(t *testing.T) {
	n := openNode(t)
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
			return fmt.Errorf("still observing %d closed publishers", c)
		}
		var events []string
		for _, o := range testutil.ShmObjects(n.Config().Domain) {
			if strings.HasSuffix(o, "_snd") || strings.HasSuffix(o, "_ack") {
				events = append(events, o)
			}
		}
		if len(events) > 0 {
			return fmt.Errorf("%d event objects of closed publishers left: %v", len(events), events)
		}
		return nil
	})
}
