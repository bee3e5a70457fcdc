package bridge_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/shmfs/shmfs/bridge"
	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

// receiveN receives n messages and returns their payloads.
func receiveN(t *testing.T, sub *core.Subscriber, n int, d time.Duration) []core.Message {
	t.Helper()
	ctx := testCtx(t, d)
	out := make([]core.Message, 0, n)
	for len(out) < n {
		m, err := sub.Receive(ctx)
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(out), n, err)
		}
		out = append(out, m)
	}
	return out
}

// Bridges on both hosts, publishers and subscribers on both, plus a second
// bridge on host A: every subscriber gets each message exactly once, in
// order per publisher; the copies a second exporting bridge sends are
// dropped as duplicates; nothing comes back to where it started.
func TestNoLoopsNoDuplicates(t *testing.T) {
	t.Parallel()
	p := newPair(t, bridge.Config{}, bridge.Config{})
	a2 := startBridge(t, bridge.Config{Core: p.ca, Domain: p.ca.Domain, Name: "host-a", URL: p.a.URL()})
	const n = 500
	subs := map[string]*core.Subscriber{}
	pubs := map[string]*core.Publisher{}
	for host, node := range map[string]*core.Node{"a": p.na, "b": p.nb} {
		s, err := node.NewSubscriber("both", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		subs[host] = s
	}
	for host, node := range map[string]*core.Node{"a": p.na, "b": p.nb} {
		pub, err := node.NewPublisher("both", &core.PublisherOptions{AckTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pub.Close() })
		pubs[host] = pub
	}
	// Each publisher has its local subscriber and the exporters of the
	// bridges of its host (two on a).
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if a, b := p.a.Stats().Exports+a2.Stats().Exports, p.b.Stats().Exports; a < 2 || b < 1 {
			return fmt.Errorf("exports: a %d, b %d", a, b)
		}
		if p.b.Imported("both") != 1 || p.a.Imported("both")+a2.Imported("both") != 1 {
			return fmt.Errorf("imports: a %d+%d, b %d", p.a.Imported("both"), a2.Imported("both"), p.b.Imported("both"))
		}
		return nil
	})
	ctx := testCtx(t, 30*time.Second)
	for host, pub := range pubs {
		go func() {
			for i := 1; i <= n; i++ {
				if err := pub.SendWith(ctx, []byte(host+strconv.Itoa(i)), core.SendOptions{ID: int64(i)}); err != nil {
					t.Errorf("send %s%d: %v", host, i, err)
					return
				}
			}
		}()
	}
	// Both subscribers read at once (one that stops reading is set aside
	// while the bridges' subscribers in this process keep up).
	errs := make(chan error, len(subs))
	for host, sub := range subs {
		go func() {
			next := map[string]int{"a": 1, "b": 1}
			for i := 0; i < 2*n; i++ {
				m, err := sub.Receive(ctx)
				if err != nil {
					errs <- fmt.Errorf("subscriber on %s after %d messages: %w", host, i, err)
					return
				}
				from := string(m.Data[:1])
				if want := from + strconv.Itoa(next[from]); string(m.Data) != want || m.Dropped != 0 {
					errs <- fmt.Errorf("subscriber on %s: got %q (dropped %d), want %q", host, m.Data, m.Dropped, want)
					return
				}
				next[from]++
			}
			errs <- nil
		}()
	}
	for range subs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // a looping copy would come now
	for host, sub := range subs {
		if m, ok, _ := sub.TryReceive(); ok {
			t.Fatalf("subscriber on %s: extra message %q", host, m.Data)
		}
	}
	// Exporters send only their own host's messages: a on two bridges
	// (2n), b once (n); a loop would make them send what they imported.
	// The second bridge's copies may still be on their way: wait for them
	// (b drops them as duplicates), then the counts must be exact.
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		out := p.a.Stats().Total.MessagesOut + a2.Stats().Total.MessagesOut
		in := p.a.Stats().Total.MessagesIn + a2.Stats().Total.MessagesIn
		if dups, inB := p.b.Stats().Total.Duplicates, p.b.Stats().Total.MessagesIn; out < 2*n || dups < n || in < n || inB < n {
			return fmt.Errorf("a sent %d and published %d, b dropped %d duplicates and published %d", out, in, dups, inB)
		}
		return nil
	})
	if out := p.a.Stats().Total.MessagesOut + a2.Stats().Total.MessagesOut; out != 2*n {
		t.Errorf("host a's bridges sent %d messages, want %d", out, 2*n)
	}
	if out := p.b.Stats().Total.MessagesOut; out != n {
		t.Errorf("host b's bridge sent %d messages, want %d", out, n)
	}
	sb := p.b.Stats()
	if sb.Total.MessagesIn != n || sb.Total.Duplicates != n || sb.Total.Gaps != 0 {
		t.Errorf("bridge b (two exporters on a): %+v", sb.Total)
	}
	if in := p.a.Stats().Total.MessagesIn + a2.Stats().Total.MessagesIn; in != n {
		t.Errorf("host a imported %d messages, want %d", in, n)
	}
}

// A 16 MiB message arrives byte-identical, whole through the embedded
// server's default max_payload and split through a server that allows
// only 1 MiB.
func TestLargeMessages(t *testing.T) {
	t.Parallel()
	for _, maxPayload := range []int{0, 1 << 20} {
		t.Run(fmt.Sprint("max_payload=", maxPayload), func(t *testing.T) {
			t.Parallel()
			p := newPair(t, bridge.Config{MaxPayload: maxPayload}, bridge.Config{})
			sub, err := p.nb.NewSubscriber("big", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			pub, err := p.na.NewPublisher("big", &core.PublisherOptions{AckTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			waitLinked(t, pub)
			ctx := testCtx(t, 60*time.Second)
			msgs := make([][]byte, 3)
			for i := range msgs {
				msgs[i] = make([]byte, 16<<20-i)
				for j := range msgs[i] {
					msgs[i][j] = byte(rand.Uint32())
				}
				if err := pub.Send(ctx, msgs[i]); err != nil {
					t.Fatal(err)
				}
			}
			for i, m := range receiveN(t, sub, len(msgs), 60*time.Second) {
				if sha256.Sum256(m.Data) != sha256.Sum256(msgs[i]) || m.Dropped != 0 {
					t.Fatalf("message %d: %d bytes, dropped %d, differs", i, len(m.Data), m.Dropped)
				}
			}
		})
	}
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The bridge that runs the server stops mid-stream and comes back: the
// other bridge reconnects, the stream resumes in order, and what was
// published meanwhile is counted as a gap — by the bridge and, as
// Header.Dropped, by the subscriber.
func TestServerRestartGapCounted(t *testing.T) {
	t.Parallel()
	listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
	p := newPair(t, bridge.Config{Listen: listen}, bridge.Config{})
	sub, err := p.nb.NewSubscriber("stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	pub, err := p.na.NewPublisher("stream", &core.PublisherOptions{AckTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	waitLinked(t, pub)
	ctx := testCtx(t, 60*time.Second)
	send := func(from, to int) {
		for i := from; i <= to; i++ {
			if err := pub.Send(ctx, []byte(strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(1, 100)
	for i, m := range receiveN(t, sub, 100, 30*time.Second) {
		if string(m.Data) != strconv.Itoa(i+1) {
			t.Fatalf("before restart: %q at %d", m.Data, i)
		}
	}
	if err := p.a.Close(); err != nil {
		t.Fatal(err)
	}
	send(101, 150) // nobody exports these
	a := startBridge(t, bridge.Config{Core: p.ca, Domain: p.ca.Domain, Name: "host-a", Listen: listen})
	testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if s := p.b.Stats(); s.Reconnects == 0 || a.Stats().Exports == 0 {
			return fmt.Errorf("b reconnects %d, a exports %d", s.Reconnects, a.Stats().Exports)
		}
		return nil
	})
	send(151, 200)
	// The new exporter starts with the latest message (150), then 151...
	msgs := receiveN(t, sub, 51, 30*time.Second)
	var dropped uint64
	for i, m := range msgs {
		if string(m.Data) != strconv.Itoa(150+i) {
			t.Fatalf("after restart: %q, want %d", m.Data, 150+i)
		}
		dropped += m.Dropped
	}
	if dropped != 49 || p.b.Stats().Total.Gaps != 49 {
		t.Errorf("gap: subscriber dropped %d, bridge counted %d, want 49 (101..149)", dropped, p.b.Stats().Total.Gaps)
	}
	ti, _ := p.nb.Topic("stream")
	if len(ti.Publishers) != 1 || ti.Publishers[0].Dropped != 49 {
		t.Errorf("imported publisher does not show the gap: %+v", ti.Publishers)
	}
}

// Malformed messages on the bridge's subjects are dropped and counted;
// nothing is published locally and nothing panics.
func TestInvalidMessagesDropped(t *testing.T) {
	t.Parallel()
	p := newPair(t, bridge.Config{}, bridge.Config{})
	nc, err := nats.Connect(p.a.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	subj := p.b.Subject("x")
	good := nats.Header{"Shmfs-Bridge": {"00000000000000aa"}, "Shmfs-Origin": {"elsewhere"}, "Shmfs-Publisher": {"00000000000000bb"},
		"Shmfs-Type": {"raw"}, "Shmfs-Id": {"0"}, "Shmfs-Clock": {"1"}, "Shmfs-Time": {"0"}, "Shmfs-Sent": {"0"}}
	bad := []*nats.Msg{
		{Subject: subj, Data: []byte("no headers")},
		{Subject: subj + ".deeper", Header: good},
		{Subject: subj[:len(subj)-1] + "a%2", Header: good},
		{Subject: p.b.Subject("x"), Header: nats.Header{"Shmfs-Clock": {"-1"}}},
		{Subject: p.b.Subject("x"), Header: func() nats.Header {
			h := nats.Header{}
			for k, v := range good {
				h[k] = v
			}
			h["Shmfs-Part"], h["Shmfs-Size"] = []string{"1/2"}, []string{"10"}
			return h
		}()},
	}
	ctl := "shmfs." + bridge.EscapeToken(p.ca.Domain) + ".%bridge"
	for _, body := range []string{"{", `{"bridge":"zz"}`, `{"bridge":"1","host":"h","instance":"1","publishers":[{"id":"1","topic":"a/b"}]}`, string(bytes.Repeat([]byte("x"), 100))} {
		bad = append(bad, &nats.Msg{Subject: ctl, Data: []byte(body)})
	}
	for _, m := range bad {
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if s := p.b.Stats(); s.Invalid < 7 {
			return fmt.Errorf("invalid %d", s.Invalid)
		}
		return nil
	})
	// The split message's second part without its first is dropped too
	// (not counted as invalid: a lost first part looks the same).
	if ti, ok := p.nb.Topic("x"); ok {
		t.Errorf("topic x appeared: %+v", ti)
	}
	// A good message from an unknown host still works afterwards.
	if err := nc.PublishMsg(&nats.Msg{Subject: subj, Header: good, Data: []byte("ok")}); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if p.b.Stats().Total.MessagesIn != 1 {
			return fmt.Errorf("stats %+v", p.b.Stats().Total)
		}
		return nil
	})
}
