package registration

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
)

// newAgent starts an agent on cfg (Domain and Port must be set) and closes
// it at cleanup.
func newAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	a, err := NewAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// injector sends raw datagrams to the local broadcast address of a port.
type injector struct {
	c   *net.UDPConn
	dst *net.UDPAddr
}

func newInjector(t *testing.T, port int) *injector {
	t.Helper()
	c, err := openSend(Config{Mode: ModeLocal}, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &injector{c: c, dst: &net.UDPAddr{IP: net.ParseIP(LocalBroadcast), Port: port}}
}

func (in *injector) send(t *testing.T, b []byte) {
	t.Helper()
	if _, err := in.c.WriteToUDP(b, in.dst); err != nil {
		t.Fatal(err)
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// remoteEntity is a valid entity of another machine.
func remoteEntity(d string) Entity {
	e := testEntity(d)
	e.MachineID, e.BootID = "remote-machine", "remote-boot"
	e.Instance, e.ID = proc.RandomID(), proc.RandomID()
	return e
}

// localEntity claims to be a process on this host, in this PID namespace.
func localEntity(d string, id proc.Identity) Entity {
	e := testEntity(d)
	e.MachineID, e.BootID, e.PIDNamespace = proc.MachineID(), proc.BootID(), proc.PIDNamespace()
	e.Instance, e.ID = proc.RandomID(), proc.RandomID()
	e.PID, e.StartTime = id.PID, id.StartTime
	return e
}

func TestConfigInvalid(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{
		{Domain: "bad/domain"},
		{Port: 70000},
		{Port: -1},
		{Mode: 7},
		{Refresh: time.Second, Timeout: time.Second},
		{Refresh: time.Microsecond},
		{Mode: ModeNetwork, Group: "10.1.2.3"},
		{Mode: ModeNetwork, Group: "nonsense"},
		{Mode: ModeNetwork, TTL: 300},
	} {
		if a, err := NewAgent(c); !errors.Is(err, ErrInvalid) {
			if a != nil {
				a.Close()
			}
			t.Errorf("NewAgent(%+v) = %v, want ErrInvalid", c, err)
		}
	}
	d := DefaultConfig()
	if d.Port != 14190 || d.Group != "239.0.0.2" || d.Refresh != time.Second || d.Timeout != 10*time.Second || d.Domain != shmname.DefaultDomain {
		t.Errorf("DefaultConfig = %+v", d)
	}
}

// counterOf maps a decode error to the agent counter that must count it.
func counterOf(s Stats, want error) uint64 {
	switch want {
	case ErrTruncated:
		return s.DroppedTruncated
	case ErrTooLarge:
		return s.DroppedTooLarge
	case ErrVersion:
		return s.DroppedVersion
	case ErrBadName:
		return s.DroppedBadName
	case ErrBadValue:
		return s.DroppedBadValue
	}
	panic("no counter for " + want.Error())
}

func TestHostileDatagramsDropped(t *testing.T) {
	t.Parallel()
	d, port := testutil.Domain(t), testutil.Port(t)
	a := newAgent(t, Config{Domain: d, Port: port, Refresh: time.Hour, Timeout: 2 * time.Hour})
	in := newInjector(t, port)
	for _, c := range hostileCases(d) {
		before := a.Stats()
		in.send(t, c.b)
		testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
			s := a.Stats()
			if s.DatagramsReceived == before.DatagramsReceived {
				return errors.New("not received yet")
			}
			if got := counterOf(s, c.want); got != counterOf(before, c.want)+1 {
				return fmt.Errorf("%s: counter for %v is %d, want %d; stats %+v", c.name, c.want, got, counterOf(before, c.want)+1, s)
			}
			return nil
		})
		if s := a.Stats(); s.Entities != 0 || s.SamplesReceived != 0 {
			t.Fatalf("%s: accepted: %+v", c.name, s)
		}
	}
	// The receiver survived all of it.
	e := remoteEntity(d)
	in.send(t, rawDatagram(e))
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		if n := len(a.Topic(e.Topic)); n != 1 {
			return fmt.Errorf("valid entity not seen after hostile input (%d)", n)
		}
		return nil
	})
}

func TestIgnoredSamples(t *testing.T) {
	t.Parallel()
	d, port := testutil.Domain(t), testutil.Port(t)
	a := newAgent(t, Config{Domain: d, Port: port, Refresh: time.Hour, Timeout: 2 * time.Hour})
	in := newInjector(t, port)
	other := remoteEntity("otherdomain")
	unknown := remoteEntity(d)
	unknown.Kind = 200
	in.send(t, rawDatagram(other, unknown))
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		if s := a.Stats(); s.IgnoredDomain != 1 || s.IgnoredKind != 1 {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	if err := a.Register(Entity{Kind: KindPublisher, ID: 1, Topic: "mine"}); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		if s := a.Stats(); s.Own != 1 || s.SamplesReceived != 0 {
			return fmt.Errorf("own datagram not skipped: %+v", s)
		}
		return nil
	})
	if s := a.Stats(); s.Entities != 1 {
		t.Fatalf("entities %d, want only the own one", s.Entities)
	}
}

func TestRemoteExpiryFakeClock(t *testing.T) {
	t.Parallel()
	d, port := testutil.Domain(t), testutil.Port(t)
	clk := &fakeClock{t: time.Unix(1000, 0)}
	a := newAgent(t, Config{Domain: d, Port: port, Refresh: 20 * time.Millisecond, Timeout: 10 * time.Second, Now: clk.Now})
	in := newInjector(t, port)
	e := remoteEntity(d)
	in.send(t, rawDatagram(e))
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		if len(a.Topic(e.Topic)) != 1 {
			return errors.New("remote entity not seen")
		}
		return nil
	})
	got := a.Topic(e.Topic)[0]
	if got.Local || !got.LastSeen.Equal(clk.Now()) {
		t.Fatalf("remote entity: Local %v LastSeen %v", got.Local, got.LastSeen)
	}
	// Sweeps run, but the fake clock has not moved: it stays.
	s0 := a.Stats().Sweeps
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if a.Stats().Sweeps < s0+3 {
			return errors.New("sweeps not running")
		}
		return nil
	})
	clk.Advance(9 * time.Second)
	s1 := a.Stats().Sweeps
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if a.Stats().Sweeps < s1+2 {
			return errors.New("sweeps not running")
		}
		return nil
	})
	if len(a.Topic(e.Topic)) != 1 {
		t.Fatal("remote entity expired before the timeout")
	}
	clk.Advance(2 * time.Second)
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if len(a.Topic(e.Topic)) != 0 {
			return errors.New("remote entity not expired after the timeout")
		}
		return nil
	})
	if s := a.Stats(); s.Expired != 1 || s.DeadRemoved != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestLocalLiveness(t *testing.T) {
	t.Parallel()
	d, port := testutil.Domain(t), testutil.Port(t)
	a := newAgent(t, Config{Domain: d, Port: port, Refresh: 20 * time.Millisecond, Timeout: time.Hour})
	in := newInjector(t, port)
	me := proc.Self()
	alive := localEntity(d, me)
	dead := localEntity(d, proc.Identity{PID: me.PID, StartTime: me.StartTime + 1}) // PID reused by us
	in.send(t, rawDatagram(alive, dead))
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		if s := a.Stats(); s.SamplesReceived != 2 || s.DroppedDead != 1 {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	es := a.Topic(alive.Topic)
	if len(es) != 1 || es[0].ID != alive.ID || !es[0].Local {
		t.Fatalf("want only the live local entity, got %v", es)
	}
	s0 := a.Stats().Sweeps
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if a.Stats().Sweeps < s0+3 {
			return errors.New("sweeps not running")
		}
		return nil
	})
	if len(a.Topic(alive.Topic)) != 1 || a.Stats().DeadRemoved != 0 {
		t.Fatal("entity of a live process removed")
	}
}

// TestAgentsInOneProcess covers Register, Update, Unregister and Watch
// between two agents (same instance id, different entity ids).
func TestAgentsInOneProcess(t *testing.T) {
	t.Parallel()
	d, port := testutil.Domain(t), testutil.Port(t)
	cfg := Config{Domain: d, Port: port, Refresh: time.Hour, Timeout: 2 * time.Hour}
	a, b := newAgent(t, cfg), newAgent(t, cfg)
	ch, cancel := b.Watch(16)
	defer cancel()
	next := func(want ChangeKind) Change {
		t.Helper()
		select {
		case c := <-ch:
			if c.Kind != want {
				t.Fatalf("change %v %v, want %v", c.Kind, c.Entity, want)
			}
			return c
		case <-time.After(5 * time.Second):
			t.Fatalf("no %v change", want)
		}
		return Change{}
	}
	mf := []string{shmname.Object(d, 1)}
	e := Entity{Kind: KindPublisher, ID: 42, Topic: "t", Type: "ty", Encoding: "raw", MemFiles: mf, BufferCount: 1, Domain: "ignored"}
	if err := a.Register(e); err != nil {
		t.Fatal(err)
	}
	c := next(Added)
	me := proc.Self()
	if g := c.Entity; g.Domain != d || g.PID != me.PID || g.StartTime != me.StartTime || g.Instance != proc.InstanceID() ||
		!g.Local || g.Topic != "t" || g.MachineID != proc.MachineID() || g.ProcessName == "" || len(g.MemFiles) != 1 {
		t.Fatalf("registered entity as seen by a peer: %+v", g)
	}
	if own := a.Snapshot(); len(own) != 1 || !own[0].Local || own[0].ID != 42 {
		t.Fatalf("own snapshot %+v", own)
	}

	// Errors.
	if err := a.Register(e); !errors.Is(err, ErrInvalid) {
		t.Errorf("duplicate Register = %v", err)
	}
	if err := a.Register(Entity{Kind: KindPublisher, ID: 43, Topic: "a/b"}); !errors.Is(err, ErrBadName) {
		t.Errorf("Register(a/b) = %v", err)
	}
	if err := a.Register(Entity{Kind: KindPublisher, ID: 44, Topic: "x", MemFiles: []string{shmname.Object("other", 1)}}); !errors.Is(err, ErrBadName) {
		t.Errorf("Register(memfile of other domain) = %v", err)
	}
	if err := a.Update(Entity{ID: 99}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Update(unknown) = %v", err)
	}
	if err := a.Update(Entity{ID: 42, Topic: "other"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Update(topic change) = %v", err)
	}
	if err := a.Unregister(99); !errors.Is(err, ErrNotFound) {
		t.Errorf("Unregister(unknown) = %v", err)
	}

	// New memory files go out at once (the refresh period is an hour).
	e.MemFiles = []string{shmname.Object(d, 1), shmname.Object(d, 2)}
	e.BufferCount = 2
	if err := a.Update(e); err != nil {
		t.Fatal(err)
	}
	c = next(Updated)
	if len(c.Entity.MemFiles) != 2 || c.Entity.BufferCount != 2 {
		t.Fatalf("updated entity %+v", c.Entity)
	}
	// Counters change the own registry at once and go out with the refresh.
	e.Sent = 5
	if err := a.Update(e); err != nil {
		t.Fatal(err)
	}
	if own := a.Topic("t"); own[0].Sent != 5 {
		t.Fatalf("own counters not updated: %+v", own[0])
	}

	if err := a.Unregister(42); err != nil {
		t.Fatal(err)
	}
	next(Removed)
	if n := len(a.Snapshot()); n != 0 {
		t.Fatalf("own snapshot after unregister has %d entities", n)
	}
	if s := b.Stats(); s.Unregistered != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestWatcherCoalesces(t *testing.T) {
	var c counters
	w := newWatcher(0, &c)
	e1, e2, e3 := testEntity("d"), testEntity("d"), testEntity("d")
	e2.ID, e3.ID = 2, 3
	k1, k2, k3 := entityKey(&e1), entityKey(&e2), entityKey(&e3)
	w.push(k1, Added, &e1)
	e1.Sent = 9
	w.push(k1, Updated, &e1) // Added+Updated = Added(new)
	w.push(k2, Added, &e2)
	w.push(k2, Removed, &e2) // Added+Removed = nothing
	w.push(k3, Updated, &e3)
	w.push(k3, Removed, &e3) // Updated+Removed = Removed
	var got []string
	for {
		ch, ok := w.pop()
		if !ok {
			break
		}
		got = append(got, fmt.Sprintf("%v %d %d", ch.Kind, ch.Entity.ID, ch.Entity.Sent))
	}
	want := fmt.Sprintf("[added %d 9 removed 3 %d]", e1.ID, e3.Sent)
	if fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	w.push(k1, Removed, &e1)
	w.push(k1, Added, &e1) // Removed+Added = Updated
	if ch, _ := w.pop(); ch.Kind != Updated {
		t.Fatalf("Removed+Added = %v, want updated", ch.Kind)
	}
	if n := c.coalesced.Load(); n != 4 {
		t.Fatalf("coalesced %d, want 4", n)
	}
}

// TestSlowWatcher: a watcher that nobody reads must not hold up the
// receiver, and what it delivers later adds up to the registry's state.
func TestSlowWatcher(t *testing.T) {
	t.Parallel()
	d, port := testutil.Domain(t), testutil.Port(t)
	cfg := Config{Domain: d, Port: port, Refresh: time.Hour, Timeout: 2 * time.Hour}
	a, b := newAgent(t, cfg), newAgent(t, cfg)
	ch, cancel := b.Watch(0)
	defer cancel()
	const n = 300
	for i := range n {
		if err := a.Register(Entity{Kind: KindSubscriber, ID: uint64(i + 1), Topic: fmt.Sprint("t", i%7)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n / 2 {
		if err := a.Unregister(uint64(i + 1)); err != nil {
			t.Fatal(err)
		}
	}
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if s := b.Stats(); s.Entities != n/2 || s.SamplesReceived != n+n/2 {
			return fmt.Errorf("receiver behind: %+v", s)
		}
		return nil
	})
	seen := map[uint64]bool{}
	changes := 0
	testutil.CheckFor(t, 5*time.Second, 0, func() error {
		select {
		case c := <-ch:
			changes++
			seen[c.Entity.ID] = c.Kind != Removed
			if c.Kind == Removed {
				delete(seen, c.Entity.ID)
			}
		case <-time.After(10 * time.Millisecond):
		}
		if len(seen) != n/2 {
			return fmt.Errorf("watch state has %d entities, want %d", len(seen), n/2)
		}
		for id := range seen {
			if id <= n/2 {
				return fmt.Errorf("entity %d should be gone", id)
			}
		}
		return nil
	})
	if s := b.Stats(); s.WatchCoalesced == 0 || changes >= n+n/2 {
		t.Fatalf("%d changes delivered, %d coalesced: no coalescing happened", changes, s.WatchCoalesced)
	}
	t.Logf("%d changes delivered for %d samples, %d coalesced", changes, n+n/2, b.Stats().WatchCoalesced)
}

func TestSplitDatagrams(t *testing.T) {
	t.Parallel()
	d, port := testutil.Domain(t), testutil.Port(t)
	a := newAgent(t, Config{Domain: d, Port: port, Refresh: 100 * time.Millisecond, Timeout: time.Hour})
	b := newAgent(t, Config{Domain: d, Port: port, Refresh: time.Hour, Timeout: 2 * time.Hour})
	const n = 600
	for i := range n {
		e := Entity{Kind: KindPublisher, ID: uint64(i + 1), Topic: fmt.Sprint("topic", i), Type: strings.Repeat("y", 200)}
		if err := a.Register(e); err != nil {
			t.Fatal(err)
		}
	}
	s0 := a.Stats()
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if a.Stats().Sweeps < s0.Sweeps+2 {
			return errors.New("no refresh yet")
		}
		return nil
	})
	s1 := a.Stats()
	dg, sm := s1.DatagramsSent-s0.DatagramsSent, s1.SamplesSent-s0.SamplesSent
	per := MaxDatagram / (sampleSize(&Entity{Type: strings.Repeat("y", 200)}) + 100)
	if sm < n || dg < sm/uint64(per) || s1.SendErrors != 0 {
		t.Fatalf("refresh sent %d samples in %d datagrams (%d errors)", sm, dg, s1.SendErrors)
	}
	t.Logf("refresh of %d samples: %.1f datagrams per refresh", n, float64(dg)*n/float64(sm))
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if s := b.Stats(); s.Entities != n || s.DroppedTooLarge != 0 {
			return fmt.Errorf("peer has %d entities; stats %+v", s.Entities, s)
		}
		return nil
	})
}

func TestQueryDebounce(t *testing.T) {
	t.Parallel()
	d, port := testutil.Domain(t), testutil.Port(t)
	a := newAgent(t, Config{Domain: d, Port: port, Refresh: time.Hour, Timeout: 2 * time.Hour})
	if err := a.Register(Entity{Kind: KindSubscriber, ID: 1, Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	in := newInjector(t, port)
	const n = 50
	start := time.Now()
	for range n {
		e := remoteEntity(d)
		e.Flags = FlagQuery
		in.send(t, rawDatagram(e))
	}
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		if s := a.Stats(); s.Queries != n || s.Reannounces == 0 {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	time.Sleep(2 * QueryDebounce) // let a scheduled re-announcement happen
	elapsed := time.Since(start)
	s := a.Stats()
	if max := uint64(elapsed/QueryDebounce) + 2; s.Reannounces > max {
		t.Fatalf("%d re-announcements in %v, at most %d allowed", s.Reannounces, elapsed, max)
	}
	for _, e := range a.Snapshot() {
		if e.Flags&FlagQuery != 0 {
			t.Fatalf("FlagQuery stored: %v", e)
		}
	}
	t.Logf("%d queries in %v: %d re-announcements", n, elapsed, s.Reannounces)
}

func TestClose(t *testing.T) {
	t.Parallel()
	d, port := testutil.Domain(t), testutil.Port(t)
	cfg := Config{Domain: d, Port: port, Refresh: time.Hour, Timeout: 2 * time.Hour}
	a, err := NewAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := newAgent(t, cfg)
	for i := range 3 {
		if err := a.Register(Entity{Kind: KindPublisher, ID: uint64(i + 1), Topic: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	ch, _ := a.Watch(100)
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		if n := len(b.Topic("t")); n != 3 {
			return fmt.Errorf("peer sees %d", n)
		}
		return nil
	})
	start := time.Now()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Close took %v", time.Since(start))
	if err := a.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
	if err := a.Register(Entity{Kind: KindPublisher, ID: 9, Topic: "t"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Register after Close = %v", err)
	}
	testutil.CheckFor(t, 2*time.Second, 0, func() error {
		select {
		case _, ok := <-ch:
			if !ok {
				return nil
			}
		case <-time.After(10 * time.Millisecond):
		}
		return errors.New("watch channel not closed by Close")
	})
	if c2, _ := a.Watch(1); c2 != nil {
		if _, ok := <-c2; ok {
			t.Error("Watch after Close delivered a change")
		}
	}
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		if s := b.Stats(); len(b.Topic("t")) != 0 || s.Unregistered != 3 {
			return fmt.Errorf("peer still sees %d; stats %+v", len(b.Topic("t")), s)
		}
		return nil
	})
}

// TestLocalSocketsAllReceive: N sockets bound to the broadcast address and
// port each get every datagram (SO_REUSEADDR), and unicast to the port
// reaches none of them.
func TestLocalSocketsAllReceive(t *testing.T) {
	t.Parallel()
	port := testutil.Port(t)
	cfg := Config{Port: port, Mode: ModeLocal}
	var recvs []*net.UDPConn
	for range 3 {
		r, s, _, err := openSockets(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		t.Cleanup(func() { r.Close() })
		recvs = append(recvs, r)
	}
	in := newInjector(t, port)
	const n = 20
	for i := range n {
		in.send(t, []byte{byte(i)})
	}
	if _, err := in.c.WriteToUDP([]byte("unicast"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
		t.Fatal(err)
	}
	for i, r := range recvs {
		buf := make([]byte, 100)
		for k := range n {
			r.SetReadDeadline(time.Now().Add(2 * time.Second))
			m, _, err := r.ReadFromUDP(buf)
			if err != nil || m != 1 || buf[0] != byte(k) {
				t.Fatalf("socket %d datagram %d: %d bytes %v: %v", i, k, m, buf[:m], err)
			}
		}
		r.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if m, _, err := r.ReadFromUDP(buf); err == nil {
			t.Fatalf("socket %d got unicast %q", i, buf[:m])
		}
	}
}

func TestRegistryBounded(t *testing.T) {
	t.Parallel()
	d, port := testutil.Domain(t), testutil.Port(t)
	a := newAgent(t, Config{Domain: d, Port: port, Refresh: time.Hour, Timeout: 2 * time.Hour})
	small := remoteEntity(d)
	a.mu.Lock()
	a.maxEntities, a.maxBytes = 3, 3*entrySize(&small)+100
	a.mu.Unlock()
	in := newInjector(t, port)
	var es []Entity
	for range 5 {
		es = append(es, remoteEntity(d))
	}
	in.send(t, rawDatagram(es...))
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		if s := a.Stats(); s.Entities != 3 || s.DroppedFull != 2 {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	// An update that would grow past the byte budget is dropped too.
	grown := es[0]
	grown.Seq++
	grown.Type = strings.Repeat("y", 500)
	in.send(t, rawDatagram(grown))
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		if s := a.Stats(); s.DroppedFull != 3 {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	for _, e := range a.Snapshot() {
		if len(e.Type) > 100 {
			t.Fatalf("oversized update accepted: %v", e)
		}
	}
	// Own entities are always accepted.
	if err := a.Register(Entity{Kind: KindPublisher, ID: 1, Topic: "own"}); err != nil {
		t.Fatal(err)
	}
	if n := len(a.Topic("own")); n != 1 {
		t.Fatalf("own entity refused by a full registry")
	}
}
