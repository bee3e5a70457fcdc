package core_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/core/registration"
	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/testutil"
	"github.com/shmfs/shmfs/internal/udpsock"
)

// Registration is a hint, shared memory the truth: forged datagrams can make
// a process look at something, never make it believe it. These tests forge
// datagrams as a local attacker would (real UDP to the registration port);
// the attacks with a second user are in tests/.

func init() {
	children["pubtick"] = childPubTick
}

// childPubTick: args topic. Publishes "tick <n>" every 2 ms (ack mode)
// until SIGTERM. It announces every 5 s only: a forged datagram's effect on
// a peer's registry lasts until its next announcement.
func childPubTick(args []string) int {
	a := testutil.ChildArgs(args)
	ctx, cancel := childContext(time.Minute)
	defer cancel()
	cfg := testConfig()
	cfg.Refresh, cfg.Timeout = 5*time.Second, 20*time.Second
	n, err := core.OpenNode(cfg)
	if err != nil {
		return fail("OpenNode: %v", err)
	}
	defer n.Close()
	p, err := n.NewPublisher(a[0], &core.PublisherOptions{AckTimeout: time.Second})
	if err != nil {
		return fail("NewPublisher: %v", err)
	}
	fmt.Println("ready")
	for i := 0; ctx.Err() == nil; i++ {
		if err := p.Send(ctx, []byte(fmt.Sprintf("tick %d", i))); err != nil && ctx.Err() == nil && !errors.Is(err, core.ErrAckTimeout) {
			return fail("Send: %v", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return 0
}

// forger sends registration datagrams as anyone.
type forger struct {
	c   *net.UDPConn
	dst *net.UDPAddr
}

func newForger(t *testing.T, port int) *forger {
	t.Helper()
	c, err := udpsock.BroadcastSender(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &forger{c: c, dst: &net.UDPAddr{IP: net.ParseIP(registration.LocalBroadcast), Port: port}}
}

func (f *forger) send(t *testing.T, es ...registration.Entity) {
	t.Helper()
	b, err := registration.Encode(nil, es)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.WriteToUDP(b, f.dst); err != nil {
		t.Fatal(err)
	}
}

// impersonate returns a registration entity claiming to be e, of the
// process with e's pid on this host.
func impersonate(t *testing.T, domain string, e core.EntityInfo) registration.Entity {
	t.Helper()
	st, _, err := proc.Stat(int(e.PID))
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	return registration.Entity{
		Domain: domain, HostName: host, MachineID: proc.MachineID(), BootID: proc.BootID(),
		Instance: e.Instance, PID: e.PID, StartTime: st, PIDNamespace: proc.PIDNamespace(),
		ProcessName: e.Process, Kind: e.Kind, ID: e.ID, Topic: e.Topic, Type: e.Type,
		MemFiles: e.MemFiles, BufferCount: 1, Seq: math.MaxUint64 - 1,
	}
}

// A forged unregistration (or an empty memory-file list) of a live
// publisher cuts no subscriber off: the subscriber checks the memory file
// and the process before it lets go.
func TestForgedUnregistrationCutsNobodyOff(t *testing.T) {
	for _, variant := range []string{"unregister", "no-memory-files"} {
		t.Run(variant, func(t *testing.T) {
			n, e := openNode(t)
			pub := testutil.StartChild(t, "pubtick", e, "victim")
			pub.Expect(t, "ready", 10*time.Second)
			s, err := n.NewSubscriber("victim", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := testCtx(t, 20*time.Second)
			// Receive all along, checking for gaps.
			clocks := make(chan uint64, 1<<16)
			errc := make(chan error, 1)
			go func() {
				last := uint64(0)
				for {
					m, err := s.Receive(ctx)
					if err != nil {
						errc <- err
						return
					}
					if m.Dropped != 0 || (last != 0 && m.Clock != last+1) {
						errc <- fmt.Errorf("clock %d after %d, dropped %d", m.Clock, last, m.Dropped)
						return
					}
					last = m.Clock
					clocks <- m.Clock
				}
			}()
			<-clocks
			ti, _ := n.Topic("victim")
			if len(ti.Publishers) != 1 {
				t.Fatalf("topic %+v", ti)
			}
			changes, stop := n.Watch(64)
			defer stop()
			forged := impersonate(t, n.Config().Domain, ti.Publishers[0])
			if variant == "unregister" {
				forged.Flags = registration.FlagUnregister
			} else {
				forged.MemFiles = nil
			}
			newForger(t, n.Config().Port).send(t, forged)
			// Proof that the forgery reached the registry.
			for seen := false; !seen; {
				select {
				case c := <-changes:
					seen = c.Entity.ID == forged.ID && (c.Kind == core.Removed || len(c.Entity.MemFiles) == 0)
				case <-ctx.Done():
					t.Fatal("the forged datagram never reached the registry")
				}
			}
			// The subscriber goes on receiving, without a gap.
			var last uint64
			for i := 0; i < 200; i++ {
				select {
				case last = <-clocks:
				case err := <-errc:
					t.Fatalf("after the forgery: %v", err)
				}
			}
			if st := s.Stats(); st.Publishers != 1 || st.Dropped != 0 {
				t.Fatalf("subscriber stats %+v after clock %d", st, last)
			}
			stopChild(t, pub)
		})
	}
}

// A forged publisher of topic "commands" that names the memory file of a
// real "camera" publisher is refused: the file's header names its own
// publisher and topic. The subscriber hears why.
func TestForgedPublisherCannotRedirectAnotherTopic(t *testing.T) {
	n, e := openNode(t)
	pub := testutil.StartChild(t, "pubtick", e, "camera")
	pub.Expect(t, "ready", 10*time.Second)
	var camera core.EntityInfo
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		ti, _ := n.Topic("camera")
		if len(ti.Publishers) != 1 {
			return fmt.Errorf("camera publishers: %+v", ti.Publishers)
		}
		camera = ti.Publishers[0]
		return nil
	})
	s, err := n.NewSubscriber("commands", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mon, err := n.Monitor("commands")
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	f := newForger(t, n.Config().Port)
	// As the camera's own process (same instance, pid, start time: the
	// creator check passes) and as a made-up one.
	same := impersonate(t, n.Config().Domain, camera)
	same.ID, same.Topic, same.Seq = 0xbad, "commands", 1
	other := same
	other.Instance, other.ID = 0xfeed, 0xbad2
	f.send(t, same, other)
	ctx := testCtx(t, 5*time.Second)
	_, err = s.Receive(ctx)
	if !errors.Is(err, core.ErrUnverified) || !strings.Contains(err.Error(), `topic "camera"`) {
		t.Fatalf("Receive: %v, want ErrUnverified saying whose file it is", err)
	}
	// Both forgeries name one memory file: reported once. Nothing else
	// comes, no message either.
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if m, err := s.Receive(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Receive: %q, %v; want nothing", m.Data, err)
	}
	if st := s.Stats(); st.Publishers != 0 || st.Received != 0 {
		t.Fatalf("stats %+v", st)
	}
	// A monitor refuses the same file and says so once, too.
	errs := mon.Errors()
	if len(errs) != 1 || !errors.Is(errs[0], core.ErrUnverified) || !strings.Contains(errs[0].Error(), `topic "camera"`) {
		t.Fatalf("Monitor.Errors: %v, want one ErrUnverified saying whose file it is", errs)
	}
	if errs := mon.Errors(); len(errs) != 0 {
		t.Fatalf("Monitor.Errors again: %v, want none", errs)
	}
	if _, ok := mon.Latest(); ok {
		t.Fatal("the monitor shows a message of the forged publisher")
	}
	stopChild(t, pub)
}

// Forged subscribers make a publisher create nothing: subscriber processes
// create their own bell and ack events, and a publisher only opens those
// whose creator is the announced, live process.
func TestForgedSubscribersCreateNoFiles(t *testing.T) {
	n, _ := openNode(t)
	p, err := n.NewPublisher("flood", &core.PublisherOptions{AckTimeout: time.Second, DiscoveryWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	before := len(testutil.ShmObjects(n.Config().Domain))
	f := newForger(t, n.Config().Port)
	host, _ := os.Hostname()
	for i := 0; i < 1000; i++ {
		f.send(t, registration.Entity{
			Domain: n.Config().Domain, HostName: host, MachineID: proc.MachineID(), BootID: proc.BootID(),
			Instance: uint64(0x1000 + i), PID: 1, StartTime: 1, PIDNamespace: proc.PIDNamespace(),
			Kind: registration.KindSubscriber, ID: uint64(i + 1), Topic: "flood",
			MemFiles: []string{fmt.Sprintf("shmfs_%s_%016x_snd", n.Config().Domain, 0x5000+i)}, Seq: 1,
		})
	}
	if err := p.Send(testCtx(t, 5*time.Second), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if after := len(testutil.ShmObjects(n.Config().Domain)); after != before {
		t.Fatalf("%d objects in /dev/shm after 1000 forged subscribers, %d before", after, before)
	}
	if st := p.Stats(); st.Subscribers != 0 {
		t.Fatalf("publisher linked forged subscribers: %+v", st)
	}
}
