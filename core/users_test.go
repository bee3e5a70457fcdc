package core_test

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

// Topics of different users (core/access.go): the kernel keeps another
// user's 0600 memory file out of reach, a subscriber takes messages only
// from its own uid, root, or a user sharing a group with it, and both sides
// say when something is refused. Children run as throwaway users.

func init() {
	children["upub"] = childUserPub
	children["usub"] = childUserSub
}

// childUserPub: args topic mode. Publishes "tick <n>" every 5 ms in ack
// mode with the given file mode (octal) until SIGTERM; prints "ready" and,
// every 20 messages, "stats sent=N subs=M".
func childUserPub(args []string) int {
	a := testutil.ChildArgs(args)
	mode, err := strconv.ParseUint(a[1], 8, 32)
	if err != nil {
		return fail("mode %q: %v", a[1], err)
	}
	ctx, _, p, done, err := childPublisher(a[0], &core.PublisherOptions{Mode: os.FileMode(mode), AckTimeout: time.Second}, time.Minute)
	if err != nil {
		return fail("%v", err)
	}
	defer done()
	fmt.Println("ready")
	for i := 1; ctx.Err() == nil; i++ {
		if err := p.Send(ctx, []byte(fmt.Sprintf("tick %d", i))); err != nil && ctx.Err() == nil && !errors.Is(err, core.ErrAckTimeout) {
			return fail("Send: %v", err)
		}
		if i%20 == 0 {
			fmt.Printf("stats sent=%d subs=%d\n", p.Stats().Sent, p.Stats().Subscribers)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0
}

// childUserSub: args topic. Prints "ready", then "msg <payload>" for every
// message and "err <error>" for every error Receive returns, until SIGTERM.
func childUserSub(args []string) int {
	a := testutil.ChildArgs(args)
	ctx, subs, done, err := childSubscribers(a[0], 1, nil, time.Minute)
	if err != nil {
		return fail("%v", err)
	}
	defer done()
	s := subs[0]
	fmt.Println("ready")
	for ctx.Err() == nil {
		m, err := s.Receive(ctx)
		switch {
		case err == nil:
			fmt.Printf("msg %s\n", m.Data)
		case ctx.Err() == nil:
			fmt.Printf("err %v\n", err)
		}
	}
	return 0
}

// Another user's subscriber of a 0600 topic cannot read it and is told so
// once, with owner and mode; the publisher lists it as unattached (it may
// not read the topic) and does not wait for it.
func TestOtherUserCannotReadTopic(t *testing.T) {
	u := testutil.NewUser(t)
	n, e := openNode(t)
	p, err := n.NewPublisher("secret", &core.PublisherOptions{AckTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sub := testutil.StartChildWith(t, testutil.Options{Env: e, User: u, StopSignal: 15}, "usub", "secret")
	sub.Expect(t, "ready", 10*time.Second)
	var un []core.UnattachedSubscriber
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if un = p.Unattached(); len(un) != 1 || un[0].Err == nil {
			return fmt.Errorf("unattached: %+v", un)
		}
		return nil
	})
	var pe *core.PermissionError
	if !errors.As(un[0].Err, &pe) || un[0].PID != int32(sub.PID()) || un[0].UID != u.UID || !errors.Is(un[0].Err, core.ErrPermission) {
		t.Fatalf("unattached %+v, want the subscriber pid %d uid %d refused", un, sub.PID(), u.UID)
	}
	ctx := testCtx(t, 10*time.Second)
	for i := 0; i < 20; i++ {
		if err := p.Send(ctx, []byte("classified")); err != nil {
			t.Fatalf("Send: %v (the other user's subscriber must not hold it back)", err)
		}
	}
	want := fmt.Sprintf(`err permission denied: topic "secret" is owned by uid 0 (mode 0600): publisher pid %d; we are uid %d`, os.Getpid(), u.UID)
	if l := sub.Line(t, 5*time.Second); l != want {
		t.Fatalf("subscriber said %q, want %q", l, want)
	}
	sub.Stop(t, 10*time.Second)
	if out := sub.Output(); strings.Contains(out, "msg") || strings.Count(out, "err ") != 1 {
		t.Fatalf("subscriber output:\n%s", out)
	}
}

// A user cannot feed messages to another user's subscriber: root's
// subscriber ignores (and reports) a publisher of another uid, also one
// that shares its topic with its own group (0660) when root is not in that
// group. A subscriber in that group takes them, and the publisher links it
// (acknowledgements, bell).
func TestOtherUserCannotInject(t *testing.T) {
	u1, u2 := testutil.NewUser(t), testutil.NewUser(t)
	for _, mode := range []string{"600", "660"} {
		t.Run(mode, func(t *testing.T) {
			n, e := openNode(t)
			s, err := n.NewSubscriber("commands", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			pub := testutil.StartChildWith(t, testutil.Options{Env: e, User: u1, StopSignal: 15}, "upub", "commands", mode)
			pub.Expect(t, "ready", 10*time.Second)
			ctx := testCtx(t, 5*time.Second)
			_, err = s.Receive(ctx)
			var pe *core.PermissionError
			if !errors.As(err, &pe) || pe.Owner != u1.UID || pe.PID != int32(pub.PID()) || !strings.Contains(err.Error(), "does not share the topic with a group of ours") {
				t.Fatalf("Receive: %v, want a permission error naming uid %d", err, u1.UID)
			}
			// The publisher keeps sending; nothing reaches root.
			for sent := 0; sent < 100; {
				if _, err := fmt.Sscanf(pub.Line(t, 10*time.Second), "stats sent=%d", &sent); err != nil {
					continue
				}
			}
			if m, ok, err := s.TryReceive(); ok || err != nil {
				t.Fatalf("root's subscriber got %q, %v from another user", m.Data, err)
			}
			if st := s.Stats(); st.Received != 0 || st.Publishers != 0 {
				t.Fatalf("stats %+v", st)
			}
			if mode != "660" {
				pub.Stop(t, 10*time.Second)
				return
			}
			// A subscriber of uid u2 in u1's group takes them, acknowledged.
			member := &testutil.User{Name: u2.Name, UID: u2.UID, GID: u1.GID}
			sub := testutil.StartChildWith(t, testutil.Options{Env: e, User: member, StopSignal: 15}, "usub", "commands")
			sub.Expect(t, "ready", 10*time.Second)
			if l := sub.Line(t, 10*time.Second); !strings.HasPrefix(l, "msg tick ") {
				t.Fatalf("group member: %q", l)
			}
			for sent, subs := 0, 0; subs != 1; {
				if _, err := fmt.Sscanf(pub.Line(t, 10*time.Second), "stats sent=%d subs=%d", &sent, &subs); err != nil {
					continue
				}
			}
			sub.Stop(t, 10*time.Second)
			pub.Stop(t, 10*time.Second)
		})
	}
}
