package fs

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"

	"golang.org/x/sys/unix"
)

// Review tests: each one shows a bug (it fails until the code is fixed) or
// pins behaviour no other test covers.

func init() {
	// TestMain (main_test.go) passes benchChildren to testutil.Main.
	benchChildren["review-serve-linger"] = childServeLinger
}

// childServeLinger mounts the fake backend (args: mountpoint) with
// MountOptions.Linger = 1ns and serves until SIGTERM.
func childServeLinger(args []string) int {
	mp := testutil.ChildArgs(args)[0]
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	s, err := mount(ctx, mp, MountOptions{Linger: time.Nanosecond}, newFakeBroker())
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

// python runs a python3 script in a child and returns its stdout.
func (e *env) python(script string, timeout time.Duration) string {
	e.t.Helper()
	f := filepath.Join(e.t.TempDir(), "script.py")
	if err := os.WriteFile(f, []byte(script), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return e.sh(`python3 "`+f+`"`, timeout)
}

// TestReviewWholeTooLargePublishesNothing: when a write(2) to whole fails
// with EFBIG (the message would exceed MaxMessageSize), the following
// close(2) must not publish the part written before as if it were the
// whole message. Bug: `cat 65MiB > T/whole` fails with "File too large"
// and yet a truncated 64 MiB message is published.
func TestReviewWholeTooLargePublishesNothing(t *testing.T) {
	e := newEnv(t, "fake", MountOptions{MaxMessageSize: 4096})
	s := e.fake.subscriber("big") // also makes the topic directory exist
	out := e.python(`
import os, errno
w = os.open(os.environ["M"] + "/big/whole", os.O_WRONLY)
os.write(w, b"a" * 3000)
try:
    os.write(w, b"b" * 3000)
    print("second write accepted")
except OSError as e:
    print(errno.errorcode[e.errno])
try:
    os.close(w)
except OSError as e:
    pass
`, 10*time.Second)
	if out != "EFBIG\n" {
		t.Fatalf("python printed %q, want EFBIG", out)
	}
	if m, ok, _ := s.TryReceive(); ok {
		t.Fatalf("a write failed with EFBIG, yet close published a %d-byte message (a truncated prefix)", len(m.Data))
	}
}

// TestReviewMkdirRejectsNamesCoreRefuses: mkdir must give EINVAL for a
// name that cannot be a topic (docs/fs.md). Bug: names with control
// characters or invalid UTF-8 are accepted and listed, but every open of
// their files fails (core refuses the topic), and a newline in the name
// lets the name forge lines of the header file ("topic: x\nsize: 999").
func TestReviewMkdirRejectsNamesCoreRefuses(t *testing.T) {
	e := newEnv(t, "core", MountOptions{})
	out, _ := e.shErr(`
i=0
for n in "$(printf 'tab\tname')" "$(printf 'x\nsize: 999')" "$(printf 'bad\377utf8')"; do
	i=$((i+1))
	mkdir "$M/$n" 2>/dev/null && echo "mkdir of bad name $i succeeded"
done
true`, 10*time.Second)
	if out != "" {
		t.Errorf("%s", out)
	}
	if ls := e.sh(`ls "$M"`, 5*time.Second); ls != "" {
		t.Errorf("root lists %q after mkdir of invalid names", ls)
	}
	// Names core accepts still work.
	if got := e.sh(`mkdir "$M/a b" "$M/ümlaut" && echo hi > "$M/a b/data" && echo hi > "$M/ümlaut/data" && echo ok`, 10*time.Second); got != "ok\n" {
		t.Errorf("valid names: %q", got)
	}
}

// TestReviewUnlinkFails: the files of the mount cannot be removed, so
// unlink(2) must fail. Bug: go-fuse answers OK for a node without Unlink
// (fs/bridge.go "TODO - this should not succeed silently"), so `rm T/data`
// and `rm .shmfs` report success while the files stay.
func TestReviewUnlinkFails(t *testing.T) {
	e := newEnv(t, "fake", MountOptions{})
	out, _ := e.shErr(`
mkdir "$M/u"
rm "$M/u/data" 2>/dev/null && echo "rm data succeeded"
rm "$M/u/header" 2>/dev/null && echo "rm header succeeded"
rm "$M/.shmfs" 2>/dev/null && echo "rm .shmfs succeeded"
ls "$M/u" | tr '\n' ' '`, 10*time.Second)
	if out != "data events header whole " {
		t.Errorf("got %q, want every rm to fail and the files to stay", out)
	}
}

// TestReviewShortLingerDoesNotPanic: MountOptions.Linger of 1ns is a valid
// value ("how long a topic's state stays"), but the janitor's
// time.NewTicker(Linger/2) panics on a zero interval and kills the daemon.
func TestReviewShortLingerDoesNotPanic(t *testing.T) {
	requireFUSE(t)
	mp := t.TempDir()
	t.Cleanup(func() { // the daemon may have died mounted
		if mounted(mp) {
			_ = unix.Unmount(mp, unix.MNT_DETACH)
		}
	})
	e := &env{t: t, kind: "fake", mp: mp}
	d := testutil.StartChild(t, "review-serve-linger", nil, mp)
	d.Expect(t, "ready", 10*time.Second)
	if out, err := e.shErr(`mkdir "$M/l" && echo x > "$M/l/data" && sleep 0.2 && ls "$M"`, 5*time.Second); err != nil || out != "l\n" {
		t.Errorf("mount with Linger 1ns: %v %q", err, out)
	}
	d.Signal(syscall.SIGTERM)
	if err := d.Wait(t, 5*time.Second); err != nil {
		t.Fatalf("daemon with Linger 1ns: %v (output %q)", err, d.Output())
	}
}

// TestReviewFileSemantics pins behaviour of the files that no other test
// checks: errnos of unsupported operations, O_APPEND (`>>`), O_RDWR,
// one-byte reads, and several threads reading one open file description
// (each message goes to exactly one of them, whole).
func TestReviewFileSemantics(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.sh(`mkdir "$M/sem"`, 5*time.Second)
		out := e.python(`
import os, errno, threading
D = os.environ["M"] + "/sem/"
def err(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
rd = os.open(D + "data", os.O_RDONLY)
w = os.open(D + "data", os.O_WRONLY)
print("pwrite", err(lambda: os.pwrite(w, b"x", 0)))
print("pread", err(lambda: os.pread(rd, 10, 0)))
print("truncate5", err(lambda: os.truncate(D + "data", 5)))
print("truncate0", err(lambda: os.truncate(D + "data", 0)))
print("header-w", err(lambda: os.open(D + "header", os.O_WRONLY)))
print("events-rw", err(lambda: os.open(D + "events", os.O_RDWR)))
print("whole-r", err(lambda: os.open(D + "whole", os.O_RDONLY)))
a = os.open(D + "data", os.O_WRONLY | os.O_APPEND)
os.write(a, b"app1")
os.write(a, b"app2")
os.close(a)
print(os.read(rd, 100), os.read(rd, 100))
rw = os.open(D + "data", os.O_RDWR)
os.write(rw, b"xyz")
print(b"".join(os.read(rw, 1) for _ in range(3)), os.read(rd, 100))
got, lock = [], threading.Lock()
def reader():
    for _ in range(25):
        b = os.read(rd, 1 << 16)
        with lock:
            got.append(b)
ts = [threading.Thread(target=reader) for _ in range(4)]
for th in ts:
    th.start()
for i in range(100):
    os.write(w, b"m%03d" % i)
for th in ts:
    th.join()
print(len(got), sorted(got) == [b"m%03d" % i for i in range(100)])
`, 30*time.Second)
		want := strings.Join([]string{
			"pwrite ESPIPE", "pread ESPIPE", "truncate5 EINVAL", "truncate0 ok",
			"header-w EACCES", "events-rw EACCES", "whole-r EACCES",
			"b'app1' b'app2'", "b'xyz' b'xyz'", "100 True", "",
		}, "\n")
		if out != want {
			t.Fatalf("python printed:\n%s\nwant:\n%s", out, want)
		}
	})
}
