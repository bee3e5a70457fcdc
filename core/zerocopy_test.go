package core_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
)

// Zero copy on both sides: SendFunc fills the payload in place, a ZeroCopy
// subscriber reads it in place.

func TestZeroCopyReceiveAllocatesNothing(t *testing.T) {
	n, _ := openNode(t)
	s, err := n.NewSubscriber("zc", &core.SubscriberOptions{ZeroCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := n.NewPublisher("zc", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := testCtx(t, 30*time.Second)
	msg := make([]byte, 4096)
	var got int
	fn := func(h core.Header, view []byte) error { got += len(view); return nil }
	// Warm up: the first message connects.
	for i := 0; i < 3; i++ {
		if err := p.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
		if err := s.ReceiveFunc(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(500, func() {
		if err := p.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
		if err := s.ReceiveFunc(ctx, fn); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("zero-copy send+receive allocates %.2f objects per message, want 0", allocs)
	}
	// AllocsPerRun runs the function once more than asked, to warm up.
	if want := (3 + 501) * len(msg); got != want {
		t.Errorf("received %d bytes, want %d", got, want)
	}
}

// A view taken inside ReceiveFunc stays mapped until the callback returns,
// even when the publisher closes (and this process drops its feed) meanwhile.
func TestZeroCopyViewOutlivesPublisherClose(t *testing.T) {
	n, _ := openNode(t)
	ctx := testCtx(t, 10*time.Second)
	s, err := n.NewSubscriber("zcview", &core.SubscriberOptions{ZeroCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := n.NewPublisher("zcview", &core.PublisherOptions{DiscoveryWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	ti, _ := n.Topic("zcview")
	if len(ti.Publishers) != 1 {
		t.Fatalf("topic: %+v", ti)
	}
	ino := inode(t, ti.Publishers[0].MemFiles[0])
	msg := payload(1, 1, 1<<16)
	if err := p.Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
	var fault any
	err = s.ReceiveFunc(ctx, func(h core.Header, view []byte) error {
		p.Close()
		// Wait until this process dropped the feed (Stats shows no
		// publisher), giving an unmapping the chance to happen.
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && s.Stats().Publishers > 0; {
			time.Sleep(time.Millisecond)
		}
		old := debug.SetPanicOnFault(true)
		defer debug.SetPanicOnFault(old)
		defer func() { fault = recover() }()
		if !bytes.Equal(view, msg) {
			return errors.New("view changed")
		}
		return nil
	})
	if fault != nil {
		t.Fatalf("reading the zero-copy view inside fn after the publisher closed: %v", fault)
	}
	if err != nil {
		t.Fatal(err)
	}
	if s.Stats().Publishers != 0 {
		t.Fatal("the closed publisher's feed was not dropped")
	}
	// Once the callback returned, the mapping goes.
	checkUnmapped(t, ino)
}

// inode returns the inode number of the shared-memory object name.
func inode(t *testing.T, name string) uint64 {
	t.Helper()
	fi, err := os.Stat("/dev/shm/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// checkUnmapped waits until this process no longer maps the /dev/shm file
// with inode ino (mappings show the name the file was created under).
func checkUnmapped(t *testing.T, ino uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile("/proc/self/maps")
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) >= 6 && strings.HasPrefix(f[5], "/dev/shm/") && f[4] == strconv.FormatUint(ino, 10) {
				found = true
			}
		}
		if !found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("inode %d still mapped", ino)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The memory file grows while a zero-copy reader holds a view: the writer
// does not wait for the reader, the view stays intact, and the grown
// message arrives whole.
func TestGrowthWhileZeroCopyViewHeld(t *testing.T) {
	n, _ := openNode(t)
	ctx := testCtx(t, 10*time.Second)
	s, err := n.NewSubscriber("grow", &core.SubscriberOptions{ZeroCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := n.NewPublisher("grow", &core.PublisherOptions{DiscoveryWait: -1, MinSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	small := payload(5, 0, 64)
	big := payload(5, 1, 4<<20)
	if err := p.Send(ctx, small); err != nil {
		t.Fatal(err)
	}
	err = s.ReceiveFunc(ctx, func(h core.Header, view []byte) error {
		if err := p.Send(ctx, big); err != nil { // grows the file, now
			return err
		}
		if p.Stats().Grows == 0 {
			return errors.New("the big message did not grow the file")
		}
		if !bytes.Equal(view, small) {
			return fmt.Errorf("view changed under the reader")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := s.ReceiveFunc(ctx, func(h core.Header, view []byte) error {
		got = append(got, view...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Fatalf("after growth: %d bytes (want %d)", len(got), len(big))
	}
}

// A panic in SendFunc's fill publishes nothing and leaves the publisher
// usable; so does a panic in a zero-copy callback for the subscriber.
func TestPanicsInCallbacksLeaveThingsUsable(t *testing.T) {
	n, _ := openNode(t)
	ctx := testCtx(t, 10*time.Second)
	s, err := n.NewSubscriber("panics", &core.SubscriberOptions{ZeroCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := n.NewPublisher("panics", &core.PublisherOptions{DiscoveryWait: -1, AckTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	func() {
		defer func() { _ = recover() }()
		_ = p.SendFunc(ctx, 8, func([]byte) error { panic("fill failed") })
	}()
	if err := p.SendFunc(ctx, 3, func(b []byte) error { return errors.New("no") }); err == nil {
		t.Fatal("SendFunc whose fill fails returned nil")
	}
	if err := p.Send(ctx, []byte("one")); err != nil {
		t.Fatalf("Send after a panic in fill: %v", err)
	}
	func() {
		defer func() { _ = recover() }()
		_ = s.ReceiveFunc(ctx, func(core.Header, []byte) error { panic("callback failed") })
	}()
	if err := p.Send(ctx, []byte("two")); err != nil {
		t.Fatalf("Send after a panic in a zero-copy callback: %v", err)
	}
	m, err := s.Receive(ctx)
	if err != nil || string(m.Data) != "two" || m.Clock != 2 || m.Dropped != 0 {
		t.Fatalf("after the panics: %q clock %d dropped %d, %v (the failed fills published nothing, the panicked callback consumed \"one\")", m.Data, m.Clock, m.Dropped, err)
	}
}
