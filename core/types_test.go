package core_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

func init() {
	children["typedpub"] = childTypedPub
}

func TestTypeMismatch(t *testing.T) {
	n, _ := openNode(t)
	// A subscriber that asks for a type, before any publisher exists.
	early, err := n.NewSubscriber("typed", &core.SubscriberOptions{Type: "text"})
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	p, err := n.NewPublisher("typed", &core.PublisherOptions{Type: "json"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := testCtx(t, 5*time.Second)
	if _, err := early.Receive(ctx); !errors.Is(err, core.ErrTypeMismatch) || !strings.Contains(err.Error(), `"json"`) {
		t.Fatalf("Receive after a publisher of another type appeared: %v, want ErrTypeMismatch naming it", err)
	}
	if err := p.Send(ctx, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if m, ok, err := early.TryReceive(); ok || err != nil {
		t.Fatalf("subscriber of type text received %q (%v) from a json publisher", m.Data, err)
	}
	if st := early.Stats(); st.TypeMismatches != 1 || st.Publishers != 0 {
		t.Fatalf("stats %+v: want the json message counted as a type mismatch", st)
	}
	// A subscriber asking for another type than the publishers'.
	if _, err := n.NewSubscriber("typed", &core.SubscriberOptions{Type: "protobuf:pkg.Msg"}); !errors.Is(err, core.ErrTypeMismatch) {
		t.Fatalf("NewSubscriber with another type: %v, want ErrTypeMismatch", err)
	}
	// A second publisher of another type.
	if _, err := n.NewPublisher("typed", &core.PublisherOptions{Type: "text"}); !errors.Is(err, core.ErrTypeMismatch) {
		t.Fatalf("NewPublisher with another type: %v, want ErrTypeMismatch", err)
	}
	s, err := n.NewSubscriber("typed", &core.SubscriberOptions{Type: "json"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// childTypedPub: args topic type. Creates a publisher and prints "ok" or
// "mismatch"/the error, then stays until stopped.
func childTypedPub(args []string) int {
	a := testutil.ChildArgs(args)
	ctx, cancel := childContext(time.Minute)
	defer cancel()
	n, err := childNode()
	if err != nil {
		return fail("OpenNode: %v", err)
	}
	defer n.Close()
	_, err = n.NewPublisher(a[0], &core.PublisherOptions{Type: a[1]})
	switch {
	case err == nil:
		fmt.Println("ok")
	case errors.Is(err, core.ErrTypeMismatch):
		fmt.Println("mismatch")
	default:
		fmt.Println(err)
	}
	<-ctx.Done()
	return 0
}

// A publisher of another type in a new process beside a running one is
// refused, every time: the new process's node is young and learns of the
// running publisher from the answer to its query before it checks.
func TestTypeMismatchWithRunningPublisherInAnotherProcess(t *testing.T) {
	_, e := newConfig(t)
	running := testutil.StartChild(t, "typedpub", e, "tm", "raw")
	if got := running.Line(t, 10*time.Second); got != "ok" {
		t.Fatalf("first publisher: %s", got)
	}
	for round := 0; round < 10; round++ {
		c := testutil.StartChild(t, "typedpub", e, "tm", "text")
		if got := c.Line(t, 10*time.Second); got != "mismatch" {
			t.Fatalf("round %d: a text publisher beside a running raw one: %q, want mismatch", round, got)
		}
		stopChild(t, c)
	}
	stopChild(t, running)
}

func TestInvalidInput(t *testing.T) {
	n, _ := openNode(t)
	for _, topic := range []string{"", "a/b", "..", "x\x00y", strings.Repeat("t", 300)} {
		if _, err := n.NewPublisher(topic, nil); !errors.Is(err, core.ErrInvalidTopic) {
			t.Errorf("NewPublisher(%q): %v, want ErrInvalidTopic", topic, err)
		}
		if _, err := n.NewSubscriber(topic, nil); !errors.Is(err, core.ErrInvalidTopic) {
			t.Errorf("NewSubscriber(%q): %v, want ErrInvalidTopic", topic, err)
		}
	}
	for _, o := range []core.PublisherOptions{{Window: -1}, {Window: 3}, {Window: 1 << 20}, {Mode: 0o666}, {AckTimeout: -1}, {MinSize: -5}} {
		if _, err := n.NewPublisher("t", &o); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("NewPublisher(%+v): %v, want ErrInvalidOption", o, err)
		}
	}
	if _, err := n.NewSubscriber("t", &core.SubscriberOptions{Spin: -1}); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("NewSubscriber(Spin -1): %v, want ErrInvalidOption", err)
	}
	p, err := n.NewPublisher("t", &core.PublisherOptions{MaxMessageSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 5*time.Second)
	if err := p.Send(ctx, make([]byte, 11)); !errors.Is(err, core.ErrTooLarge) {
		t.Errorf("Send too large: %v", err)
	}
	if err := p.SendFunc(ctx, 4, nil); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("SendFunc with a nil fill: %v", err)
	}
	p.Close()
	if err := p.Send(ctx, nil); !errors.Is(err, core.ErrClosed) {
		t.Errorf("Send after Close: %v", err)
	}
	// A node of the same domain and port with other settings.
	cfg := n.Config()
	cfg.Refresh = 3 * time.Second
	cfg.Timeout = 30 * time.Second
	if _, err := core.OpenNode(cfg); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("OpenNode with another refresh on an open domain: %v, want ErrInvalidOption", err)
	}
	cfg.Domain = "bad domain"
	if _, err := core.OpenNode(cfg); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("OpenNode(domain %q): %v", cfg.Domain, err)
	}
}
