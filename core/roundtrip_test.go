package core_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
)

// In one process: messages of one publisher arrive in order and intact, in
// copy and zero-copy mode, ack and fire-and-forget.
func TestSameProcessRoundTrip(t *testing.T) {
	for _, ack := range []time.Duration{0, time.Second} {
		for _, zc := range []bool{false, true} {
			t.Run(fmt.Sprintf("ack=%v/zc=%v", ack, zc), func(t *testing.T) {
				n, _ := openNode(t)
				s, err := n.NewSubscriber("rt", &core.SubscriberOptions{ZeroCopy: zc})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				p, err := n.NewPublisher("rt", &core.PublisherOptions{AckTimeout: ack, Window: 8})
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				ctx := testCtx(t, 10*time.Second)
				const count = 100
				done := make(chan error, 1)
				go func() {
					for i := 0; i < count; i++ {
						err := s.ReceiveFunc(ctx, func(h core.Header, view []byte) error {
							if want := payload(p.ID(), uint64(i), 100+i); !bytes.Equal(view, want) {
								return fmt.Errorf("message %d: %d bytes, differs", i, len(view))
							}
							if h.Clock != uint64(i+1) || h.ZeroCopy != zc || h.Dropped != 0 {
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
							time.Sleep(50 * time.Microsecond)
						}
					}
					if err := p.Send(ctx, payload(p.ID(), uint64(i), 100+i)); err != nil {
						t.Fatalf("Send %d: %v", i, err)
					}
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if st := s.Stats(); st.Received != count || st.Dropped != 0 {
					t.Fatalf("stats %+v", st)
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
