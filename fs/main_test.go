package fs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

func TestMain(m *testing.M) {
	children := map[string]func([]string) int{
		"serve":   childServe,
		"corepub": childCorePub,
		"coresub": childCoreSub,
		"goread":  childGoRead,
		"cycler":  childCycler,
	}
	for k, v := range benchChildren {
		children[k] = v
	}

	testutil.Main(m, children)
}

// childServe mounts (args: kind mountpoint) and serves until SIGTERM/SIGINT.
func childServe(args []string) int {
	a := testutil.ChildArgs(args)
	kind, mp := a[0], a[1]
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var s *Server
	var err error
	if kind == "fake" {
		s, err = mount(ctx, mp, MountOptions{}, newFakeBroker())
	} else {
		s, err = Mount(ctx, mp, MountOptions{})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	if err := s.Wait(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("unmounted")
	return 0
}

// coreNode opens the core node of a child process (domain and port from
// the environment); the node lives as long as the child.
func coreNode() *core.Node {
	n, err := core.OpenNode(core.Config{})
	if err != nil {
		panic(err)
	}
	return n
}

// childCorePub publishes (args: topic count) messages "pub-<i>\n" with the
// core API, then waits for SIGTERM and closes the publisher.
func childCorePub(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	a := testutil.ChildArgs(args)
	n, _ := strconv.Atoi(a[1])
	// Ack mode: the test wants every message, also when the reader is slow.
	p, err := coreNode().NewPublisher(a[0], &core.PublisherOptions{AckTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer p.Close()
	fmt.Println("ready")
	for i := 1; i <= n; i++ {
		if err := p.Send(context.Background(), fmt.Appendf(nil, "pub-%d\n", i)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Println("sent")
	select {
	case <-ctx.Done():
	case <-time.After(time.Minute):
	}
	return 0
}

// childCoreSub subscribes (args: topic) with the core API, prints "ready",
// and prints "<size> <sha256>" of the first message.
func childCoreSub(args []string) int {
	a := testutil.ChildArgs(args)
	s, err := coreNode().NewSubscriber(a[0], nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	fmt.Println("ready")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := s.Receive(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sum := sha256.Sum256(m.Data)
	fmt.Println(len(m.Data), hex.EncodeToString(sum[:]))
	return 0
}

// childGoRead reads (args: path count) messages from a data file with
// plain os.File reads and prints each one; the Go runtime retries reads
// that a signal interrupted (EINTR).
func childGoRead(args []string) int {
	a := testutil.ChildArgs(args)
	n, _ := strconv.Atoi(a[1])
	f, err := os.Open(a[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer f.Close()
	fmt.Println("ready")
	buf := make([]byte, 1<<16)
	for i := 0; i < n; i++ {
		k, err := f.Read(buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		os.Stdout.Write(buf[:k])
	}
	return 0
}
