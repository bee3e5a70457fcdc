package fs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

// childCycler (args: mountpoint topic n) opens and closes the files of a
// topic through the mount n times — data written, data read (non-blocking),
// header read, events read (non-blocking) — and a topic directory made and
// removed, then prints "done".
func childCycler(args []string) int {
	a := testutil.ChildArgs(args)
	mp, topic := a[0], a[1]
	n, _ := strconv.Atoi(a[2])
	dir := filepath.Join(mp, topic)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	buf := make([]byte, 1<<16)
	readOnce := func(path string, flags int) error {
		fd, err := syscall.Open(path, flags|syscall.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		if _, err := syscall.Read(fd, buf); err != nil && !errors.Is(err, syscall.EAGAIN) {
			return err
		}
		return nil
	}
	for i := 0; i < n; i++ {
		fd, err := syscall.Open(filepath.Join(dir, "data"), syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
		if err == nil {
			_, err = syscall.Write(fd, []byte("x"))
			syscall.Close(fd)
		}
		if err == nil {
			err = readOnce(filepath.Join(dir, "data"), syscall.O_RDONLY|syscall.O_NONBLOCK)
		}
		if err == nil {
			err = readOnce(filepath.Join(dir, "header"), syscall.O_RDONLY)
		}
		if err == nil {
			err = readOnce(filepath.Join(dir, "events"), syscall.O_RDONLY|syscall.O_NONBLOCK)
		}
		if err == nil {
			other := filepath.Join(mp, fmt.Sprintf("%s-dir%d", topic, i%3))
			if err = os.Mkdir(other, 0o755); err == nil {
				err = os.Remove(other)
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "cycle %d: %v\n", i, err)
			return 1
		}
	}
	fmt.Println("done")
	return 0
}

// TestNoLeaksThroughTheMount: cycles of opening and closing every file of
// a topic through the mount (served by this process; a child does the
// opening) leave the mount's process with the same descriptors,
// goroutines and shared-memory mappings, and /dev/shm with the same files,
// once the topic's lingering state has expired (go-fuse's pool of idle
// request readers, which follows the load, aside). SHMFS_LEAK_CYCLES sets
// the number of cycles (default 200).
func TestNoLeaksThroughTheMount(t *testing.T) {
	cycles := 200
	if s := os.Getenv("SHMFS_LEAK_CYCLES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("SHMFS_LEAK_CYCLES=%q: want a positive number", s)
		}
		cycles = n
	}
	e := newEnv(t, "core", MountOptions{Linger: 10 * time.Millisecond})
	domain := e.srv.fs.be.config().Domain
	run := func(n int) time.Duration {
		start := time.Now()
		c := testutil.StartChild(t, "cycler", e.vars, e.mp, "leak", strconv.Itoa(n))
		c.Expect(t, "done", time.Duration(n)*100*time.Millisecond+30*time.Second)
		if err := c.Wait(t, 10*time.Second); err != nil {
			t.Fatalf("cycler: %v", err)
		}
		return time.Since(start)
	}
	// Topics linger (10 ms here) and then go; the warm-up also starts the
	// FUSE server's reader goroutines.
	run(20)
	// go-fuse keeps a pool of idle request readers that grows and shrinks
	// with the load (a frame, not the "created by" line, in readRequest),
	// and its Serve goroutine is one of them while it reads: not counted.
	ignore := []string{"fuse.(*fuseFD).readRequest(0x", "fuse.(*Server).Serve(0x"}
	base := testutil.Stable(t, domain, ignore...)
	took := run(cycles)
	after := testutil.Settled(t, domain, base, 15*time.Second, ignore...)
	t.Logf("%d cycles (data written, data read, header, events, mkdir/rmdir) in %v: mount process before %v; after %v",
		cycles, took.Round(time.Millisecond), base, after)
}
