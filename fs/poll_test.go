package fs

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

// Event loops wait on data and events files with select(2), poll(2) and
// epoll, from Python as users would. Each waiter is proven asleep
// (testutil.WaitBlockedInPoll) before the message that must wake it is
// published from another process.

// startPython runs a Python script (stdin: in, may be nil) in a child.
func (e *env) startPython(script string, in io.Reader) *testutil.Child {
	e.t.Helper()
	f := filepath.Join(e.t.TempDir(), "script.py")
	if err := os.WriteFile(f, []byte(script), 0o600); err != nil {
		e.t.Fatal(err)
	}
	o := e.options()
	o.Stdin = in
	return testutil.Start(e.t, o, "python3", "-u", f)
}

// wakeWith waits until p says "waiting ..." and sleeps in a poll-family
// call, then runs the shell command that must wake it.
func (e *env) wakeWith(p *testutil.Child, waiting, cmd string) {
	e.t.Helper()
	p.Expect(e.t, "waiting "+waiting, 10*time.Second)
	testutil.WaitBlockedInPoll(e.t, p.PID(), 1, 5*time.Second)
	e.sh(cmd, 10*time.Second)
}

const pollScript = `
import asyncio, os, select, sys
M = os.environ["M"]
a = os.open(M + "/pa/data", os.O_RDONLY)
b = os.open(M + "/pb/data", os.O_RDONLY)
name = {a: "a", b: "b"}
print("open")

print("select-before", select.select([a, b], [], [], 0)[0] == [])
print("waiting select")
r = select.select([a, b], [], [], 10)[0]
print("select", *[name[x] for x in r])
print("read", os.read(b, 100).decode().strip())
print("select-after", select.select([a, b], [], [], 0)[0] == [])

p = select.poll()
p.register(a)  # POLLIN | POLLPRI | POLLOUT: a read-only file is never writable
p.register(b)
print("poll-before", p.poll(0) == [])
print("waiting poll")
print("poll", *[name[fd] + ("-in" if e & select.POLLIN else "") for fd, e in p.poll(10000)])
print("read", os.read(a, 100).decode().strip())
print("poll-after", p.poll(0) == [])

ep = select.epoll()
ep.register(a, select.EPOLLIN)
ep.register(b, select.EPOLLIN)
print("epoll-before", ep.poll(0) == [])
print("waiting epoll")
print("epoll", *[name[fd] for fd, e in ep.poll(10)])
print("read", os.read(b, 100).decode().strip())
print("epoll-after", ep.poll(0) == [])
ep.close()

# Edge-triggered, as Go's runtime uses it: read until EAGAIN, then wait.
w = os.open(M + "/pa/data", os.O_WRONLY)
os.write(w, b"four\n")
os.write(w, b"five\n")
os.close(w)
os.set_blocking(a, False)
et = select.epoll()
et.register(a, select.EPOLLIN | select.EPOLLET)
print("epollet", *[name[fd] for fd, e in et.poll(10)])
msgs = []
try:
    while True:
        msgs.append(os.read(a, 100).decode().strip())
except BlockingIOError:
    pass
print("read", *msgs)
print("waiting epollet2")
print("epollet", *[name[fd] for fd, e in et.poll(10)])
print("read", os.read(a, 100).decode().strip())
et.close()
os.set_blocking(a, True)

async def main():
    loop = asyncio.get_running_loop()
    got = asyncio.Queue()
    for fd in (a, b):
        loop.add_reader(fd, lambda fd=fd: got.put_nowait(name[fd] + " " + os.read(fd, 100).decode().strip()))
    print("waiting asyncio")
    print("asyncio", await asyncio.wait_for(got.get(), 10))
    print("asyncio-after", got.empty())
    print("waiting asyncio2")
    print("asyncio", await asyncio.wait_for(got.get(), 10))
asyncio.run(main())
`

// TestPollSelectEpollAsyncio: over two topics, select, poll, epoll (level
// and edge triggered) and asyncio's add_reader report a data file not
// ready before a message, ready (and wake) when one is published, and not
// ready again once it was read.
func TestPollSelectEpollAsyncio(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.sh(`mkdir "$M/pa" "$M/pb"`, 5*time.Second)
		p := e.startPython(pollScript, nil)
		p.Expect(t, "open", 10*time.Second)
		e.waitSubscribers("pa", 1)
		e.waitSubscribers("pb", 1)
		expect := func(want string) {
			t.Helper()
			if l := p.Line(t, 15*time.Second); l != want {
				t.Fatalf("python printed %q, want %q\n%s", l, want, p.Transcript())
			}
		}
		for _, step := range []struct{ mech, topic, msg, ready string }{
			{"select", "pb", "one", "select b"},
			{"poll", "pa", "two", "poll a-in"},
			{"epoll", "pb", "three", "epoll b"},
		} {
			expect(step.mech + "-before True")
			e.wakeWith(p, step.mech, fmt.Sprintf(`echo %s > "$M/%s/data"`, step.msg, step.topic))
			expect(step.ready)
			expect("read " + step.msg)
			expect(step.mech + "-after True")
		}
		expect("epollet a")
		expect("read four five")
		e.wakeWith(p, "epollet2", `echo six > "$M/pa/data"`)
		expect("epollet a")
		expect("read six")
		e.wakeWith(p, "asyncio", `echo seven > "$M/pb/data"`)
		expect("asyncio b seven")
		expect("asyncio-after True")
		e.wakeWith(p, "asyncio2", `echo eight > "$M/pa/data"`)
		expect("asyncio a eight")
		if err := p.Wait(t, 10*time.Second); err != nil {
			t.Fatalf("python: %v\n%s", err, p.Transcript())
		}
	})
}

// TestManyPollers: 32 threads each wait in select on their own open file
// of one topic, 8 more on another topic; one message wakes exactly the 32.
func TestManyPollers(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.sh(`mkdir "$M/many" "$M/other"`, 5*time.Second)
		p := e.startPython(`
import os, select, sys, threading
M = os.environ["M"]
out = threading.Lock()
def wait(topic, i, fd):
    r = select.select([fd], [], [], 20)[0]
    line = "woke %s %d %s\n" % (topic, i, os.read(fd, 100).decode().strip() if r else "timeout")
    with out:
        sys.stdout.write(line)
        sys.stdout.flush()
fds = [("many", i, os.open(M + "/many/data", os.O_RDONLY)) for i in range(32)]
fds += [("other", i, os.open(M + "/other/data", os.O_RDONLY)) for i in range(8)]
ts = [threading.Thread(target=wait, args=x) for x in fds]
for th in ts: th.start()
print("waiting", flush=True)
for th in ts: th.join()
`, nil)
		p.Expect(t, "waiting", 10*time.Second)
		e.waitSubscribers("many", 32)
		testutil.WaitBlockedInPoll(t, p.PID(), 40, 10*time.Second)
		e.sh(`echo hi > "$M/many/data"`, 10*time.Second)
		woke := map[string]bool{}
		for range 32 {
			l := p.Line(t, 10*time.Second)
			if !strings.HasPrefix(l, "woke many ") || !strings.HasSuffix(l, " hi") || woke[l] {
				t.Fatalf("line %q (after %d wake-ups)", l, len(woke))
			}
			woke[l] = true
		}
		// The other topic's 8 still sleep.
		testutil.WaitBlockedInPoll(t, p.PID(), 8, 5*time.Second)
		e.sh(`echo ho > "$M/other/data"`, 10*time.Second)
		for range 8 {
			if l := p.Line(t, 10*time.Second); !strings.HasPrefix(l, "woke other ") || !strings.HasSuffix(l, " ho") {
				t.Fatalf("line %q", l)
			}
		}
		if err := p.Wait(t, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPollerWokenAtUnmount: a select on data and one on events wake when
// the mount stops (readable: end of file), not at their timeout.
func TestPollerWokenAtUnmount(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.busyOK = true // the python process holds the files open
		e.sh(`mkdir "$M/bye"`, 5*time.Second)
		p := e.startPython(`
import os, select, time
M = os.environ["M"]
d = os.open(M + "/bye/data", os.O_RDONLY)
ev = os.open(M + "/bye/events", os.O_RDONLY)
print("waiting", flush=True)
t = time.monotonic()
ready = set()
while len(ready) < 2 and time.monotonic() - t < 30:
    ready |= set(select.select([x for x in (d, ev) if x not in ready], [], [], 60)[0])
print("woke", len(ready) == 2 and time.monotonic() - t < 30, flush=True)
for fd in (d, ev):  # events may hold lines first; then both end
    try:
        while os.read(fd, 4096):
            pass
        print("read 0", flush=True)
    except OSError as x:
        print("read error", x.strerror, flush=True)
`, nil)
		p.Expect(t, "waiting", 10*time.Second)
		testutil.WaitBlockedInPoll(t, p.PID(), 1, 5*time.Second)
		go func() { _ = e.srv.Unmount() }()
		if l := p.Line(t, 20*time.Second); l != "woke True" {
			t.Fatalf("python: %q, want both files readable long before the timeout", l)
		}
		for range 2 {
			if l := p.Line(t, 10*time.Second); l != "read 0" && !strings.HasPrefix(l, "read error") {
				t.Fatalf("read after the unmount: %q", l)
			}
		}
	})
}

// TestEventsPollWakesOnPublisherChanges: a poller of events wakes when a
// publisher appears and when it goes away.
func TestEventsPollWakesOnPublisherChanges(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.sh(`mkdir "$M/ev"`, 5*time.Second)
		p := e.startPython(`
import os, select
M = os.environ["M"]
ev = os.open(M + "/ev/events", os.O_RDONLY | os.O_NONBLOCK)
for i in range(2):
    print("waiting", select.select([ev], [], [], 0)[0] == [], flush=True)
    select.select([ev], [], [], 20)
    data = b""
    try:
        while True:
            data += os.read(ev, 4096)
    except BlockingIOError:
        pass
    print("events", " ".join(l.split()[1] for l in data.decode().splitlines()), flush=True)
`, nil)
		p.Expect(t, "waiting True", 10*time.Second)
		e.waitEventReaders("ev", 1)
		testutil.WaitBlockedInPoll(t, p.PID(), 1, 5*time.Second)
		pub := e.publisher("ev")
		if l := p.Line(t, 10*time.Second); l != "events publisher-added" {
			t.Fatalf("python: %q", l)
		}
		p.Expect(t, "waiting True", 10*time.Second)
		testutil.WaitBlockedInPoll(t, p.PID(), 1, 5*time.Second)
		_ = pub.Close()
		if l := p.Line(t, 10*time.Second); l != "events publisher-removed" {
			t.Fatalf("python: %q", l)
		}
	})
}

// TestNonblockWithFcntl: O_NONBLOCK set with fcntl after open makes a read
// with nothing pending fail with EAGAIN; cleared again, reads block.
func TestNonblockWithFcntl(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.sh(`mkdir "$M/nb" "$M/quiet"`, 5*time.Second)
		p := e.startPython(`
import os, fcntl
M = os.environ["M"]
fd = os.open(M + "/nb/data", os.O_RDONLY)
for f in (fd, os.open(M + "/quiet/events", os.O_RDONLY)):  # a topic where nothing happens
    fcntl.fcntl(f, fcntl.F_SETFL, fcntl.fcntl(f, fcntl.F_GETFL) | os.O_NONBLOCK)
    try:
        os.read(f, 100)
        print("no EAGAIN")
    except BlockingIOError:
        print("EAGAIN")
fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
print("blocking", flush=True)
print("read", os.read(fd, 100).decode().strip())
`, nil)
		p.Expect(t, "EAGAIN", 10*time.Second)
		p.Expect(t, "EAGAIN", 10*time.Second)
		p.Expect(t, "blocking", 10*time.Second)
		testutil.WaitBlockedInRead(t, p.PID(), 5*time.Second)
		e.sh(`echo late > "$M/nb/data"`, 10*time.Second)
		p.Expect(t, "read late", 10*time.Second)
	})
}

// TestPollOut: a writer whose reader is a window (core.DefaultWindow) behind is
// not writable; it becomes writable (and its poll wakes) when the reader
// reads.
func TestPollOut(t *testing.T) {
	e := newEnv(t, "core", MountOptions{})
	e.sh(`mkdir "$M/out"`, 5*time.Second)
	in, feed := io.Pipe()
	defer feed.Close()
	r := e.startPython(`
import os, sys
fd = os.open(os.environ["M"] + "/out/data", os.O_RDONLY)
print("open", flush=True)
for line in sys.stdin:
    print("read", os.read(fd, 100).decode().strip(), flush=True)
`, in)
	r.Expect(t, "open", 10*time.Second)
	e.waitSubscribers("out", 1)
	w := e.startPython(strings.ReplaceAll(`
import os, select
fd = os.open(os.environ["M"] + "/out/data", os.O_WRONLY)
p = select.poll()
p.register(fd, select.POLLOUT)
print("writable", p.poll(0) != [], flush=True)
n = WINDOW - 1 # fills the window of the mount's publisher
for i in range(n):
    os.write(fd, b"m%d" % (i + 1))
print("after window", p.poll(0) != [], flush=True)
print("waiting", flush=True)
print("woke", p.poll(20000) != [], flush=True)
os.write(fd, b"m%d" % (n + 1))
print("wrote", flush=True)
`, "WINDOW", strconv.Itoa(core.DefaultWindow)), nil)
	w.Expect(t, "writable True", 10*time.Second)
	w.Expect(t, "after window False", 20*time.Second)
	w.Expect(t, "waiting", 5*time.Second)
	testutil.WaitBlockedInPoll(t, w.PID(), 1, 5*time.Second)
	if _, err := io.WriteString(feed, "1\n"); err != nil {
		t.Fatal(err)
	}
	r.Expect(t, "read m1", 10*time.Second)
	w.Expect(t, "woke True", 10*time.Second)
	w.Expect(t, "wrote", 10*time.Second)
}
