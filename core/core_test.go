package core_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/shm"
	"github.com/shmfs/shmfs/internal/testutil"
)

func TestMain(m *testing.M) {
	if !testutil.IsChild() {
		// The godoc examples use the package-level API without a port:
		// give them a private one, so that they cannot talk to another
		// test run or a real shmfs on this host.
		if c, err := net.ListenPacket("udp4", "127.0.0.1:0"); err == nil {
			os.Setenv("SHMFS_PORT", strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port))
			c.Close()
		}
	}
	children := map[string]func([]string) int{
		"sub":       childSub,
		"pub":       childPub,
		"watchpubs": childWatchPubs,
		"pubstay":   childPubStay,
	}
	for k, v := range benchChildren {
		children[k] = v
	}
	testutil.Main(m, children)
}

// env carries a test's domain and port to its children.
func env(domain string, port int) []string {
	return []string{"SHMFS_DOMAIN=" + domain, "SHMFS_PORT=" + strconv.Itoa(port)}
}

// testConfig is the Config of a test or child: domain and port from env.
func testConfig() core.Config {
	return core.Config{Refresh: 200 * time.Millisecond, Timeout: 2 * time.Second}
}

func newConfig(t *testing.T) (core.Config, []string) {
	d, p := testutil.Domain(t), testutil.Port(t)
	c := testConfig()
	c.Domain, c.Port = d, p
	return c, env(d, p)
}

// payload fills a message of size bytes for (publisher, seq): the first 8
// bytes hold seq, the rest a pattern derived from both.
func payload(pub, seq uint64, size int) []byte {
	b := make([]byte, size)
	if size >= 8 {
		binary.LittleEndian.PutUint64(b, seq)
	}
	x := pub*0x9e3779b97f4a7c15 + seq
	for i := 8; i < size; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
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

// childSub: args topic count pubs zerocopy. Receives count messages in total
// from pubs publishers, checks that each publisher's sequence numbers arrive
// in order with no gap, and prints "done <n> <sha256 of all payloads>".
func childSub(args []string) int {
	a := testutil.ChildArgs(args)
	topic, count, pubs, zc := a[0], atoi(a[1]), atoi(a[2]), a[3] == "zc"
	s, err := core.NewSubscriber(topic, &core.SubscriberOptions{Config: testConfig(), ZeroCopy: zc, QueueSize: 256})
	if err != nil {
		return fail("NewSubscriber: %v", err)
	}
	defer s.Close()
	fmt.Println("ready")
	next := map[uint64]uint64{}
	h := sha256.New()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	for i := 0; i < count; i++ {
		m, err := s.Receive(ctx)
		if err != nil {
			return fail("Receive %d: %v", i, err)
		}
		if len(m.Data) < 8 {
			return fail("message %d: %d bytes", i, len(m.Data))
		}
		seq := binary.LittleEndian.Uint64(m.Data)
		if seq != next[m.Publisher] {
			return fail("publisher %x: got seq %d, want %d", m.Publisher, seq, next[m.Publisher])
		}
		next[m.Publisher] = seq + 1
		h.Write(m.Data)
	}
	if len(next) != pubs {
		return fail("heard %d publishers, want %d", len(next), pubs)
	}
	fmt.Printf("done %d %s\n", count, hex.EncodeToString(h.Sum(nil)))
	return 0
}

// childPub: args topic count sizes ackTimeout. Sends count messages whose
// sizes cycle through the comma-separated sizes, then exits at once.
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
	p, err := core.NewPublisher(topic, &core.PublisherOptions{Config: testConfig(), AckTimeout: ack})
	if err != nil {
		return fail("NewPublisher: %v", err)
	}
	defer p.Close()
	fmt.Println("ready")
	id := p.ID()
	for i := 0; i < count; i++ {
		if err := p.Send(context.Background(), payload(id, uint64(i), sizes[i%len(sizes)])); err != nil {
			return fail("Send %d: %v", i, err)
		}
	}
	fmt.Printf("sent %d\n", count)
	return 0
}

// childWatchPubs subscribes to a topic and prints "publishers=N" whenever the
// number of connected publishers changes, and "msg <seq>" per message.
func childWatchPubs(args []string) int {
	a := testutil.ChildArgs(args)
	s, err := core.NewSubscriber(a[0], &core.SubscriberOptions{Config: testConfig()})
	if err != nil {
		return fail("NewSubscriber: %v", err)
	}
	defer s.Close()
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
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		m, err := s.Receive(ctx)
		if err != nil {
			return 0
		}
		fmt.Printf("msg %d\n", binary.LittleEndian.Uint64(m.Data))
	}
}

// expectedSum is the checksum childSub prints for one publisher's messages.
func expectedSum(pubID uint64, count int, sizes []int) string {
	h := sha256.New()
	for i := 0; i < count; i++ {
		h.Write(payload(pubID, uint64(i), sizes[i%len(sizes)]))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestOnePublisherFourSubscribersAck(t *testing.T) {
	cfg, e := newConfig(t)
	const count = 100000
	if testing.Short() {
		t.Skip("100 000 messages through 4 processes")
	}
	var subs []*testutil.Child
	for i := 0; i < 4; i++ {
		c := testutil.StartChild(t, "sub", e, "fanout", strconv.Itoa(count), "1", "copy")
		c.Expect(t, "ready", 10*time.Second)
		subs = append(subs, c)
	}
	p, err := core.NewPublisher("fanout", &core.PublisherOptions{Config: cfg, AckTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sizes := []int{64, 100, 1000}
	for i := 0; i < count; i++ {
		if err := p.Send(context.Background(), payload(p.ID(), uint64(i), sizes[i%len(sizes)])); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	want := fmt.Sprintf("done %d %s", count, expectedSum(p.ID(), count, sizes))
	for i, c := range subs {
		if got := c.Line(t, 60*time.Second); got != want {
			t.Errorf("subscriber %d: %q, want %q", i, got, want)
		}
		if err := c.Wait(t, 10*time.Second); err != nil {
			t.Errorf("subscriber %d: %v", i, err)
		}
	}
	if st := p.Stats(); st.AckTimeouts != 0 || st.Sent != count {
		t.Errorf("stats %+v", st)
	}
}

func TestSizesUpTo16MiBAck(t *testing.T) {
	cfg, e := newConfig(t)
	// A stream that jumps from 64 B to 16 MiB and back, through sizes between.
	sizes := []int{64, 4096, 65536, 1 << 20, 16 << 20, 64, 8 << 20, 100, 16 << 20, 64}
	count := 2 * len(sizes)
	for _, mode := range []string{"copy", "zc"} {
		t.Run(mode, func(t *testing.T) {
			c := testutil.StartChild(t, "sub", e, "sizes-"+mode, strconv.Itoa(count), "1", mode)
			c.Expect(t, "ready", 10*time.Second)
			p, err := core.NewPublisher("sizes-"+mode, &core.PublisherOptions{Config: cfg, AckTimeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			for i := 0; i < count; i++ {
				if err := p.Send(context.Background(), payload(p.ID(), uint64(i), sizes[i%len(sizes)])); err != nil {
					t.Fatalf("Send %d (%d bytes): %v", i, sizes[i%len(sizes)], err)
				}
			}
			want := fmt.Sprintf("done %d %s", count, expectedSum(p.ID(), count, sizes))
			if got := c.Line(t, 60*time.Second); got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
			if p.Stats().Grows == 0 {
				t.Error("memory file never grew")
			}
		})
	}
}

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
}

func TestThreePublishersOneSubscriber(t *testing.T) {
	_, e := newConfig(t)
	const per = 2000
	sub := testutil.StartChild(t, "sub", e, "fanin", strconv.Itoa(3*per), "3", "copy")
	sub.Expect(t, "ready", 10*time.Second)
	var pubs []*testutil.Child
	for i := 0; i < 3; i++ {
		pubs = append(pubs, testutil.StartChild(t, "pub", e, "fanin", strconv.Itoa(per), "64,200", "5s"))
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

func TestKilledSubscriberDoesNotSlowAcks(t *testing.T) {
	cfg, e := newConfig(t)
	victim := testutil.StartChild(t, "sub", e, "victim", "1000000", "1", "copy")
	victim.Expect(t, "ready", 10*time.Second)
	survivor := testutil.StartChild(t, "watchpubs", e, "victim")
	survivor.Expect(t, "publishers=0", 10*time.Second)
	p, err := core.NewPublisher("victim", &core.PublisherOptions{Config: cfg, AckTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		if err := p.Send(ctx, payload(p.ID(), uint64(i), 64)); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	if s := p.Stats().Subscribers; s != 2 {
		t.Fatalf("connected subscribers = %d, want 2", s)
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
	// The subscriber removes the dead publisher's event pair for its process.
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		for _, n := range testutil.ShmObjects(cfg.Domain) {
			if strings.HasSuffix(n, "_snd") || strings.HasSuffix(n, "_ack") {
				return fmt.Errorf("event %s of the killed publisher still there", n)
			}
		}
		return nil
	})
	// The killed publisher could not remove its memory file and mutex; a
	// sweep finds exactly those.
	// (The first round's leftovers were swept when the second publisher
	// started.)
	stale, err := shm.Sweep(cfg.Domain, false)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[shm.Kind]int{}
	for _, s := range stale {
		kinds[s.Kind]++
	}
	if len(stale) != 2 || kinds[shm.KindMemfile] != 1 || kinds[shm.KindMutex] != 1 {
		t.Fatalf("sweep after the kill removed %+v, want one memory file and its mutex", stale)
	}
}

// childPubStay publishes one message and then waits to be killed.
func childPubStay(args []string) int {
	a := testutil.ChildArgs(args)
	p, err := core.NewPublisher(a[0], &core.PublisherOptions{Config: testConfig(), AckTimeout: time.Second})
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

func TestTypeMismatch(t *testing.T) {
	cfg, _ := newConfig(t)
	// A subscriber that asks for a type, before any publisher exists.
	early, err := core.NewSubscriber("typed", &core.SubscriberOptions{Config: cfg, Type: "text"})
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	p, err := core.NewPublisher("typed", &core.PublisherOptions{Config: cfg, Type: "json"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := early.Receive(ctx); !errors.Is(err, core.ErrTypeMismatch) || !strings.Contains(err.Error(), `"json"`) {
		t.Fatalf("Receive after a publisher of another type appeared: %v, want ErrTypeMismatch naming it", err)
	}
	if err := p.Send(ctx, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel2()
	if m, err := early.Receive(short); err == nil {
		t.Fatalf("subscriber of type text received %q from a json publisher", m.Data)
	}

	// A subscriber asking for another type than the publishers'.
	if _, err := core.NewSubscriber("typed", &core.SubscriberOptions{Config: cfg, Type: "protobuf:pkg.Msg"}); !errors.Is(err, core.ErrTypeMismatch) {
		t.Fatalf("NewSubscriber with another type: %v, want ErrTypeMismatch", err)
	}
	// A second publisher of another type.
	if _, err := core.NewPublisher("typed", &core.PublisherOptions{Config: cfg, Type: "text"}); !errors.Is(err, core.ErrTypeMismatch) {
		t.Fatalf("NewPublisher with another type: %v, want ErrTypeMismatch", err)
	}
	s, err := core.NewSubscriber("typed", &core.SubscriberOptions{Config: cfg, Type: "json"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestInvalidInput(t *testing.T) {
	cfg, _ := newConfig(t)
	for _, topic := range []string{"", "a/b", "..", "x\x00y", strings.Repeat("t", 300)} {
		if _, err := core.NewPublisher(topic, &core.PublisherOptions{Config: cfg}); !errors.Is(err, core.ErrInvalidTopic) {
			t.Errorf("NewPublisher(%q): %v, want ErrInvalidTopic", topic, err)
		}
	}
	if _, err := core.NewPublisher("t", &core.PublisherOptions{Config: cfg, BufferCount: -1}); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("BufferCount -1: %v", err)
	}
	p, err := core.NewPublisher("t", &core.PublisherOptions{Config: cfg, MaxMessageSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Send(context.Background(), make([]byte, 11)); !errors.Is(err, core.ErrTooLarge) {
		t.Errorf("Send too large: %v", err)
	}
	p.Close()
	if err := p.Send(context.Background(), nil); !errors.Is(err, core.ErrClosed) {
		t.Errorf("Send after Close: %v", err)
	}
}
