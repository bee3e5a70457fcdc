package core_test

import (
	"errors"
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

// A subscriber that stops reading hurts only itself: the other subscribers,
// in its process or in others, keep getting every message in ack mode.

// Two subscribers in one process; one never reads. The other gets every
// message, the publisher is not held back past the window (no ack timeout):
// the stalled one is set aside within half the ack timeout. When it reads
// again it learns what it lost and counts again once it caught up.
func TestStalledSubscriberInSameProcessHurtsOnlyItself(t *testing.T) {
	n, _ := openNode(t)
	healthy, err := n.NewSubscriber("stall", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer healthy.Close()
	stalled, err := n.NewSubscriber("stall", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	p, err := n.NewPublisher("stall", &core.PublisherOptions{Window: 16, AckTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := testCtx(t, time.Minute)
	const count = 600
	got := make(chan string, 1)
	go func() { got <- receiveAll(ctx, healthy, count, 1) }()
	for i := 0; i < count; i++ {
		if err := p.Send(ctx, payload(p.ID(), uint64(i), 100)); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	if g, want := <-got, fmt.Sprintf("done %d %s", count, expectedSum(p.ID(), count, []int{100})); g != want {
		t.Fatalf("healthy subscriber: %q, want %q", g, want)
	}
	if st := p.Stats(); st.AckTimeouts != 0 {
		t.Errorf("the stalled subscriber made the publisher time out: %+v", st)
	}
	st := stalled.Stats()
	if !st.Lagging || st.Laggings == 0 {
		t.Fatalf("stalled subscriber not set aside: %+v", st)
	}
	// It reads again: its first message says how many it lost, and once it
	// caught up it is no longer lagging.
	m, err := stalled.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Dropped == 0 || m.Clock != m.Dropped+1 && m.Clock != m.Dropped+2 {
		t.Fatalf("first message of the stalled subscriber: clock %d, dropped %d", m.Clock, m.Dropped)
	}
	for m.Clock < count {
		if m, err = stalled.Receive(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if st := stalled.Stats(); st.Lagging || st.Received+st.Dropped != count {
		t.Fatalf("after catching up: %+v (received + dropped should be %d)", st, count)
	}
}

// A zero-copy callback that blocks is a stalled subscriber too; when it
// returns, ReceiveFunc reports that its view was overwritten meanwhile.
func TestBlockedZeroCopyCallbackHurtsOnlyItself(t *testing.T) {
	n, _ := openNode(t)
	healthy, err := n.NewSubscriber("block", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer healthy.Close()
	blocked, err := n.NewSubscriber("block", &core.SubscriberOptions{ZeroCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	defer blocked.Close()
	p, err := n.NewPublisher("block", &core.PublisherOptions{Window: 8, AckTimeout: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := testCtx(t, time.Minute)
	inside, release := make(chan struct{}), make(chan struct{})
	blockedErr := make(chan error, 1)
	go func() {
		blockedErr <- blocked.ReceiveFunc(ctx, func(h core.Header, view []byte) error {
			close(inside)
			<-release
			return nil
		})
	}()
	if err := p.Send(ctx, payload(p.ID(), 0, 100)); err != nil {
		t.Fatal(err)
	}
	<-inside
	const count = 200
	got := make(chan string, 1)
	go func() { got <- receiveAll(ctx, healthy, count, 1) }()
	for i := 1; i < count; i++ {
		if err := p.Send(ctx, payload(p.ID(), uint64(i), 100)); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	if g, want := <-got, fmt.Sprintf("done %d %s", count, expectedSum(p.ID(), count, []int{100})); g != want {
		t.Fatalf("healthy subscriber: %q, want %q", g, want)
	}
	close(release)
	if err := <-blockedErr; !errors.Is(err, core.ErrOverrun) {
		t.Fatalf("callback that blocked while its view was overwritten: %v, want ErrOverrun", err)
	}
	if st := p.Stats(); st.AckTimeouts != 0 {
		t.Errorf("the blocked callback made the publisher time out: %+v", st)
	}
}

func init() {
	children["stallsub"] = childStallSub
}

// childStallSub: args topic. A subscriber that prints "ready", then receives
// and prints "msg <seq> dropped <n>" per message until stopped.
func childStallSub(args []string) int {
	a := testutil.ChildArgs(args)
	ctx, subs, done, err := childSubscribers(a[0], 1, nil, 2*time.Minute)
	if err != nil {
		return fail("%v", err)
	}
	defer done()
	s := subs[0]
	fmt.Println("ready")
	for {
		m, err := s.Receive(ctx)
		if err != nil {
			return 0
		}
		fmt.Printf("msg %d dropped %d\n", m.Clock-1, m.Dropped)
	}
}

// A subscriber process that is stopped (SIGSTOP) costs the publisher one
// ack timeout; the healthy process gets every message; the stopped one,
// continued, learns what it lost.
func TestStoppedSubscriberProcessHurtsOnlyItself(t *testing.T) {
	n, e := openNode(t)
	const count = 300
	healthy := testutil.StartChild(t, "sub", e, "stop", strconv.Itoa(count), "1", "copy")
	healthy.Expect(t, "ready", 10*time.Second)
	stopped := testutil.StartChild(t, "stallsub", e, "stop")
	stopped.Expect(t, "ready", 10*time.Second)
	p, err := n.NewPublisher("stop", &core.PublisherOptions{Window: 16, AckTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := testCtx(t, time.Minute)
	if err := p.Send(ctx, payload(p.ID(), 0, 64)); err != nil {
		t.Fatal(err)
	}
	stopped.Expect(t, "msg 0 dropped 0", 10*time.Second)
	if err := stopped.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer stopped.Cmd.Process.Signal(syscall.SIGCONT)
	testutil.WaitStopped(t, stopped.Cmd.Process.Pid, 10*time.Second)
	for i := 1; i < count; i++ {
		if err := p.Send(ctx, payload(p.ID(), uint64(i), 64)); err != nil && !errors.Is(err, core.ErrAckTimeout) {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	expectDone(t, healthy, 1, fmt.Sprintf("done %d %s", count, expectedSum(p.ID(), count, []int{64})))
	if st := p.Stats(); st.AckTimeouts != 1 {
		t.Errorf("publisher stats %+v: want exactly one ack timeout (then the stopped process is skipped)", st)
	}
	if err := stopped.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// The window holds the last 16 messages: the continued subscriber gets
	// the oldest of them with the count of what it lost.
	stopped.Expect(t, fmt.Sprintf("msg %d dropped %d", count-16, count-17), 10*time.Second)
	stopped.Expect(t, fmt.Sprintf("msg %d dropped 0", count-1), 10*time.Second)
	stopChild(t, stopped)
}
