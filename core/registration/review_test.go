package registration

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/testutil"
)

// withoutFreeFDs runs fn while this process cannot open any descriptor
// (EMFILE). Not parallel: the package's parallel tests wait until the
// sequential ones have finished.
func withoutFreeFDs(t *testing.T, fn func()) {
	t.Helper()
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = uint64(fd) // the lowest free number is fd: nothing is free
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
			t.Fatal(err)
		}
	}()
	fn()
}

// TestReviewLiveEntitiesKeptWhenProcUnreadable: an agent that cannot read
// /proc/PID/stat (here: out of descriptors) knows nothing about the owner's
// liveness. It must not remove entities of a live local process
// (DeadRemoved) nor refuse new ones as if the owner had died (DroppedDead).
// It cannot read /proc/net/udp either, so it cannot tell who sent a new
// sample: that one waits (DroppedUnverified) until /proc is readable again
// and the sample is repeated.
func TestReviewLiveEntitiesKeptWhenProcUnreadable(t *testing.T) {
	d, port := testutil.Domain(t), testutil.Port(t)
	a := newAgent(t, Config{Domain: d, Port: port, Refresh: 20 * time.Millisecond, Timeout: time.Hour})
	in := newInjector(t, port)
	me := proc.Self() // a live local process: this one (another instance id)
	first, second := localEntity(d, me), localEntity(d, me)
	second.Topic = "second"
	in.send(t, rawDatagram(first))
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		if len(a.Topic(first.Topic)) != 1 {
			return errors.New("live local entity not added")
		}
		return nil
	})
	withoutFreeFDs(t, func() {
		s0 := a.Stats()
		in.send(t, rawDatagram(second))
		testutil.CheckFor(t, 2*time.Second, 2*time.Millisecond, func() error {
			s := a.Stats()
			if s.Sweeps < s0.Sweeps+3 || s.DroppedUnverified < s0.DroppedUnverified+1 {
				return fmt.Errorf("sweeps %d, unverified %d", s.Sweeps-s0.Sweeps, s.DroppedUnverified-s0.DroppedUnverified)
			}
			return nil
		})
	})
	s := a.Stats()
	if len(a.Topic(first.Topic)) != 1 || s.DeadRemoved != 0 || s.DroppedDead != 0 {
		t.Fatalf("entities of a live process lost while /proc was unreadable: first %d, DeadRemoved %d, DroppedDead %d",
			len(a.Topic(first.Topic)), s.DeadRemoved, s.DroppedDead)
	}
	second.Seq++
	in.send(t, rawDatagram(second))
	testutil.CheckFor(t, 2*time.Second, time.Millisecond, func() error {
		if len(a.Topic(second.Topic)) != 1 {
			return errors.New("the repeated sample was not added once /proc was readable again")
		}
		return nil
	})
}

// TestReviewWatchAfterCloseAndUnreadWatchers: Close returns promptly (its
// goroutines stopped) although watchers nobody reads hold pending changes;
// their channels are closed; cancel funcs called after (and racing with)
// Close are harmless.
func TestReviewWatchAfterCloseAndUnreadWatchers(t *testing.T) {
	t.Parallel()
	d, port := testutil.Domain(t), testutil.Port(t)
	a, err := NewAgent(Config{Domain: d, Port: port, Refresh: time.Hour, Timeout: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var chans []<-chan Change
	var cancels []func()
	for i := range 4 {
		ch, cancel := a.Watch(i % 2) // buffers 0 and 1, never read
		chans, cancels = append(chans, ch), append(cancels, cancel)
	}
	for i := range 50 {
		if err := a.Register(Entity{Kind: KindPublisher, ID: uint64(i + 1), Topic: fmt.Sprint("t", i)}); err != nil {
			t.Fatal(err)
		}
	}
	go cancels[0]() // racing with Close
	if err := a.Close(); err != nil {
		t.Fatalf("Close with unread watchers: %v", err)
	}
	for _, c := range cancels {
		c()
		c()
	}
	for i, ch := range chans {
		deadline := time.After(2 * time.Second)
	drain:
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					break drain
				}
			case <-deadline:
				t.Fatalf("watch channel %d not closed after Close", i)
			}
		}
	}
	ch, cancel := a.Watch(1)
	cancel()
	if _, ok := <-ch; ok {
		t.Fatal("Watch after Close delivered a change")
	}
}
