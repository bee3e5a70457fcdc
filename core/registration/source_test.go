package registration

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/testutil"
)

// Who may say what: every sample is attributed to a source (the uid owning
// the sending socket, or another host's address), an entity is bound to the
// source that added it, and claims about local processes are checked
// against /proc. The unit tests below hand datagrams to the agent with a
// given origin; TestOtherUserDatagrams sends real ones as a second uid.

func localOrigin(uid uint32, port uint16, sender uint64) origin {
	return origin{addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), sender: sender, local: true, known: true, uid: uid}
}

// quietAgent is an agent nobody sends to: the tests feed it through handle.
func quietAgent(t *testing.T) (*Agent, string) {
	t.Helper()
	d, port := testutil.Domain(t), testutil.Port(t)
	return newAgent(t, Config{Domain: d, Port: port, Refresh: time.Hour, Timeout: 2 * time.Hour}), d
}

func TestSamplesBoundToTheirSource(t *testing.T) {
	t.Parallel()
	a, d := quietAgent(t)
	owner := localOrigin(1000, 5000, 1)
	e := remoteEntity(d)
	e.Seq = 10
	a.handle(rawDatagram(e), owner)
	if got := a.Topic(e.Topic); len(got) != 1 || got[0].UID != 1000 {
		t.Fatalf("entity not added with the socket's uid: %+v", got)
	}

	// Another user forges an unregistration, an update with no memory
	// files and a change of process, with the highest sequence number.
	forger := localOrigin(1001, 6000, 1) // even with the owner's sender id
	for _, f := range []func(x *Entity){
		func(x *Entity) { x.Flags = FlagUnregister },
		func(x *Entity) { x.MemFiles = nil },
	} {
		x := e
		x.Seq = math.MaxUint64
		f(&x)
		a.handle(rawDatagram(x), forger)
	}
	if s := a.Stats(); s.DroppedSpoofed != 2 || s.Unregistered != 0 {
		t.Fatalf("forgeries not refused: %+v", s)
	}
	// No sequence poisoning: the owner's next sample is taken.
	next := e
	next.Seq, next.Type = 11, "changed"
	a.handle(rawDatagram(next), owner)
	if got := a.Topic(e.Topic); len(got) != 1 || got[0].Type != "changed" || len(got[0].MemFiles) != 1 {
		t.Fatalf("owner's update lost after the forgeries: %+v", got)
	}
	// The owner cannot move its entity to another process either.
	moved := next
	moved.Seq, moved.PID = 12, next.PID+1
	a.handle(rawDatagram(moved), owner)
	if got := a.Topic(e.Topic); got[0].PID != next.PID || a.Stats().DroppedSpoofed != 3 {
		t.Fatalf("entity moved to another process: %+v, %+v", got, a.Stats())
	}

	// A datagram from this host that nobody owns any more: a new entity is
	// refused, and an unregistration only from the address and sender id
	// that added the entity (its agent closed the socket after sending).
	gone := origin{addr: owner.addr, sender: owner.sender, local: true}
	fresh := remoteEntity(d)
	fresh.Topic = "fresh"
	a.handle(rawDatagram(fresh), gone)
	unreg := next
	unreg.Seq, unreg.Flags = 13, FlagUnregister
	a.handle(rawDatagram(unreg), origin{addr: netip.MustParseAddrPort("127.0.0.1:7000"), sender: owner.sender, local: true})
	if s := a.Stats(); s.DroppedUnverified != 2 || len(a.Topic(fresh.Topic)) != 0 || len(a.Topic(e.Topic)) != 1 {
		t.Fatalf("unattributable datagrams not refused: %+v", s)
	}
	a.handle(rawDatagram(unreg), gone)
	if len(a.Topic(e.Topic)) != 0 || a.Stats().Unregistered != 1 {
		t.Fatal("the closed agent's unregistration was refused")
	}

	// Another host's entities are bound to its address.
	hostA := origin{addr: netip.MustParseAddrPort("10.9.8.7:4000"), sender: 5}
	hostB := origin{addr: netip.MustParseAddrPort("10.9.8.6:4000"), sender: 5}
	r := remoteEntity(d)
	r.Topic, r.Seq = "remote", 1
	a.handle(rawDatagram(r), hostA)
	r.Seq, r.Flags = 2, FlagUnregister
	a.handle(rawDatagram(r), hostB)
	if len(a.Topic("remote")) != 1 {
		t.Fatal("one host unregistered another host's entity")
	}
	a.handle(rawDatagram(r), hostA)
	if len(a.Topic("remote")) != 0 {
		t.Fatal("a host could not unregister its own entity")
	}
}

// A sample that claims a process of this host, in this PID namespace, is
// believed only from a socket of that process's uid (or root's).
func TestClaimsCheckedAgainstProc(t *testing.T) {
	t.Parallel()
	a, d := quietAgent(t)
	me := proc.Self()
	cr, err := proc.ReadCreds(int(me.PID))
	if err != nil {
		t.Fatal(err)
	}
	other := cr.UIDs[0] + 4242 // a uid this process does not have
	claim := localEntity(d, me)
	a.handle(rawDatagram(claim), localOrigin(other, 5000, 1))
	if s := a.Stats(); s.DroppedSpoofed != 1 || len(a.Topic(claim.Topic)) != 0 {
		t.Fatalf("uid %d spoke for pid %d (uid %d): %+v", other, me.PID, cr.UIDs[0], s)
	}
	a.handle(rawDatagram(claim), localOrigin(cr.UIDs[0], 5000, 1))
	if got := a.Topic(claim.Topic); len(got) != 1 || got[0].UID != cr.UIDs[0] {
		t.Fatalf("the process's own uid was refused: %+v", got)
	}
	rootClaim := localEntity(d, me)
	rootClaim.Topic = "by-root"
	a.handle(rawDatagram(rootClaim), localOrigin(0, 5001, 2))
	if len(a.Topic("by-root")) != 1 {
		t.Fatal("root may announce for any process")
	}
}

// Untrusted sources are held to a quota; a full registry evicts the
// largest untrusted source for a trusted newcomer and shares the rest
// fairly; nothing is dropped without being counted.
func TestQuotaAndEviction(t *testing.T) {
	t.Parallel()
	a, d := quietAgent(t)
	probe := remoteEntity(d)
	size := entrySize(&probe)
	a.mu.Lock()
	a.trusted = map[uint32]bool{7: true}
	a.maxSourceEntities, a.maxSourceBytes = 4, 100*size
	a.maxEntities, a.maxBytes = 6, 100*size
	a.mu.Unlock()
	send := func(uid uint32, n int, topic string) {
		for i := range n {
			e := remoteEntity(d)
			e.Topic = fmt.Sprintf("%s-%d", topic, i)
			a.handle(rawDatagram(e), localOrigin(uid, uint16(5000+uid), uint64(uid)))
		}
	}
	count := func(prefix string) (n int) {
		for _, e := range a.Snapshot() {
			if strings.HasPrefix(e.Topic, prefix) {
				n++
			}
		}
		return n
	}
	send(1001, 10, "flood") // 4 fit its quota
	if s := a.Stats(); count("flood") != 4 || s.DroppedQuota != 6 {
		t.Fatalf("quota: %d flood entities, %+v", count("flood"), s)
	}
	send(1002, 3, "other") // 2 fit the total (6); the third would need the flood's room: fair share 3 vs 3? no: flood 4 > other 2+1
	if count("other") != 3 || count("flood") != 3 || a.Stats().Evicted != 1 {
		t.Fatalf("fair share: other %d, flood %d, %+v", count("other"), count("flood"), a.Stats())
	}
	send(1002, 1, "late") // other has 3, flood 3: no room without taking more than its share
	if count("late") != 0 || a.Stats().DroppedFull != 1 {
		t.Fatalf("an untrusted source took more than its share: %+v", a.Stats())
	}
	send(7, 6, "trusted") // trusted: evicts untrusted entities until it fits
	if count("trusted") != 6 || count("flood")+count("other") != 0 || a.Stats().Evicted != 7 {
		t.Fatalf("trusted entities crowded out: trusted %d, flood %d, other %d, %+v", count("trusted"), count("flood"), count("other"), a.Stats())
	}
	send(7, 1, "more") // full of trusted entities: dropped, counted
	if count("more") != 0 || a.Stats().DroppedFull != 2 {
		t.Fatalf("%+v", a.Stats())
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.usage) != 1 || a.usage[source{uid: 7}].entities != 6 || len(a.meta) != 6 {
		t.Fatalf("bookkeeping: usage %v, meta %d", a.usage, len(a.meta))
	}
}

// TestOtherUserDatagrams: a second uid sends real datagrams to the
// registration port of the test's (root's) agents. It cannot remove or
// change another user's entity (whatever the sequence number), speak for
// another user's process, hide behind the shared registration port, or
// hold more than its quota of any registry.
func TestOtherUserDatagrams(t *testing.T) {
	t.Parallel()
	u := testutil.NewUser(t)
	d, port := testutil.Domain(t), testutil.Port(t)
	owner := newAgent(t, Config{Domain: d, Port: port, Refresh: time.Hour, Timeout: 2 * time.Hour})
	watcher := newAgent(t, Config{Domain: d, Port: port, Refresh: time.Hour, Timeout: 2 * time.Hour})
	watcher.mu.Lock()
	watcher.maxSourceEntities = 50
	watcher.mu.Unlock()
	if err := owner.Register(Entity{Kind: KindPublisher, ID: 77, Topic: "victim", Type: "t", MemFiles: []string{"shmfs_" + d + "_00000000000000aa"}}); err != nil {
		t.Fatal(err)
	}
	var victim Entity
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		es := watcher.Topic("victim")
		if len(es) != 1 {
			return errors.New("victim not seen")
		}
		victim = es[0]
		return nil
	})

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	atk := testutil.StartChildWith(t, testutil.Options{User: u, Stdin: r}, "inject", strconv.Itoa(port))
	r.Close()
	f := strings.Fields(atk.Line(t, 10*time.Second))
	if len(f) != 3 || f[0] != "ready" {
		t.Fatalf("attacker: %v", f)
	}
	pid, _ := strconv.Atoi(f[1])
	start, _ := strconv.ParseUint(f[2], 10, 64)
	send := func(cmd string, es ...Entity) {
		t.Helper()
		if _, err := fmt.Fprintf(w, "%s %s\n", cmd, hex.EncodeToString(rawDatagram(es...))); err != nil {
			t.Fatal(err)
		}
		if l := atk.Line(t, 10*time.Second); l != "ok" {
			t.Fatalf("attacker: %q", l)
		}
	}
	settle := func(what string, cond func(Stats) bool) {
		t.Helper()
		testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
			if s := watcher.Stats(); !cond(s) {
				return fmt.Errorf("%s: %+v", what, s)
			}
			return nil
		})
	}

	// 1. Unregistration and update of root's entity, seq 2^64-1.
	unreg, empty := victim, victim
	unreg.Seq, unreg.Flags = math.MaxUint64, FlagUnregister
	empty.Seq, empty.MemFiles = math.MaxUint64, nil
	send("send", unreg, empty)
	settle("forged unregistration and update refused", func(s Stats) bool { return s.DroppedSpoofed >= 2 })
	if es := watcher.Topic("victim"); len(es) != 1 || len(es[0].MemFiles) != 1 || watcher.Stats().Unregistered != 0 {
		t.Fatalf("the forgery changed root's entity: %+v", es)
	}
	// Root's own later updates still count: nothing is poisoned.
	if err := owner.Update(Entity{ID: 77, Type: "t2", MemFiles: victim.MemFiles}); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		if es := watcher.Topic("victim"); len(es) != 1 || es[0].Type != "t2" {
			return fmt.Errorf("owner's update not taken: %+v", es)
		}
		return nil
	})

	// 2. A new entity claiming a root process (this one), and one claiming
	// the attacker's own process.
	s0 := watcher.Stats()
	fake := localEntity(d, proc.Self())
	fake.Topic = "fake-root"
	own := localEntity(d, proc.Identity{PID: int32(pid), StartTime: start})
	own.Topic = "attacker-own"
	own.UID = 0 // claims root: the receiver writes the socket's uid instead
	send("send", fake, own)
	settle("claim of a root process refused", func(s Stats) bool { return s.DroppedSpoofed > s0.DroppedSpoofed })
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		if es := watcher.Topic("attacker-own"); len(es) != 1 || es[0].UID != u.UID {
			return fmt.Errorf("attacker's own entity: %+v", es)
		}
		return nil
	})
	if len(watcher.Topic("fake-root")) != 0 {
		t.Fatal("the attacker spoke for a root process")
	}

	// 3. From the registration port itself, which root's receivers share:
	// the sender cannot be told, so nothing is believed.
	s0 = watcher.Stats()
	hidden := remoteEntity(d)
	hidden.Topic = "hidden"
	send("fromport", hidden, unreg)
	settle("datagram from the shared port refused", func(s Stats) bool { return s.DroppedUnverified >= s0.DroppedUnverified+2 })
	if len(watcher.Topic("hidden")) != 0 || len(watcher.Topic("victim")) != 1 {
		t.Fatal("a datagram from the shared registration port was believed")
	}

	// 4. A flood: 200 entities; 49 fit the watcher's quota for that uid (50,
	// one taken by "attacker-own").
	for i := range 20 {
		var es []Entity
		for j := range 10 {
			e := remoteEntity(d)
			e.Topic = fmt.Sprintf("flood-%d-%d", i, j)
			es = append(es, e)
		}
		send("send", es...)
	}
	settle("flood held to the quota", func(s Stats) bool { return s.DroppedQuota >= 150 })
	n := 0
	for _, e := range watcher.Snapshot() {
		if strings.HasPrefix(e.Topic, "flood-") {
			n++
			if e.UID != u.UID {
				t.Fatalf("flood entity attributed to uid %d", e.UID)
			}
		}
	}
	if n != 49 {
		t.Fatalf("%d flood entities in the registry, want 49 (quota 50)", n)
	}
	// Root's topics are all still there.
	if len(watcher.Topic("victim")) != 1 {
		t.Fatal("root's entity lost in the flood")
	}
	atk.Signal(syscall.SIGTERM)
}
