package fs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
	"golang.org/x/sys/unix"
)

var eventLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ([a-z-]+) (.*)$`)

// nextEvent reads event lines until one of kind arrives; it returns its
// key=value text.
func nextEvent(t *testing.T, p *testutil.Child, kind string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l := p.Line(t, time.Until(deadline))
		m := eventLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("malformed event line %q", l)
		}
		if m[1] == kind {
			return m[2]
		}
	}
}

func TestHeaderAndEvents(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.sh(`mkdir "$M/hdr"`, 5*time.Second)
		if out := e.sh(`cat "$M/hdr/header"`, 5*time.Second); !strings.Contains(out, "last-message: none seen\n") {
			t.Fatalf("header before any message:\n%s", out)
		}
		ev := e.start("cat", e.path("hdr", "events"))
		e.waitEventReaders("hdr", 1)
		rd := e.start("cat", e.path("hdr", "data"))
		e.waitSubscribers("hdr", 1)
		if kv := nextEvent(t, ev, "subscriber-added"); !strings.Contains(kv, "id=") {
			t.Fatalf("subscriber-added %q", kv)
		}
		e.sh(`echo hello > "$M/hdr/data"`, 10*time.Second)
		if l := rd.Line(t, 5*time.Second); l != "hello" {
			t.Fatalf("reader got %q", l)
		}
		if kv := nextEvent(t, ev, "message"); !strings.HasPrefix(kv, "clock=1 size=6 ") {
			t.Fatalf("message event %q", kv)
		}
		out := e.sh(`cat "$M/hdr/header"`, 5*time.Second)
		for k, want := range map[string]string{"topic": "hdr", "size": "6", "clock": "1", "publishers": "1", "subscribers": "1"} {
			if v, err := field(out, k); err != nil || v != want {
				t.Errorf("header %s = %q (%v), want %q", k, v, err, want)
			}
		}
		for _, k := range []string{"time", "hash", "ack-timeout", "type", "memory-files"} {
			if _, err := field(out, k); err != nil {
				t.Error(err)
			}
		}
		rd.Kill()
		if kv := nextEvent(t, ev, "subscriber-removed"); !strings.Contains(kv, "id=") {
			t.Fatalf("subscriber-removed %q", kv)
		}
	})
}

func TestMkdirRmdir(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		if out := e.sh(`mkdir "$M/decl" && ls "$M"`, 5*time.Second); out != "decl\n" {
			t.Fatalf("after mkdir: %q", out)
		}
		if out, err := e.shErr(`mkdir "$M/decl"`, 5*time.Second); err == nil || !strings.Contains(out, "File exists") {
			t.Fatalf("second mkdir: %v %q", err, out)
		}
		if out := e.sh(`ls "$M/decl"`, 5*time.Second); out != "data\nevents\nheader\nwhole\n" {
			t.Fatalf("topic dir lists %q", out)
		}
		c := e.start("cat", e.path("decl", "data"))
		e.waitSubscribers("decl", 1)
		if out, err := e.shErr(`rmdir "$M/decl"`, 5*time.Second); err == nil || !strings.Contains(out, "busy") {
			t.Fatalf("rmdir with an open file: %v %q", err, out)
		}
		c.Kill()
		_ = c.Wait(t, 5*time.Second)
		e.waitSubscribers("decl", 0)
		testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			_, err := e.shErr(`rmdir "$M/decl"`, 5*time.Second)
			return err
		})
		if out := e.sh(`ls "$M"; test -e "$M/decl" && echo still; true`, 5*time.Second); out != "" {
			t.Fatalf("after rmdir: %q", out)
		}
		// A topic that others use cannot be removed.
		e.publisher("used")
		testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			out, err := e.shErr(`rmdir "$M/used"`, 5*time.Second)
			if err == nil || !strings.Contains(out, "not empty") {
				return fmt.Errorf("rmdir of a used topic: %v %q", err, out)
			}
			return nil
		})
		if out, err := e.shErr(`mkdir "$M/used"`, 5*time.Second); err == nil || !strings.Contains(out, "File exists") {
			t.Fatalf("mkdir of a used topic: %v %q", err, out)
		}
	})
}

// TestCancelWakesReadersAndReleases: cancelling Mount's context ends
// blocked readers with end of file, unmounts and releases shared memory.
func TestCancelWakesReadersAndReleases(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			requireFUSE(t)
			domain, port := testutil.Domain(t), testutil.Port(t)
			mp := t.TempDir()
			e := &env{t: t, kind: kind, mp: mp, vars: []string{"SHMFS_DOMAIN=" + domain, fmt.Sprintf("SHMFS_PORT=%d", port)}}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var err error
			o := MountOptions{Config: core.Config{Domain: domain, Port: port}}
			if kind == "fake" {
				e.fake = newFakeBroker()
				e.srv, err = mount(ctx, mp, o, e.fake)
			} else {
				e.srv, err = Mount(ctx, mp, o)
			}
			if err != nil {
				t.Fatal(err)
			}
			e.sh(`mkdir "$M/wake"`, 5*time.Second)
			rd := e.start("cat", e.path("wake", "data"))
			ev := e.start("cat", e.path("wake", "events"))
			e.waitSubscribers("wake", 1)
			e.sh(`echo before > "$M/wake/data"`, 10*time.Second)
			if l := rd.Line(t, 5*time.Second); l != "before" {
				t.Fatalf("reader got %q", l)
			}
			// The events reader has opened its file once it prints a line;
			// publish until it does (it may have opened after "before").
			testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
				select {
				case <-ev.Lines():
					return nil
				default:
				}
				e.sh(`echo probe > "$M/wake/data"`, 10*time.Second)
				select {
				case <-ev.Lines():
					return nil
				case <-time.After(100 * time.Millisecond):
					return fmt.Errorf("events reader printed nothing; output %q", ev.Transcript())
				}
			})
			cancel()
			for _, p := range []*testutil.Child{rd, ev} {
				if err := p.Wait(t, 3*time.Second); err != nil {
					t.Errorf("%s: %v (want end of file, exit 0)", p.Name(), err)
				}
			}
			done := make(chan error, 1)
			go func() { done <- e.srv.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Wait: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Wait did not return after cancel")
			}
			if mounted(mp) {
				t.Fatal("still mounted")
			}
			if left := testutil.ShmObjects(domain); len(left) > 0 {
				t.Fatalf("shared memory left after Wait: %v", left)
			}
		})
	}
}

// TestDaemonRestart: SIGTERM makes a serving daemon wake its readers and
// unmount; after SIGKILL the stale mountpoint is recovered by the next mount.
func TestDaemonRestart(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			requireFUSE(t)
			domain, port := testutil.Domain(t), testutil.Port(t)
			mp := t.TempDir()
			e := &env{t: t, kind: kind, mp: mp, vars: []string{"SHMFS_DOMAIN=" + domain, fmt.Sprintf("SHMFS_PORT=%d", port)}}
			// Registered after TempDir, so it runs before its removal: a
			// test that fails half-way must not leave a (stale) mount.
			t.Cleanup(func() {
				if mounted(mp) {
					_ = unix.Unmount(mp, unix.MNT_DETACH)
				}
			})

			d := testutil.StartChild(t, "serve", e.vars, kind, mp)
			d.Expect(t, "ready", 10*time.Second)
			e.sh(`mkdir "$M/x"`, 5*time.Second)
			rd := e.start("cat", e.path("x", "data"))
			testutil.WaitBlockedInRead(t, rd.PID(), 5*time.Second)
			d.Signal(syscall.SIGTERM)
			if err := rd.Wait(t, 3*time.Second); err != nil {
				t.Errorf("reader: %v", err)
			}
			d.Expect(t, "unmounted", 5*time.Second)
			if err := d.Wait(t, 5*time.Second); err != nil {
				t.Fatalf("daemon: %v", err)
			}

			d2 := testutil.StartChild(t, "serve", e.vars, kind, mp)
			d2.Expect(t, "ready", 10*time.Second)
			e.sh(`mkdir "$M/y"`, 5*time.Second)
			d2.Kill()
			_ = d2.Wait(t, 5*time.Second)
			if out, err := e.shErr(`ls "$M"`, 5*time.Second); err == nil || !strings.Contains(out, "not connected") {
				t.Fatalf("after SIGKILL ls gave %v %q, want a stale mount", err, out)
			}
			d3 := testutil.StartChild(t, "serve", e.vars, kind, mp)
			d3.Expect(t, "ready", 10*time.Second)
			if out := e.sh(`mkdir "$M/z" && ls "$M"`, 5*time.Second); out != "z\n" {
				t.Fatalf("remounted ls: %q", out)
			}
			d3.Signal(syscall.SIGTERM)
			d3.Expect(t, "unmounted", 5*time.Second)
			if err := d3.Wait(t, 5*time.Second); err != nil {
				t.Fatalf("daemon: %v", err)
			}
			if r := testutil.Run(t, 5*time.Second, testutil.Options{}, "grep", "-c", " "+mp+" ", "/proc/self/mountinfo"); r.Err == nil {
				t.Fatalf("mount entries left: %s", r.Stdout)
			}
		})
	}
}

// TestUnmountBusy: a file held open without reading keeps the kernel from
// unmounting; Unmount detaches lazily, reports ErrBusy and still releases
// all shared memory.
func TestUnmountBusy(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.sh(`mkdir "$M/busy"`, 5*time.Second)
		e.sh(`echo x > "$M/busy/data"`, 5*time.Second) // creates the publisher's memory file
		holder := e.start("sh", "-c", `exec 3<"$M/busy/data"; echo open; exec sleep 30`)
		if l := holder.Line(t, 5*time.Second); l != "open" {
			t.Fatal(l)
		}
		e.busyOK = true
		err := e.srv.Unmount()
		if !errors.Is(err, ErrBusy) {
			t.Fatalf("Unmount: %v, want ErrBusy", err)
		}
		if mounted(e.mp) {
			t.Fatal("not detached")
		}
		if left := testutil.ShmObjects(strings.TrimPrefix(e.vars[0], "SHMFS_DOMAIN=")); e.kind == "core" && len(left) > 0 {
			t.Fatalf("shared memory left: %v", left)
		}
		holder.Kill()
		_ = holder.Wait(t, 5*time.Second)
	})
}

// A process the mounting process starts must not inherit the FUSE
// connection: holding it, the child would keep the mount alive after the
// server dies, and the mount's readers would hang in D state
// (third_party/go-fuse/PATCHES.md, patch 2).
func TestChildrenDoNotInheritTheFUSEConnection(t *testing.T) {
	e := newEnv(t, "fake", MountOptions{})
	c := e.start("sh", "-c", "echo ready; exec sleep 60")
	c.Expect(t, "ready", 10*time.Second) // past exec: close-on-exec applied
	dir := fmt.Sprintf("/proc/%d/fd", c.PID())
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(fds) == 0 {
		t.Fatalf("%s: no descriptors (want at least stdin, stdout, stderr)", dir)
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(dir, fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if target == "/dev/fuse" {
			t.Errorf("child %d holds /dev/fuse as fd %s", c.PID(), fd.Name())
		}
	}
}
