package bridge_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/shmfs/shmfs/bridge"
	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

// Messages published on one host arrive on the other in order, each once,
// with their ids, through a local publisher that names its origin.
func TestForwardInOrder(t *testing.T) {
	t.Parallel()
	p := newPair(t, bridge.Config{}, bridge.Config{})
	ctx := testCtx(t, 30*time.Second)
	sub, err := p.nb.NewSubscriber("chat", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	pub, err := p.na.NewPublisher("chat", &core.PublisherOptions{Type: "text", AckTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	waitLinked(t, pub)
	const n = 2000
	go func() {
		for i := 1; i <= n; i++ {
			if err := pub.SendWith(ctx, []byte(strconv.Itoa(i)), core.SendOptions{ID: int64(i)}); err != nil {
				t.Errorf("send %d: %v", i, err)
				return
			}
		}
	}()
	for i := 1; i <= n; i++ {
		m, err := sub.Receive(ctx)
		if err != nil {
			t.Fatalf("after %d messages: %v; bridge b: %+v", i-1, err, p.b.Stats())
		}
		if string(m.Data) != strconv.Itoa(i) || m.ID != int64(i) || m.Dropped != 0 {
			t.Fatalf("message %d: %q id %d dropped %d", i, m.Data, m.ID, m.Dropped)
		}
	}
	ti, _ := p.nb.Topic("chat")
	if len(ti.Publishers) != 1 || ti.Publishers[0].Origin != "nats:host-a" || ti.Type != "text" {
		t.Errorf("imported publisher: %+v", ti.Publishers)
	}
	// The counters follow the delivery (the last may still be counting).
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if in := p.b.Stats().Total.MessagesIn; in < n {
			return fmt.Errorf("b counted %d published", in)
		}
		return nil
	})
	sa, sb := p.a.Stats(), p.b.Stats()
	if sa.Total.MessagesOut != n || sb.Total.MessagesIn != n || sb.Total.Gaps != 0 || sb.Total.Duplicates != 0 {
		t.Errorf("stats: a %+v, b %+v", sa.Total, sb.Total)
	}
}

// A remote publisher shows on the other host (topic, type, origin) before
// it sends anything; --export and --import select topics; a publisher
// that goes away disappears on the other host too.
func TestAnnouncedTopicsAndPatterns(t *testing.T) {
	t.Parallel()
	p := newPair(t, bridge.Config{Export: bridge.Patterns{"cam*", "blocked-in"}}, bridge.Config{Import: bridge.Patterns{"cam*", "other"}})
	var pubs []*core.Publisher
	for _, topic := range []string{"camera", "other", "blocked-in"} {
		pub, err := p.na.NewPublisher(topic, &core.PublisherOptions{Type: "image/" + topic})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pub.Close() })
		pubs = append(pubs, pub)
	}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		ti, ok := p.nb.Topic("camera")
		if !ok || len(ti.Publishers) != 1 || ti.Type != "image/camera" || ti.Publishers[0].Origin != "nats:host-a" {
			return fmt.Errorf("camera on b: %+v", ti)
		}
		return nil
	})
	// "other" is not exported by a, "blocked-in" not imported by b. A
	// publisher made after them shows on b only through an announcement
	// (a full list) made after they existed: by then b would import them.
	last, err := p.na.NewPublisher("cam-last", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer last.Close()
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if p.b.Imported("cam-last") != 1 {
			return fmt.Errorf("cam-last not imported yet")
		}
		return nil
	})
	for _, topic := range []string{"other", "blocked-in"} {
		if n := p.b.Imported(topic); n != 0 {
			t.Errorf("%s crossed: %d imports", topic, n)
		}
	}
	pubs[0].Close()
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if ti, ok := p.nb.Topic("camera"); ok && len(ti.Publishers) > 0 {
			return fmt.Errorf("camera still on b: %+v", ti.Publishers)
		}
		return nil
	})
}
