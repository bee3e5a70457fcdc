package tests

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

// Two simulated hosts (each its own network namespace, /dev/shm and host
// name, joined by a veth pair), each running 'shmfs bridge'; the two
// embedded NATS servers form a cluster (b routes to a), with a user and
// password since they listen on the link.
type twoHosts struct {
	t        testing.TB
	a, b     *testutil.Host
	e        env
	argsA    []string
	argsB    []string
	brA, brB *testutil.Child
}

func newTwoHosts(t testing.TB) *twoHosts {
	h := &twoHosts{t: t, a: testutil.NewHost(t, "a"), b: testutil.NewHost(t, "b"), e: newEnv(t)}
	testutil.LinkHosts(t, h.a, h.b)
	auth := []string{"--user", "bridge", "--password", "s3cret", "--stats", "1s"}
	h.argsA = append([]string{"bridge", "--listen", h.a.Addr + ":4222", "--cluster", h.a.Addr + ":6222"}, auth...)
	h.argsB = append([]string{"bridge", "--listen", h.b.Addr + ":4222", "--cluster", h.b.Addr + ":6222",
		"--routes", "nats-route://" + h.a.Addr + ":6222"}, auth...)
	h.brA = h.startBridge(h.a, h.argsA)
	h.brB = h.startBridge(h.b, h.argsB)
	h.brA.ExpectStderr(t, `of "`+h.b.Name+`" joined`, 20*time.Second)
	h.brB.ExpectStderr(t, `of "`+h.a.Name+`" joined`, 20*time.Second)
	return h
}

func (h *twoHosts) startBridge(host *testutil.Host, args []string) *testutil.Child {
	h.t.Helper()
	o := options("", h.e.vars())
	o.StopSignal = syscall.SIGTERM
	c := host.Start(h.t, o, shmfsBin, args...)
	c.ExpectStderr(h.t, "Ctrl-C to stop", 20*time.Second)
	return c
}

// start runs shmfs in a host in the background (SIGTERM at cleanup).
func (h *twoHosts) start(host *testutil.Host, args ...string) *testutil.Child {
	h.t.Helper()
	o := options("", h.e.vars())
	o.StopSignal = syscall.SIGTERM
	return host.Start(h.t, o, shmfsBin, args...)
}

// sh runs a shell line in a host (shmfs on PATH as "$SHMFS") and fails
// the test unless it exits 0.
func (h *twoHosts) sh(host *testutil.Host, line string, timeout time.Duration) string {
	h.t.Helper()
	r := host.Run(h.t, timeout, options("", append(h.e.vars(), "SHMFS="+shmfsBin)), "sh", "-c", line)
	if r.Code != 0 {
		h.t.Fatalf("%s: sh -c %q: exit %d\n%s%s", host.Name, line, r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// info returns 'shmfs info --json topic' on a host (nil: no such topic).
func (h *twoHosts) info(host *testutil.Host, topic string) *infoJSON {
	r := host.Run(h.t, 20*time.Second, options("", h.e.vars()), shmfsBin, "info", "--json", "--wait", "300ms", topic)
	if r.Code != 0 {
		return nil
	}
	var out infoJSON
	if err := json.Unmarshal([]byte(r.Stdout), &out); err != nil {
		h.t.Fatalf("info --json: %v\n%s", err, r.Stdout)
	}
	return &out
}

type infoJSON struct {
	Publishers  []infoEntity `json:"publishers"`
	Subscribers []infoEntity `json:"subscribers"`
}

type infoEntity struct {
	PID     int    `json:"pid"`
	Process string `json:"process"`
	Origin  string `json:"origin"`
	Dropped uint64 `json:"dropped"`
}

// waitExported waits until the bridge of host subscribes to topic (the
// other host's interest arrived), so that a publisher started now loses
// nothing.
func (h *twoHosts) waitExported(host *testutil.Host, topic string) {
	h.t.Helper()
	br := h.brA
	if host == h.b {
		br = h.brB
	}
	testutil.CheckFor(h.t, 20*time.Second, 50*time.Millisecond, func() error {
		if i := h.info(host, topic); i != nil {
			for _, s := range i.Subscribers {
				if s.PID == br.PID() {
					return nil
				}
			}
		}
		return fmt.Errorf("%s: the bridge (pid %d) does not subscribe to %q yet", host.Name, br.PID(), topic)
	})
}

// numbered checks that lines are prefix1..prefixN.
func numbered(t *testing.T, what string, lines []string, prefix string, n int) {
	t.Helper()
	if len(lines) != n {
		t.Fatalf("%s: %d lines, want %d", what, len(lines), n)
	}
	for i, l := range lines {
		if l != prefix+strconv.Itoa(i+1) {
			t.Fatalf("%s: line %d is %q, want %q", what, i+1, l, prefix+strconv.Itoa(i+1))
		}
	}
}

func TestBridgeTwoHosts(t *testing.T) {
	t.Parallel()
	h := newTwoHosts(t)
	const n = 10000

	t.Run("10000 messages each way", func(t *testing.T) {
		for _, dir := range []struct {
			from, to *testutil.Host
			topic    string
		}{{h.a, h.b, "a-to-b"}, {h.b, h.a, "b-to-a"}} {
			sub := h.start(dir.to, "sub", "--count", strconv.Itoa(n), "--timeout", "120s", dir.topic)
			h.waitExported(dir.from, dir.topic)
			h.sh(dir.from, fmt.Sprintf(`seq 1 %d | "$SHMFS" pub %s`, n, dir.topic), 120*time.Second)
			if code := sub.ExitCode(t, 120*time.Second); code != 0 {
				t.Fatalf("sub on %s: exit %d\n%s", dir.to.Name, code, sub.Transcript())
			}
			numbered(t, dir.topic, strings.Split(strings.TrimSuffix(sub.Output(), "\n"), "\n"), "", n)
		}
	})

	t.Run("16 MiB message", func(t *testing.T) {
		dir := t.TempDir()
		in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
		data := make([]byte, 16<<20)
		for i := range data {
			data[i] = byte(rand.Uint32())
		}
		if err := os.WriteFile(in, data, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		o := options("", h.e.vars())
		o.Stdout = f
		sub := h.b.Start(t, o, shmfsBin, "sub", "--count", "1", "--timeout", "60s", "big")
		h.waitExported(h.a, "big")
		h.sh(h.a, `"$SHMFS" pub --file `+in+` big`, 60*time.Second)
		if code := sub.ExitCode(t, 60*time.Second); code != 0 {
			t.Fatalf("sub: exit %d: %s", code, sub.Stderr())
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(got, []byte("\n")) || sha256.Sum256(got[:len(got)-1]) != sha256.Sum256(data) {
			t.Fatalf("received %d bytes, sha256 differs from the 16 MiB sent", len(got))
		}
	})

	t.Run("no loops", func(t *testing.T) {
		// Publishers and subscribers of one topic on both hosts, bridges on
		// both exporting everything: each subscriber gets each message
		// once, and nothing more arrives.
		const m = 1000
		subA := h.start(h.a, "sub", "--timeout", "8s", "both")
		subB := h.start(h.b, "sub", "--timeout", "8s", "both")
		h.waitExported(h.a, "both")
		h.waitExported(h.b, "both")
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.sh(h.b, fmt.Sprintf(`seq 1 %d | sed s/^/b/ | "$SHMFS" pub both`, m), 30*time.Second)
		}()
		h.sh(h.a, fmt.Sprintf(`seq 1 %d | sed s/^/a/ | "$SHMFS" pub both`, m), 30*time.Second)
		<-done
		for _, sub := range []*testutil.Child{subA, subB} {
			if code := sub.ExitCode(t, 30*time.Second); code != 0 {
				t.Fatalf("%s: exit %d", sub.Name(), code)
			}
			var fromA, fromB []string
			for _, l := range strings.Split(strings.TrimSuffix(sub.Output(), "\n"), "\n") {
				if strings.HasPrefix(l, "a") {
					fromA = append(fromA, l)
				} else {
					fromB = append(fromB, l)
				}
			}
			numbered(t, sub.Name()+" from a", fromA, "a", m)
			numbered(t, sub.Name()+" from b", fromB, "b", m)
		}
	})

	t.Run("mount", func(t *testing.T) {
		mntA, mntB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
		for _, d := range []string{mntA, mntB} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		h.start(h.a, "mount", mntA)
		h.start(h.b, "mount", mntB)
		// A topic published on a shows in b's mount...
		h.start(h.a, "pub", "--rate", "5", "--repeat", "0", "seen-from-b", "tick")
		testutil.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
			r := h.b.Run(t, 10*time.Second, testutil.Options{}, "ls", mntB)
			if !strings.Contains(r.Stdout, "seen-from-b\n") {
				return fmt.Errorf("ls %s on b: %q %s", mntB, r.Stdout, r.Stderr)
			}
			return nil
		})
		// ... and cat there gets what echo writes on a.
		h.sh(h.b, "mkdir "+mntB+"/greetings", 10*time.Second)
		cat := h.b.Start(t, testutil.Options{Group: true}, "cat", mntB+"/greetings/data")
		h.waitExported(h.a, "greetings")
		h.sh(h.a, "test -d "+mntA+"/greetings || mkdir "+mntA+"/greetings; echo hello from a > "+mntA+"/greetings/data", 10*time.Second)
		cat.Expect(t, "hello from a", 20*time.Second)
		hdr := h.sh(h.b, "cat "+mntB+"/greetings/header", 10*time.Second)
		if !strings.Contains(hdr, "origin=nats:"+h.a.Name) {
			t.Errorf("header on b does not name the origin:\n%s", hdr)
		}
	})

	t.Run("bridge killed mid-stream", func(t *testing.T) {
		const topic = "stream"
		sub := h.start(h.b, "sub", "--format", "json", topic)
		h.waitExported(h.a, topic)
		o := options("", h.e.vars())
		o.StopSignal = syscall.SIGTERM
		h.a.Start(t, o, "sh", "-c", `seq 1 1000000 | "$0" pub --rate 300 `+topic, shmfsBin)
		var got []subJSON
		read := func(k int) {
			for range k {
				var m subJSON
				if err := json.Unmarshal([]byte(sub.Line(t, 60*time.Second)), &m); err != nil {
					t.Fatal(err)
				}
				got = append(got, m)
			}
		}
		read(100)
		// The exporting bridge (and the server b routes to) dies.
		h.brA.Kill()
		h.brA.Wait(t, 10*time.Second)
		h.brA = h.startBridge(h.a, h.argsA)
		read(100)
		// The importing bridge dies: its publisher on b disappears with it
		// and comes back with the new bridge.
		h.brB.Kill()
		h.brB.Wait(t, 10*time.Second)
		testutil.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
			if i := h.info(h.b, topic); i != nil && len(i.Publishers) > 0 {
				return fmt.Errorf("b still shows %d publishers of %q", len(i.Publishers), topic)
			}
			return nil
		})
		h.brB = h.startBridge(h.b, h.argsB)
		read(100)
		var gaps uint64
		for i := 1; i < len(got); i++ {
			prev, cur := got[i-1].n(t), got[i].n(t)
			if cur <= prev {
				t.Fatalf("message %d after %d: out of order or duplicated", cur, prev)
			}
			if got[i].Publisher != got[i-1].Publisher {
				continue // the new bridge's publisher: it starts anew
			}
			if uint64(cur-prev-1) != got[i].Dropped {
				t.Fatalf("message %d after %d reports %d dropped, want %d", cur, prev, got[i].Dropped, cur-prev-1)
			}
			gaps += got[i].Dropped
		}
		if gaps == 0 {
			t.Errorf("no gap counted although the exporting bridge was down")
		}
		t.Logf("%d messages lost while bridge a restarted, all counted", gaps)
	})
}

type subJSON struct {
	Publisher string  `json:"publisher"`
	Dropped   uint64  `json:"dropped"`
	Data      *string `json:"data"`
}

func (m subJSON) n(t *testing.T) int {
	t.Helper()
	if m.Data == nil {
		t.Fatal("message without text data")
	}
	v, err := strconv.Atoi(strings.TrimSpace(*m.Data))
	if err != nil {
		t.Fatalf("message %q: %v", *m.Data, err)
	}
	return v
}
