package registration

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/testutil"
)

// Tests between processes: each peer is a child re-executing this binary
// (peerChild in main_test.go).

// TestTwoProcesses: discovery by the periodic refresh within two refresh
// periods, then unregistration on Close seen at once.
func TestTwoProcesses(t *testing.T) {
	t.Parallel()
	d, port := testutil.Domain(t), testutil.Port(t)
	const refresh = 500 * time.Millisecond
	child := startPeer(t, d, port, "-refresh", refresh.String(), "-topic", "child-topic")
	// This agent starts after the child's first announcement: it learns of
	// the child only from the child's refresh.
	a := newAgent(t, Config{Domain: d, Port: port, Refresh: refresh, Timeout: 10 * time.Second})
	start := time.Now()
	testutil.CheckFor(t, 2*refresh, time.Millisecond, func() error {
		es := a.Topic("child-topic")
		if len(es) != 1 {
			return errors.New("child's entity not seen")
		}
		if e := es[0]; !e.Local || int(e.PID) != child.Cmd.Process.Pid || e.StartTime != child.Identity(t).StartTime {
			return fmt.Errorf("child's entity wrong: %+v", e)
		}
		return nil
	})
	t.Logf("parent saw child after %v (refresh %v)", time.Since(start), refresh)
	if err := a.Register(Entity{Kind: KindSubscriber, ID: 1, Topic: "parent-topic"}); err != nil {
		t.Fatal(err)
	}
	child.Expect(t, "added parent-topic subscriber", 2*refresh)

	// Unregistration on Close. The child stays alive after Close, so only
	// the unregistration can remove its entity this fast.
	s0 := a.Stats()
	start = time.Now()
	if err := child.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, time.Second, 100*time.Microsecond, func() error {
		if len(a.Topic("child-topic")) != 0 {
			return errors.New("child's entity still registered after its Close")
		}
		return nil
	})
	took := time.Since(start)
	t.Logf("unregistration seen %v after SIGTERM (bound 100 ms in the normal case)", took)
	if took > 100*time.Millisecond {
		t.Logf("WARNING: unregistration took %v > 100 ms (loaded machine?)", took)
	}
	child.Expect(t, "closed", 5*time.Second)
	if s := a.Stats(); s.Unregistered != s0.Unregistered+1 || s.DeadRemoved != 0 || s.Expired != 0 {
		t.Fatalf("entity not removed by unregistration: %+v", s)
	}
}

// TestKilledPeerRemoved: entities of a SIGKILLed local process disappear
// within about one refresh period (500 ms here; the timeout is 10 s).
func TestKilledPeerRemoved(t *testing.T) {
	t.Parallel()
	d, port := testutil.Domain(t), testutil.Port(t)
	const refresh = 500 * time.Millisecond
	a := newAgent(t, Config{Domain: d, Port: port, Refresh: refresh, Timeout: 10 * time.Second})
	child := startPeer(t, d, port, "-refresh", refresh.String(), "-topic", "victim", "-n", "3")
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		if n := len(a.Snapshot()); n != 3 {
			return fmt.Errorf("see %d entities, want 3", n)
		}
		return nil
	})
	start := time.Now()
	child.Kill()
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		if n := len(a.Snapshot()); n != 0 {
			return fmt.Errorf("%d entities of the killed process left", n)
		}
		return nil
	})
	t.Logf("killed peer's entities gone after %v (refresh %v)", time.Since(start), refresh)
	if s := a.Stats(); s.DeadRemoved != 3 || s.Expired != 0 || s.Unregistered != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestThreeReceiverProcesses: with no periodic refresh (1 h), every one of
// three receiving processes on one port learns of all entities, so each got
// every one of the announcing datagrams.
func TestThreeReceiverProcesses(t *testing.T) {
	t.Parallel()
	d, port := testutil.Domain(t), testutil.Port(t)
	var kids []*testutil.Child
	for range 3 {
		kids = append(kids, startPeer(t, d, port, "-refresh", "1h"))
	}
	a := newAgent(t, Config{Domain: d, Port: port, Refresh: time.Hour, Timeout: 2 * time.Hour})
	const n = 20
	for i := range n {
		if err := a.Register(Entity{Kind: KindPublisher, ID: uint64(i + 1), Topic: fmt.Sprint("t", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if s := a.Stats(); s.DatagramsSent != n {
		t.Fatalf("sent %d datagrams, want %d", s.DatagramsSent, n)
	}
	for k, c := range kids {
		want := map[string]bool{}
		for i := range n {
			want[fmt.Sprintf("added t%d publisher", i)] = true
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(want) > 0 {
			l := c.Line(t, time.Until(deadline))
			if !want[l] {
				t.Fatalf("receiver %d: unexpected line %q", k, l)
			}
			delete(want, l)
		}
	}
}

// TestQueryAcrossProcesses: a subscriber in a child whose refresh is an
// hour is learned by a new agent in milliseconds, because the new agent's
// publisher asks (FlagQuery) and the child re-announces.
func TestQueryAcrossProcesses(t *testing.T) {
	t.Parallel()
	d, port := testutil.Domain(t), testutil.Port(t)
	startPeer(t, d, port, "-refresh", "1h", "-topic", "q", "-kind", "sub")
	a := newAgent(t, Config{Domain: d, Port: port, Refresh: time.Hour, Timeout: 2 * time.Hour})
	if n := len(a.Topic("q")); n != 0 {
		t.Fatalf("new agent already knows %d entities", n)
	}
	start := time.Now()
	if err := a.Register(Entity{Kind: KindPublisher, ID: 1, Topic: "q", Flags: FlagQuery}); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 2*time.Second, 100*time.Microsecond, func() error {
		for _, e := range a.Topic("q") {
			if e.Kind == KindSubscriber && e.Instance != proc.InstanceID() {
				return nil
			}
		}
		return errors.New("child's subscriber not learned")
	})
	t.Logf("learned the existing subscriber %v after registering with FlagQuery (child refresh 1h)", time.Since(start))
}
