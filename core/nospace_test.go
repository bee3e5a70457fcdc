package core_test

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

func init() {
	children["fullshm"] = childFullShm
}

// childFullShm runs in a mount namespace of its own: it mounts a 1 MiB
// tmpfs on /dev/shm, then publishes until /dev/shm is full and prints what
// each step got: "create <err>", "send <err>".
func childFullShm(args []string) int {
	if err := syscall.Mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=1m"); err != nil {
		return fail("mount tmpfs: %v", err)
	}
	ctx, cancel := childContext(time.Minute)
	defer cancel()
	n, err := childNode()
	if err != nil {
		return fail("OpenNode: %v", err)
	}
	defer n.Close()
	report := func(what string, err error) {
		switch {
		case err == nil:
			fmt.Println(what, "ok")
		case errors.Is(err, core.ErrNoSpace):
			fmt.Println(what, "ErrNoSpace")
		default:
			fmt.Println(what, err)
		}
	}
	_, err = n.NewPublisher("big", &core.PublisherOptions{MinSize: 4 << 20})
	report("create", err)
	p, err := n.NewPublisher("small", &core.PublisherOptions{DiscoveryWait: -1})
	report("create", err)
	if err != nil {
		return 1
	}
	defer p.Close()
	report("send", p.Send(ctx, make([]byte, 100)))
	report("send", p.Send(ctx, make([]byte, 2<<20))) // the file must grow past /dev/shm
	report("send", p.Send(ctx, make([]byte, 100)))   // still usable
	return 0
}

// A full /dev/shm is ErrNoSpace through the API (creating a publisher, and
// a message that makes its memory file grow), never SIGBUS; the publisher
// stays usable.
func TestFullDevShmIsErrNoSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		testutil.RequireCI(t, "needs root for a private /dev/shm")
	}
	_, e := newConfig(t)
	c := testutil.StartChildWith(t, testutil.Options{Env: e, Unshare: syscall.CLONE_NEWNS}, "fullshm")
	for _, want := range []string{"create ErrNoSpace", "create ok", "send ok", "send ErrNoSpace", "send ok"} {
		if got := c.Line(t, 10*time.Second); got != want {
			t.Fatalf("got %q, want %q\n%s", got, want, c.Output())
		}
	}
	if err := c.Wait(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}
