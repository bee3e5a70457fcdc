package fs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

func TestEchoReachesTwoCats(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.sh(`mkdir "$M/chat"`, 5*time.Second)
		a := e.start("cat", e.path("chat", "data"))
		b := e.start("cat", e.path("chat", "data"))
		e.waitSubscribers("chat", 2)
		e.sh(`echo hello > "$M/chat/data"`, 10*time.Second)
		for _, p := range []*testutil.Child{a, b} {
			if l := p.Line(t, 5*time.Second); l != "hello" {
				t.Fatalf("cat printed %q, want hello", l)
			}
		}
	})
}

func TestShellLoopArrivesInOrder(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.sh(`mkdir "$M/seq"`, 5*time.Second)
		r := e.start("cat", e.path("seq", "data"))
		e.waitSubscribers("seq", 1)
		const n = 10000
		e.sh(`for i in $(seq `+strconv.Itoa(n)+`); do echo $i; done > "$M/seq/data"`, 60*time.Second)
		for i := 1; i <= n; i++ {
			if l := r.Line(t, 10*time.Second); l != strconv.Itoa(i) {
				t.Fatalf("line %d: got %q", i, l)
			}
		}
	})
}

// TestWholeFileIsOneMessage: `cat bigfile > T/whole` publishes 16 MiB as
// one message, byte-identical at a core subscriber in another process.
func TestWholeFileIsOneMessage(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		big := filepath.Join(t.TempDir(), "big")
		data := make([]byte, 16<<20)
		for i := range data {
			data[i] = byte(i*7 + i>>13)
		}
		if err := os.WriteFile(big, data, 0o600); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		want := fmt.Sprintf("%d %s", len(data), hex.EncodeToString(sum[:]))

		var got func() string
		if e.kind == "fake" {
			s := e.fake.subscriber("big")
			got = func() string {
				m, ok, err := s.TryReceive()
				if !ok || err != nil {
					t.Fatalf("no message (%v)", err)
				}
				if _, more, _ := s.TryReceive(); more {
					t.Fatal("more than one message")
				}
				h := sha256.Sum256(m.Data)
				return fmt.Sprintf("%d %s", len(m.Data), hex.EncodeToString(h[:]))
			}
		} else {
			c := testutil.StartChild(t, "coresub", e.vars, "big")
			c.Expect(t, "ready", 10*time.Second)
			e.waitSubscribers("big", 1)
			got = func() string {
				l := c.Line(t, 20*time.Second)
				// It closes its subscriber (removing its objects) and exits.
				if err := c.Wait(t, 10*time.Second); err != nil {
					t.Errorf("subscriber: %v", err)
				}
				return l
			}
		}
		e.sh(`cat "`+big+`" > "$M/big/whole"`, 30*time.Second)
		if g := got(); g != want {
			t.Fatalf("subscriber got %q, want %q", g, want)
		}
	})
}

func TestCorePublisherToCat(t *testing.T) {
	e := newEnv(t, "core", MountOptions{})
	e.sh(`mkdir "$M/fromgo"`, 5*time.Second)
	r := e.start("cat", e.path("fromgo", "data"))
	e.waitSubscribers("fromgo", 1)
	p := testutil.StartChild(t, "corepub", e.vars, "fromgo", "50")
	for i := 1; i <= 50; i++ {
		if l := r.Line(t, 10*time.Second); l != fmt.Sprintf("pub-%d", i) {
			t.Fatalf("cat line %d: %q", i, l)
		}
	}
	p.Expect(t, "sent", 10*time.Second)
	p.Stop(t, 5*time.Second)
}

// TestTopicAppearsInLs: a topic of a core publisher in another process is
// listed within two refresh periods, and goes away when it exits.
func TestTopicAppearsInLs(t *testing.T) {
	e := newEnv(t, "core", MountOptions{})
	refresh := e.srv.fs.be.(coreBackend).n.Config().Refresh
	if refresh == 0 {
		refresh = time.Second
	}
	if out := e.sh(`ls "$M"`, 5*time.Second); out != "" {
		t.Fatalf("fresh mount lists %q", out)
	}
	p := testutil.StartChild(t, "corepub", e.vars, "appear", "0")
	p.Expect(t, "ready", 10*time.Second)
	start := time.Now()
	testutil.CheckFor(t, 2*refresh, 10*time.Millisecond, func() error {
		if out, _ := e.shErr(`ls "$M"`, 5*time.Second); out != "appear\n" {
			return fmt.Errorf("ls: %q", out)
		}
		return nil
	})
	t.Logf("listed after %v", time.Since(start))
	p.Stop(t, 5*time.Second)
	testutil.CheckFor(t, 4*refresh, 20*time.Millisecond, func() error {
		if out, _ := e.shErr(`ls "$M"; test -e "$M/appear" && echo still`, 5*time.Second); out != "" {
			return fmt.Errorf("after the publisher died: %q", out)
		}
		return nil
	})
}

// TestPython reads and writes topics with plain open/read/write, including
// O_NONBLOCK (EAGAIN when nothing is pending) and message boundaries.
func TestPython(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.sh(`mkdir "$M/py"`, 5*time.Second)
		script := `
import os, sys
M = os.environ["M"]
nb = os.open(M + "/py/data", os.O_RDONLY | os.O_NONBLOCK)  # its own subscriber
rd = os.open(M + "/py/data", os.O_RDONLY)
try:
    os.read(nb, 100)
    print("no EAGAIN"); sys.exit(1)
except BlockingIOError:
    pass
with open(M + "/py/data", "wb", buffering=0) as w:
    w.write(b"one")
    w.write(b"two")
    w.write(b"x" * (1 << 20))    # one message although the kernel splits it
print(os.read(rd, 100).decode())       # one message per read
print(os.read(rd, 2).decode())         # a message longer than the buffer ...
print(os.read(rd, 100).decode())       # ... continues on the next read
print(len(os.read(rd, 4 << 20)))       # a read(2) never spans two messages
print(os.read(nb, 100).decode(), os.read(nb, 100).decode(), len(os.read(nb, 2 << 20)))
try:
    os.read(nb, 100)
    print("no EAGAIN"); sys.exit(1)
except BlockingIOError:
    print("EAGAIN")
print(open(M + "/py/header").read().count("\n") > 5)
`
		out := e.sh("python3 -c '"+strings.ReplaceAll(script, "'", `'"'"'`)+"'", 30*time.Second)
		if want := "one\ntw\no\n1048576\none two 1048576\nEAGAIN\nTrue\n"; out != want {
			t.Fatalf("python printed %q, want %q", out, want)
		}
	})
}

// TestSigintEndsBlockedCat: Ctrl-C on a cat blocked in read ends it at once.
func TestSigintEndsBlockedCat(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.sh(`mkdir "$M/quiet"`, 5*time.Second)
		c := e.start("cat", e.path("quiet", "data"))
		e.waitSubscribers("quiet", 1)
		testutil.WaitBlockedInRead(t, c.PID(), 5*time.Second)
		c.Signal(syscall.SIGINT)
		err := c.Wait(t, 2*time.Second)
		if st, ok := err.(interface{ Sys() any }); !ok || !st.Sys().(syscall.WaitStatus).Signaled() {
			t.Fatalf("cat: %v, want killed by SIGINT", err)
		}
		e.waitSubscribers("quiet", 0)
	})
}

// TestInterruptedReadsLoseNothing: a Go reader whose threads get SIGURG
// all the time (FUSE INTERRUPT, EINTR, retry) sees every message once.
func TestInterruptedReadsLoseNothing(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.sh(`mkdir "$M/urg"`, 5*time.Second)
		const n = 2000
		c := testutil.StartChild(t, "goread", e.vars, e.path("urg", "data"), strconv.Itoa(n))
		c.Expect(t, "ready", 10*time.Second)
		e.waitSubscribers("urg", 1)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.SignalThreads(syscall.SIGURG)
				time.Sleep(200 * time.Microsecond)
			}
		}()
		time.Sleep(20 * time.Millisecond)
		e.sh(`i=0; while [ $i -lt `+strconv.Itoa(n)+` ]; do i=$((i+1)); echo $i; done > "$M/urg/data"`, 60*time.Second)
		for i := 1; i <= n; i++ {
			if l := c.Line(t, 10*time.Second); l != strconv.Itoa(i) {
				close(stop)
				<-done
				t.Fatalf("message %d: got %q", i, l)
			}
		}
		close(stop)
		<-done
	})
}

// A reader that stops reading (a SIGSTOPped cat) hurts only itself: the
// other reader of the topic gets every message of a shell loop, and the
// stopped one, continued, goes on with the newest messages.
func TestStoppedCatHurtsOnlyItself(t *testing.T) {
	e := newEnv(t, "core", MountOptions{})
	e.sh(`mkdir "$M/stall"`, 5*time.Second)
	stopped := e.start("cat", e.path("stall", "data"))
	healthy := e.start("cat", e.path("stall", "data"))
	e.waitSubscribers("stall", 2)
	e.sh(`echo 0 > "$M/stall/data"`, 10*time.Second)
	for _, c := range []*testutil.Child{stopped, healthy} {
		if l := c.Line(t, 5*time.Second); l != "0" {
			t.Fatalf("cat printed %q, want 0", l)
		}
	}
	stopped.Signal(syscall.SIGSTOP)
	defer stopped.Signal(syscall.SIGCONT)
	testutil.WaitStopped(t, stopped.PID(), 5*time.Second)
	n := 2*core.DefaultWindow + 500 // more than the window
	e.sh(`for i in $(seq `+strconv.Itoa(n)+`); do echo $i; done > "$M/stall/data"`, 60*time.Second)
	for i := 1; i <= n; i++ {
		if l := healthy.Line(t, 10*time.Second); l != strconv.Itoa(i) {
			t.Fatalf("healthy reader, line %d: got %q", i, l)
		}
	}
	stopped.Signal(syscall.SIGCONT)
	stopped.Expect(t, strconv.Itoa(n), 10*time.Second)
}

// A reader that stops reading is shown in events and header: "lagging"
// when it is set aside, "drop" when it reads again and finds what it
// missed overwritten, "caught-up" once it counts again; header marks it
// lagging=true meanwhile (issue 9: header/events show it).
func TestStoppedReaderShownInEventsAndHeader(t *testing.T) {
	e := newEnv(t, "core", MountOptions{})
	e.sh(`mkdir "$M/lag"`, 5*time.Second)
	ev := e.start("cat", e.path("lag", "events"))
	e.waitEventReaders("lag", 1)
	stopped := e.start("cat", e.path("lag", "data"))
	healthy := e.start("cat", e.path("lag", "data"))
	e.waitSubscribers("lag", 2)
	e.sh(`echo 0 > "$M/lag/data"`, 10*time.Second)
	for _, c := range []*testutil.Child{stopped, healthy} {
		c.Expect(t, "0", 5*time.Second)
	}
	stopped.Signal(syscall.SIGSTOP)
	defer stopped.Signal(syscall.SIGCONT)
	testutil.WaitStopped(t, stopped.PID(), 5*time.Second)
	n := 2*core.DefaultWindow + 500 // more than the window
	e.sh(`for i in $(seq `+strconv.Itoa(n)+`); do echo $i; done > "$M/lag/data"`, 60*time.Second)
	for i := 1; i <= n; i++ {
		healthy.Expect(t, strconv.Itoa(i), 10*time.Second)
	}
	id := nextEvent(t, ev, "lagging")
	hdr := e.sh(`cat "$M/lag/header"`, 5*time.Second)
	if !strings.Contains(hdr, strings.TrimPrefix(id, "subscriber=")) || !strings.Contains(hdr, "lagging=true") {
		t.Errorf("header does not show the lagging reader (%s):\n%s", id, hdr)
	}
	stopped.Signal(syscall.SIGCONT)
	stopped.Expect(t, strconv.Itoa(n), 10*time.Second)
	if kv := nextEvent(t, ev, "drop"); !strings.HasSuffix(kv, " "+id) || !strings.HasPrefix(kv, "count=") {
		t.Errorf("drop event %q, want one for %s", kv, id)
	}
	e.sh(`echo more > "$M/lag/data"`, 10*time.Second)
	if kv := nextEvent(t, ev, "caught-up"); kv != id {
		t.Errorf("caught-up event %q, want %s", kv, id)
	}
}
