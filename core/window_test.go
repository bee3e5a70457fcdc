package core_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/shm"
	"github.com/shmfs/shmfs/internal/testutil"
)

// The window in ack mode: a publisher waits only when a subscriber process
// is W messages behind.

// With a subscriber that takes nothing, the first W-1 sends return at
// once and the W-th waits for the ack timeout; W = 1 is eCAL's handshake
// (every Send waits for its own acknowledgement).
func TestWindowBoundsUnacknowledgedMessages(t *testing.T) {
	for _, w := range []int{1, 4, 16} {
		t.Run(strconv.Itoa(w), func(t *testing.T) {
			n, _ := openNode(t)
			s, err := n.NewSubscriber("win", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			p, err := n.NewPublisher("win", &core.PublisherOptions{Window: w, AckTimeout: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx := testCtx(t, 10*time.Second)
			for i := 1; i < w; i++ {
				if err := p.Send(ctx, []byte("x")); err != nil {
					t.Fatalf("send %d of a window of %d: %v", i, w, err)
				}
			}
			if err := p.Send(ctx, []byte("x")); !errors.Is(err, core.ErrAckTimeout) {
				t.Fatalf("send %d of a window of %d to a subscriber that takes nothing: %v, want ErrAckTimeout", w, w, err)
			}
			if st := p.Stats(); st.AckTimeouts != 1 {
				t.Fatalf("stats %+v", st)
			}
			// The lagging process is skipped until it catches up: the next
			// sends return at once.
			for i := 0; i < 2*w; i++ {
				if err := p.Send(ctx, []byte("y")); err != nil {
					t.Fatalf("send to a lagging process: %v", err)
				}
			}
			// It took nothing, so it lost all but the last window; the
			// first message it takes says so.
			m, err := s.Receive(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if sent := uint64(3 * w); m.Dropped+uint64(w) != sent || m.Clock != sent-uint64(w)+1 {
				t.Fatalf("first message after lagging: clock %d, dropped %d (sent %d, window %d)", m.Clock, m.Dropped, sent, w)
			}
		})
	}
}

// Flush returns once every subscriber process took every message: after it
// the subscriber has received them all.
func TestFlushWaitsForEveryAcknowledgement(t *testing.T) {
	n, _ := openNode(t)
	s, err := n.NewSubscriber("flush", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := n.NewPublisher("flush", &core.PublisherOptions{AckTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := testCtx(t, 10*time.Second)
	const count = 100 // below the default window: no Send waits
	for i := 0; i < count; i++ {
		if err := p.Send(ctx, []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		for i := 0; i < count; i++ {
			time.Sleep(100 * time.Microsecond) // a slowish reader
			if _, err := s.Receive(ctx); err != nil {
				return
			}
		}
	}()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Received; got != count {
		t.Fatalf("Flush returned when the subscriber had taken %d of %d", got, count)
	}
}

func init() {
	children["winsub"] = childWindowSub
}

// childWindowSub: args topic count. Receives until the message with
// sequence number count-1, checking every payload against its checksum and
// the order per publisher; prints "ok <n>" or the problem.
func childWindowSub(args []string) int {
	a := testutil.ChildArgs(args)
	topic, count := a[0], atoi(a[1])
	ctx, subs, done, err := childSubscribers(topic, 1, &core.SubscriberOptions{VerifyChecksum: true}, 2*time.Minute)
	if err != nil {
		return fail("%v", err)
	}
	defer done()
	fmt.Println("ready")
	fmt.Println(receiveAll(ctx, subs[0], count, 1))
	<-ctx.Done() // stay until stopped: the parent kills some of us
	return 0
}

// Ack mode with a window is lossless: four subscriber processes, random
// sizes from 64 B to 1 MiB, two of them SIGKILLed mid-stream; the two that
// live receive every message intact and in order.
func TestWindowLosslessWhileSubscribersDie(t *testing.T) {
	n, e := openNode(t)
	const count = 600
	var subs []*testutil.Child
	for i := 0; i < 4; i++ {
		c := testutil.StartChild(t, "winsub", e, "lossless", strconv.Itoa(count))
		c.Expect(t, "ready", 10*time.Second)
		subs = append(subs, c)
	}
	p, err := n.NewPublisher("lossless", &core.PublisherOptions{AckTimeout: 10 * time.Second, Window: 16, Checksum: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := make([]int, count)
	for i := range sizes {
		// Log-uniform between 64 B and 1 MiB.
		sizes[i] = int(64 * float64(1<<14) * rng.Float64() * rng.Float64() * rng.Float64())
		sizes[i] = max(sizes[i], 64)
	}
	ctx := testCtx(t, 2*time.Minute)
	for i := 0; i < count; i++ {
		if i == count/3 {
			subs[1].Kill()
		}
		if i == count/2 {
			subs[3].Kill()
		}
		if err := p.Send(ctx, payload(p.ID(), uint64(i), sizes[i])); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	want := fmt.Sprintf("done %d %s", count, expectedSum(p.ID(), count, sizes))
	for _, i := range []int{0, 2} {
		if got := subs[i].Line(t, time.Minute); got != want {
			t.Errorf("surviving subscriber %d: %q, want %q", i, got, want)
		}
		stopChild(t, subs[i])
	}
	if st := p.Stats(); st.AckTimeouts != 0 {
		t.Errorf("dead subscribers cost ack timeouts: %+v", st)
	}
	if _, err := shm.Sweep(n.Config().Domain, false); err != nil {
		t.Fatal(err)
	}
}
