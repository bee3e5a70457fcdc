package core_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/shm"
	"github.com/shmfs/shmfs/internal/testutil"
)

func init() {
	children["sub"] = childSub
	children["pub"] = childPub
	children["watchpubs"] = childWatchPubs
	children["pubstay"] = childPubStay
}

// childSub: args topic count pubs copy|zc [subscribers]. Receives count
// messages from pubs publishers (with each of the given number of
// subscribers, default 1), checks that each publisher's sequence numbers
// arrive in order with no gap, and prints "done <n> <sha256 of all
// payloads>" per subscriber.
func childSub(args []string) int {
	a := testutil.ChildArgs(args)
	topic, count, pubs, zc := a[0], atoi(a[1]), atoi(a[2]), a[3] == "zc"
	nsubs := 1
	if len(a) > 4 {
		nsubs = atoi(a[4])
	}
	ctx, subs, done, err := childSubscribers(topic, nsubs, &core.SubscriberOptions{ZeroCopy: zc}, 2*time.Minute)
	if err != nil {
		return fail("%v", err)
	}
	defer done()
	fmt.Println("ready")
	results := make(chan string, nsubs)
	for _, s := range subs {
		go func() { results <- receiveAll(ctx, s, count, pubs) }()
	}
	for range subs {
		fmt.Println(<-results)
	}
	return 0
}

// receiveAll takes count messages from s, checks their order per
// publisher, and returns "done <n> <sha256>" or what went wrong.
func receiveAll(ctx context.Context, s *core.Subscriber, count, pubs int) string {
	next := map[uint64]uint64{}
	h := sha256.New()
	for i := 0; i < count; i++ {
		err := s.ReceiveFunc(ctx, func(hd core.Header, view []byte) error {
			if len(view) < 8 {
				return fmt.Errorf("message %d: %d bytes", i, len(view))
			}
			seq := binary.LittleEndian.Uint64(view)
			if seq != next[hd.Publisher] || hd.Dropped != 0 {
				return fmt.Errorf("publisher %x: got seq %d (dropped %d), want %d", hd.Publisher, seq, hd.Dropped, next[hd.Publisher])
			}
			next[hd.Publisher] = seq + 1
			h.Write(view)
			return nil
		})
		if err != nil {
			return fmt.Sprintf("error at %d: %v", i, err)
		}
	}
	if len(next) != pubs {
		return fmt.Sprintf("heard %d publishers, want %d", len(next), pubs)
	}
	if st := s.Stats(); st.Dropped != 0 {
		return fmt.Sprintf("dropped %d", st.Dropped)
	}
	return fmt.Sprintf("done %d %s", count, hex.EncodeToString(h.Sum(nil)))
}

// childPub: args topic count sizes ackTimeout [window]. Sends count
// messages whose sizes cycle through the comma-separated sizes, then exits
// at once (Close flushes).
func childPub(args []string) int {
	a := testutil.ChildArgs(args)
	topic, count := a[0], atoi(a[1])
	var sizes []int
	for _, s := range strings.Split(a[2], ",") {
		sizes = append(sizes, atoi(s))
	}
	ack, err := time.ParseDuration(a[3])
	if err != nil {
		return fail("ack timeout: %v", err)
	}
	o := &core.PublisherOptions{AckTimeout: ack}
	if len(a) > 4 {
		o.Window = atoi(a[4])
	}
	n, err := childNode()
	if err != nil {
		return fail("OpenNode: %v", err)
	}
	defer n.Close()
	p, err := n.NewPublisher(topic, o)
	if err != nil {
		return fail("NewPublisher: %v", err)
	}
	fmt.Println("ready")
	id := p.ID()
	for i := 0; i < count; i++ {
		if err := p.Send(context.Background(), payload(id, uint64(i), sizes[i%len(sizes)])); err != nil {
			return fail("Send %d: %v", i, err)
		}
	}
	if err := p.Close(); err != nil {
		return fail("Close: %v", err)
	}
	fmt.Printf("sent %d\n", count)
	return 0
}

// childWatchPubs subscribes to a topic and prints "publishers=N" whenever the
// number of connected publishers changes, and "msg <seq>" per message.
func childWatchPubs(args []string) int {
	a := testutil.ChildArgs(args)
	ctx, subs, done, err := childSubscribers(a[0], 1, nil, time.Minute)
	if err != nil {
		return fail("%v", err)
	}
	defer done()
	s := subs[0]
	go func() {
		last := -1
		for {
			if n := s.Stats().Publishers; n != last {
				fmt.Printf("publishers=%d\n", n)
				last = n
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	for {
		m, err := s.Receive(ctx)
		if err != nil {
			return 0
		}
		fmt.Printf("msg %d\n", binary.LittleEndian.Uint64(m.Data))
	}
}

// childPubStay: args topic [type]. Publishes one message, prints "sent",
// then waits to be killed.
func childPubStay(args []string) int {
	a := testutil.ChildArgs(args)
	o := &core.PublisherOptions{AckTimeout: time.Second}
	if len(a) > 1 {
		o.Type = a[1]
	}
	n, err := childNode()
	if err != nil {
		return fail("OpenNode: %v", err)
	}
	defer n.Close()
	p, err := n.NewPublisher(a[0], o)
	if err != nil {
		return fail("NewPublisher: %v", err)
	}
	if err := p.Send(context.Background(), payload(p.ID(), 0, 64)); err != nil {
		return fail("Send: %v", err)
	}
	fmt.Println("sent")
	time.Sleep(time.Minute)
	return 1
}

// expectedSum is the checksum receiveAll returns for one publisher's
// messages.
func expectedSum(pubID uint64, count int, sizes []int) string {
	h := sha256.New()
	for i := 0; i < count; i++ {
		h.Write(payload(pubID, uint64(i), sizes[i%len(sizes)]))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// expectDone reads n "done" lines (one per subscriber) from c, waits for it
// to exit, and checks them against want.
func expectDone(t *testing.T, c *testutil.Child, n int, want string) {
	t.Helper()
	for i := 0; i < n; i++ {
		if got := c.Line(t, 120*time.Second); got != want {
			t.Errorf("subscriber %d: %q, want %q", i, got, want)
		}
	}
	if err := c.Wait(t, 10*time.Second); err != nil {
		t.Errorf("subscriber process: %v", err)
	}
}

func TestOnePublisherFourSubscriberProcessesAck(t *testing.T) {
	n, e := openNode(t)
	count := 100000
	if testing.Short() {
		count = 5000
	}
	var subs []*testutil.Child
	for i := 0; i < 4; i++ {
		c := testutil.StartChild(t, "sub", e, "fanout", strconv.Itoa(count), "1", "copy")
		c.Expect(t, "ready", 10*time.Second)
		subs = append(subs, c)
	}
	p, err := n.NewPublisher("fanout", &core.PublisherOptions{AckTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sizes := []int{64, 100, 1000}
	ctx := testCtx(t, 2*time.Minute)
	for i := 0; i < count; i++ {
		if err := p.Send(ctx, payload(p.ID(), uint64(i), sizes[i%len(sizes)])); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	want := fmt.Sprintf("done %d %s", count, expectedSum(p.ID(), count, sizes))
	for _, c := range subs {
		expectDone(t, c, 1, want)
	}
	if st := p.Stats(); st.AckTimeouts != 0 || st.Sent != uint64(count) {
		t.Errorf("stats %+v", st)
	}
}

func TestSizesUpTo16MiBAck(t *testing.T) {
	n, e := openNode(t)
	// A stream that jumps from 64 B to 16 MiB and back, through sizes between.
	sizes := []int{64, 4096, 65536, 1 << 20, 16 << 20, 64, 8 << 20, 100, 16 << 20, 64}
	count := 2 * len(sizes)
	for _, mode := range []string{"copy", "zc"} {
		t.Run(mode, func(t *testing.T) {
			c := testutil.StartChild(t, "sub", e, "sizes-"+mode, strconv.Itoa(count), "1", mode)
			c.Expect(t, "ready", 10*time.Second)
			p, err := n.NewPublisher("sizes-"+mode, &core.PublisherOptions{AckTimeout: 10 * time.Second, Window: 4})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			for i := 0; i < count; i++ {
				if err := p.Send(testCtx(t, time.Minute), payload(p.ID(), uint64(i), sizes[i%len(sizes)])); err != nil {
					t.Fatalf("Send %d (%d bytes): %v", i, sizes[i%len(sizes)], err)
				}
			}
			expectDone(t, c, 1, fmt.Sprintf("done %d %s", count, expectedSum(p.ID(), count, sizes)))
			if p.Stats().Grows == 0 {
				t.Error("memory file never grew")
			}
		})
	}
}

// A subscriber that runs before a publisher gets every message, even when
// the publisher exits right after its last Send (Close flushes).
func TestSubscriberFirstThenShortLivedPublisher(t *testing.T) {
	_, e := newConfig(t)
	sub := testutil.StartChild(t, "watchpubs", e, "early")
	sub.Expect(t, "publishers=0", 10*time.Second)
	pub := testutil.StartChild(t, "pub", e, "early", "3", "64", "1s")
	if err := pub.Wait(t, 20*time.Second); err != nil {
		t.Fatalf("publisher: %v\n%s", err, pub.Output())
	}
	for i := 0; i < 3; i++ {
		sub.Expect(t, fmt.Sprintf("msg %d", i), 10*time.Second)
	}
	stopChild(t, sub)
}

func TestThreePublisherProcessesOneSubscriber(t *testing.T) {
	_, e := newConfig(t)
	const per = 2000
	sub := testutil.StartChild(t, "sub", e, "fanin", strconv.Itoa(3*per), "3", "copy")
	sub.Expect(t, "ready", 10*time.Second)
	var pubs []*testutil.Child
	for i := 0; i < 3; i++ {
		pubs = append(pubs, testutil.StartChild(t, "pub", e, "fanin", strconv.Itoa(per), "64,200", "5s", "8"))
	}
	for i, p := range pubs {
		if err := p.Wait(t, 60*time.Second); err != nil {
			t.Fatalf("publisher %d: %v", i, err)
		}
	}
	got := sub.Line(t, 30*time.Second)
	if !strings.HasPrefix(got, fmt.Sprintf("done %d ", 3*per)) {
		t.Fatalf("subscriber: %q", got)
	}
}

// A subscriber process killed mid-stream costs the publisher no ack
// timeout: the publisher sees it dead within an ack slice.
func TestKilledSubscriberDoesNotSlowAcks(t *testing.T) {
	n, e := openNode(t)
	victim := testutil.StartChild(t, "sub", e, "victim", "1000000", "1", "copy")
	victim.Expect(t, "ready", 10*time.Second)
	survivor := testutil.StartChild(t, "watchpubs", e, "victim")
	survivor.Expect(t, "publishers=0", 10*time.Second)
	// A window of 4: the publisher waits for the victim every few messages.
	p, err := n.NewPublisher("victim", &core.PublisherOptions{AckTimeout: 3 * time.Second, Window: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := testCtx(t, time.Minute)
	for i := 0; i < 50; i++ {
		if err := p.Send(ctx, payload(p.ID(), uint64(i), 64)); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	if s := p.Stats().Subscribers; s != 2 {
		t.Fatalf("connected subscriber processes = %d, want 2", s)
	}
	victim.Kill()
	for i := 50; i < 100; i++ {
		if err := p.Send(ctx, payload(p.ID(), uint64(i), 64)); err != nil {
			t.Fatalf("Send %d after the kill: %v", i, err)
		}
	}
	if n := p.Stats().AckTimeouts; n != 0 {
		t.Fatalf("%d ack waits timed out after a subscriber died; want 0", n)
	}
	survivor.Expect(t, "msg 99", 10*time.Second)
	stopChild(t, survivor)
	// The victim's bell and ack event stay until a sweep: it could not
	// remove them.
	if _, err := shm.Sweep(n.Config().Domain, false); err != nil {
		t.Fatal(err)
	}
}

func TestPublisherKilledAndRestarted(t *testing.T) {
	cfg, e := newConfig(t)
	sub := testutil.StartChild(t, "watchpubs", e, "restart")
	sub.Expect(t, "publishers=0", 10*time.Second)
	for round := 0; round < 2; round++ {
		pub := testutil.StartChild(t, "pubstay", e, "restart")
		sub.Expect(t, "publishers=1", 10*time.Second)
		sub.Expect(t, "msg 0", 10*time.Second)
		pub.Kill()
		sub.Expect(t, "publishers=0", 10*time.Second)
	}
	// The subscriber removes the ack event it made for the dead publisher.
	defer stopChild(t, sub)
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		for _, n := range testutil.ShmObjects(cfg.Domain) {
			if strings.HasSuffix(n, "_ack") {
				return fmt.Errorf("ack event %s for the killed publisher still there", n)
			}
		}
		return nil
	})
	// The killed publisher could not remove its memory file; a sweep finds
	// exactly that. (The first round's was swept when the second publisher
	// started.)
	stale, err := shm.Sweep(cfg.Domain, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) != 1 || stale[0].Kind != shm.KindMemfile {
		t.Fatalf("sweep after the kill removed %+v, want one memory file", stale)
	}
}
