package core_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/core/memfile"
	"github.com/shmfs/shmfs/internal/testutil"
)

// Receive semantics within one process: what a subscriber gets, in which
// order, and what it is told about what it missed.

func modes() []bool { return []bool{false, true} }

func modeName(zc bool) string { return map[bool]string{false: "copy", true: "zerocopy"}[zc] }

// Messages of one publisher arrive in order and intact, copy and zero-copy,
// ack and fire-and-forget; a cancelled Receive consumes nothing.
func TestSameProcessRoundTrip(t *testing.T) {
	for _, ack := range []time.Duration{0, time.Second} {
		for _, zc := range modes() {
			t.Run(fmt.Sprintf("ack=%v/%s", ack, modeName(zc)), func(t *testing.T) {
				n, _ := openNode(t)
				s, err := n.NewSubscriber("rt", &core.SubscriberOptions{ZeroCopy: zc})
				if err != nil {
					t.Fatal(err)
				}
				p, err := n.NewPublisher("rt", &core.PublisherOptions{AckTimeout: ack, Window: 8})
				if err != nil {
					t.Fatal(err)
				}
				ctx := testCtx(t, 20*time.Second)
				const count = 1000
				done := make(chan error, 1)
				go func() {
					for i := 0; i < count; i++ {
						err := s.ReceiveFunc(ctx, func(h core.Header, view []byte) error {
							if want := payload(p.ID(), uint64(i), 10+i%200); !bytes.Equal(view, want) {
								return fmt.Errorf("message %d: %d bytes, differs", i, len(view))
							}
							if h.Clock != uint64(i+1) || h.ID != int64(i) || h.ZeroCopy != zc || h.Dropped != 0 || h.Publisher != p.ID() {
								return fmt.Errorf("message %d: header %+v", i, h)
							}
							return nil
						})
						if err != nil {
							done <- err
							return
						}
					}
					done <- nil
				}()
				for i := 0; i < count; i++ {
					if ack == 0 {
						// Without acks a window of 8 would overrun: pace.
						for p.Stats().Sent > s.Stats().Received+4 {
							time.Sleep(20 * time.Microsecond)
						}
					}
					if err := p.SendWith(ctx, payload(p.ID(), uint64(i), 10+i%200), core.SendOptions{ID: int64(i)}); err != nil {
						t.Fatalf("Send %d: %v", i, err)
					}
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if st := s.Stats(); st.Received != count || st.Dropped != 0 || st.Publishers != 1 {
					t.Fatalf("stats %+v", st)
				}
				short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
				defer cancel()
				if _, err := s.Receive(short); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Receive with nothing pending: %v", err)
				}
				if err := p.Send(ctx, []byte("after")); err != nil {
					t.Fatal(err)
				}
				if m, err := s.Receive(ctx); err != nil || string(m.Data) != "after" {
					t.Fatalf("Receive after a cancelled one: %q %v", m.Data, err)
				}
				if err := p.Close(); err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Receive(ctx); !errors.Is(err, core.ErrClosed) {
					t.Fatalf("Receive after Close: %v", err)
				}
			})
		}
	}
}

func TestLateSubscriberGetsLatest(t *testing.T) {
	n, _ := openNode(t)
	p, err := n.NewPublisher("latch", &core.PublisherOptions{DiscoveryWait: -1, ConnectTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, m := range []string{"one", "two", "three"} {
		if err := p.Send(context.Background(), []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	for _, zc := range modes() {
		s, err := n.NewSubscriber("latch", &core.SubscriberOptions{ZeroCopy: zc})
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.Receive(testCtx(t, 5*time.Second))
		s.Close()
		if err != nil || string(m.Data) != "three" || m.Dropped != 0 {
			t.Fatalf("%s: late subscriber got %q (dropped %d), %v; want the latest message", modeName(zc), m.Data, m.Dropped, err)
		}
	}
}

func TestOnlyNewSkipsHistory(t *testing.T) {
	for _, zc := range modes() {
		t.Run(modeName(zc), func(t *testing.T) {
			n, _ := openNode(t)
			p, err := n.NewPublisher("fresh", &core.PublisherOptions{AckTimeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx := testCtx(t, 10*time.Second)
			if err := p.Send(ctx, []byte("old")); err != nil {
				t.Fatal(err)
			}
			s, err := n.NewSubscriber("fresh", &core.SubscriberOptions{OnlyNew: true, ZeroCopy: zc})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if m, ok, err := s.TryReceive(); ok || err != nil {
				t.Fatalf("OnlyNew subscriber received %q (%v), published before it existed", m.Data, err)
			}
			if err := p.Send(ctx, []byte("new")); err != nil {
				t.Fatal(err)
			}
			m, err := s.Receive(ctx)
			if err != nil || string(m.Data) != "new" || m.Dropped != 0 {
				t.Fatalf("OnlyNew subscriber: %q dropped %d, %v; want \"new\"", m.Data, m.Dropped, err)
			}
		})
	}
}

// Close wakes a Receive that sleeps on the topic's bell (the leader) and one
// that waits for the leader (a follower).
func TestCloseWakesReceive(t *testing.T) {
	n, _ := openNode(t)
	a, err := n.NewSubscriber("wake", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.NewSubscriber("wake", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	for _, s := range []*core.Subscriber{a, b} {
		go func() {
			_, err := s.Receive(context.Background())
			done <- err
		}()
	}
	testutil.WaitGoroutines(t, 5*time.Second, "core.(*topicReader).wait", 2)
	for _, s := range []*core.Subscriber{b, a} {
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
}

// Without acks a subscriber that falls a window behind misses messages, and
// every miss is counted exactly: the first message it takes says how many
// it missed, and Stats agree.
func TestFireAndForgetMissesCountedExactly(t *testing.T) {
	for _, zc := range modes() {
		t.Run(modeName(zc), func(t *testing.T) {
			n, _ := openNode(t)
			s, err := n.NewSubscriber("drops", &core.SubscriberOptions{ZeroCopy: zc, OnlyNew: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			p, err := n.NewPublisher("drops", &core.PublisherOptions{Window: 8})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx := testCtx(t, 10*time.Second)
			const sent = 100
			for i := 0; i < sent; i++ {
				if err := p.Send(ctx, payload(p.ID(), uint64(i), 100)); err != nil {
					t.Fatal(err)
				}
			}
			// The window holds the last 8: messages 92..99.
			for i := sent - 8; i < sent; i++ {
				m, err := s.Receive(ctx)
				if err != nil {
					t.Fatal(err)
				}
				wantDropped := uint64(0)
				if i == sent-8 {
					wantDropped = sent - 8
				}
				if !bytes.Equal(m.Data, payload(p.ID(), uint64(i), 100)) || m.Clock != uint64(i+1) || m.Dropped != wantDropped {
					t.Fatalf("message %d: clock %d dropped %d, want clock %d dropped %d", i, m.Clock, m.Dropped, i+1, wantDropped)
				}
			}
			if st := s.Stats(); st.Received != 8 || st.Dropped != sent-8 {
				t.Fatalf("stats %+v, want 8 received, %d dropped", st, sent-8)
			}
		})
	}
}

func TestChecksum(t *testing.T) {
	for _, zc := range modes() {
		t.Run(modeName(zc), func(t *testing.T) {
			n, _ := openNode(t)
			p, err := n.NewPublisher("summed", &core.PublisherOptions{Checksum: true, DiscoveryWait: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx := testCtx(t, 5*time.Second)
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
			mf, err := memfile.Open(ti.Publishers[0].MemFiles[0], memfile.OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer mf.Close()
			if err := p.Send(ctx, data); err != nil {
				t.Fatal(err)
			}
			_, view, err := mf.Read(mf.Head())
			if err != nil {
				t.Fatal(err)
			}
			view[0] ^= 0xff
			if _, err := s.Receive(ctx); !errors.Is(err, core.ErrChecksum) {
				t.Fatalf("Receive of a corrupted message: %v, want ErrChecksum", err)
			}
			if st := s.Stats(); st.ChecksumErrors != 1 || st.Dropped != 1 || st.Received != 1 {
				t.Fatalf("stats after a corrupted message: %+v", st)
			}
			// The next good message arrives and says one was dropped.
			if err := p.Send(ctx, data); err != nil {
				t.Fatal(err)
			}
			if m, err := s.Receive(ctx); err != nil || m.Dropped != 1 {
				t.Fatalf("message after the corrupted one: dropped %d, %v", m.Dropped, err)
			}
		})
	}
}

// IDs, MaxMessageSize and Publishers filter what a subscriber takes; only
// the oversize drop counts as a loss.
func TestFilters(t *testing.T) {
	n, _ := openNode(t)
	ctx := testCtx(t, 10*time.Second)
	local, err := n.NewPublisher("filtered", &core.PublisherOptions{AckTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	forwarded, err := n.NewPublisher("filtered", &core.PublisherOptions{AckTimeout: time.Second, Origin: "nats:elsewhere"})
	if err != nil {
		t.Fatal(err)
	}
	defer forwarded.Close()
	ids, err := n.NewSubscriber("filtered", &core.SubscriberOptions{IDs: []int64{7}, OnlyNew: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ids.Close()
	small, err := n.NewSubscriber("filtered", &core.SubscriberOptions{MaxMessageSize: 10, OnlyNew: true})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	onlyLocal, err := n.NewSubscriber("filtered", &core.SubscriberOptions{OnlyNew: true,
		Publishers: func(e core.EntityInfo) bool { return e.Origin == "" }})
	if err != nil {
		t.Fatal(err)
	}
	defer onlyLocal.Close()
	if ti, _ := n.Topic("filtered"); len(ti.Publishers) != 2 {
		t.Fatalf("topic %+v", ti)
	}
	for i, m := range []struct {
		p    *core.Publisher
		id   int64
		data string
	}{{local, 1, "short"}, {local, 7, "id seven"}, {forwarded, 7, "from afar"}, {local, 2, "a longer message"}} {
		if err := m.p.SendWith(ctx, []byte(m.data), core.SendOptions{ID: m.id}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	got := func(s *core.Subscriber) (out []string) {
		for {
			m, ok, err := s.TryReceive()
			if err != nil || !ok {
				return out
			}
			out = append(out, string(m.Data))
		}
	}
	if g := got(ids); len(g) != 2 || g[0] != "id seven" && g[1] != "id seven" {
		t.Errorf("IDs {7} got %q", g)
	}
	if g := got(small); len(g) != 3 || small.Stats().Dropped != 1 {
		t.Errorf("MaxMessageSize 10 got %q, stats %+v", g, small.Stats())
	}
	if g := got(onlyLocal); len(g) != 3 || onlyLocal.Stats().Publishers != 1 {
		t.Errorf("local-only got %q, stats %+v", g, onlyLocal.Stats())
	}
	if ids.Stats().Dropped != 0 || onlyLocal.Stats().Dropped != 0 {
		t.Errorf("filtered messages counted as dropped: %+v %+v", ids.Stats(), onlyLocal.Stats())
	}
	ti, _ := n.Topic("filtered")
	origins := map[string]bool{}
	for _, e := range ti.Publishers {
		origins[e.Origin] = true
	}
	if !origins[""] || !origins["nats:elsewhere"] {
		t.Errorf("Topic does not show the origins: %+v", ti.Publishers)
	}
}

// A message lost upstream (a bridge tells with SendOptions.Lost) counts as
// dropped at every subscriber.
func TestLostUpstreamCountsAsDropped(t *testing.T) {
	n, _ := openNode(t)
	p, err := n.NewPublisher("bridged", &core.PublisherOptions{AckTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	s, err := n.NewSubscriber("bridged", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := testCtx(t, 5*time.Second)
	if err := p.SendWith(ctx, []byte("after a gap"), core.SendOptions{Lost: 3}); err != nil {
		t.Fatal(err)
	}
	m, err := s.Receive(ctx)
	if err != nil || m.Dropped != 3 || s.Stats().Dropped != 3 {
		t.Fatalf("message after 3 lost upstream: dropped %d, stats %+v, %v", m.Dropped, s.Stats(), err)
	}
	// The publisher counts them too, and registration shows them as its
	// dropped count.
	if st := p.Stats(); st.Lost != 3 {
		t.Errorf("publisher stats after Lost 3: %+v", st)
	}
	ti, _ := n.Topic("bridged")
	if len(ti.Publishers) != 1 || ti.Publishers[0].Dropped != 3 {
		t.Errorf("registration of a publisher that was told 3 were lost: %+v", ti.Publishers)
	}
}
