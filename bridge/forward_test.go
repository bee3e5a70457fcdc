package bridge_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/shmfs/shmfs/bridge"
	"github.com/shmfs/shmfs/core"
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
	sa, sb := p.a.Stats(), p.b.Stats()
	if sa.Total.MessagesOut != n || sb.Total.MessagesIn != n || sb.Total.Gaps != 0 || sb.Total.Duplicates != 0 {
		t.Errorf("stats: a %+v, b %+v", sa.Total, sb.Total)
	}
}
