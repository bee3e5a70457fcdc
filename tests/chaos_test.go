package tests

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/shm"
	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
)

// The chaos run (TestChaosKill, scripts/chaos.sh): publishers, subscribers,
// the mount daemon and the mount's own readers and writers run on one
// topic in ack mode with random message sizes, and a random one of them is
// SIGKILLed at a random instant, again and again, and restarted. Every
// process checks what it receives (checksums, order, losses) and reports
// on stdout; the run counts kills, hangs, losses and corruptions, measures
// how long each kind of kill takes to recover from, and checks that
// `shmfs clean` leaves nothing behind. SHMFS_CHAOS_KILLS sets the number of
// kills (default 50, what CI runs).

// Chaos payload: a little-endian header, a fill, and a CRC-32C of
// everything before it, so that a subscriber detects a torn or mixed
// message.
const (
	chaosMagic   = "shmfsCHS"
	chaosHdr     = 32 // magic, pid u32, slot u32, seq u64, size u64
	chaosMinSize = 64
	chaosMaxSize = 256 << 10
	// chaosAck is the ack timeout of every publisher (and of the mount):
	// a live subscriber that keeps up is never set aside (that takes half
	// of it behind), so it loses nothing; dead ones are noticed within
	// 10 ms whatever the timeout.
	chaosAck = 4 * time.Second
	// chaosLinkGrace: a new subscriber process is protected from overwrites
	// once the publisher has linked it (a registration round trip, a few
	// milliseconds); what a fast publisher overwrites before that is not
	// a loss of a live subscriber. Losses of a (subscriber, publisher)
	// pair within this long after its first message are reported apart
	// ("startup-lost") and do not fail the run.
	chaosLinkGrace = time.Second
	chaosStall     = 5 * time.Second // longest tolerated silence of a live process after a kill
	// chaosDefaultKills is the number of kills `go test` (and CI) runs.
	chaosDefaultKills = 50
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func chaosEncode(buf []byte, pid, slot uint32, seq uint64, pattern []byte) {
	copy(buf, chaosMagic)
	binary.LittleEndian.PutUint32(buf[8:], pid)
	binary.LittleEndian.PutUint32(buf[12:], slot)
	binary.LittleEndian.PutUint64(buf[16:], seq)
	binary.LittleEndian.PutUint64(buf[24:], uint64(len(buf)))
	end := len(buf) - 4
	off := int(seq*4099) % (len(pattern) - chaosMaxSize)
	copy(buf[chaosHdr:end], pattern[off:])
	binary.LittleEndian.PutUint32(buf[end:], crc32.Checksum(buf[:end], castagnoli))
}

// chaosDecode validates a payload and returns its sender's pid and seq.
func chaosDecode(b []byte) (pid uint32, seq uint64, err error) {
	if len(b) < chaosMinSize {
		return 0, 0, fmt.Errorf("payload of %d bytes, want >= %d", len(b), chaosMinSize)
	}
	if string(b[:8]) != chaosMagic {
		return 0, 0, fmt.Errorf("bad magic %q", b[:8])
	}
	if n := binary.LittleEndian.Uint64(b[24:]); n != uint64(len(b)) {
		return 0, 0, fmt.Errorf("size field %d, payload %d bytes", n, len(b))
	}
	end := len(b) - 4
	if got, want := crc32.Checksum(b[:end], castagnoli), binary.LittleEndian.Uint32(b[end:]); got != want {
		return 0, 0, fmt.Errorf("checksum %08x, want %08x (corrupt payload of %d bytes, seq %d)", got, want, len(b), binary.LittleEndian.Uint64(b[16:]))
	}
	return binary.LittleEndian.Uint32(b[8:]), binary.LittleEndian.Uint64(b[16:]), nil
}

// chaosSender makes the payloads of one sending process: random sizes,
// growing over the first messages from 64 B to max (so memory files grow
// several times).
type chaosSender struct {
	pid     uint32
	slot    uint32
	max     int
	seq     uint64
	rng     *rand.Rand
	pattern []byte
}

func newChaosSender(slot, max int) *chaosSender {
	pid := uint32(os.Getpid())
	s := &chaosSender{pid: pid, slot: uint32(slot), max: max, rng: rand.New(rand.NewPCG(uint64(pid), uint64(time.Now().UnixNano())))}
	s.pattern = make([]byte, 2*chaosMaxSize)
	for i := range s.pattern {
		s.pattern[i] = byte(s.rng.Uint32())
	}
	return s
}

// next returns the size of the next message and advances seq.
func (s *chaosSender) next() int {
	s.seq++
	upper := s.max
	if s.seq/64 < 12 {
		upper = min(s.max, chaosMinSize<<(s.seq/64))
	}
	return chaosMinSize + s.rng.IntN(upper-chaosMinSize+1)
}

func (s *chaosSender) fill(buf []byte) { chaosEncode(buf, s.pid, s.slot, s.seq, s.pattern) }

// pause leaves some CPU to the others (2 cores), now and then.
func (s *chaosSender) pause() {
	if s.rng.IntN(4) == 0 {
		time.Sleep(time.Duration(s.rng.IntN(2000)) * time.Microsecond)
	}
}

// chaosChecker checks what one receiving process gets: per sending process
// (the pid in the payload) strictly increasing seq; a seq gap while both
// live is a loss ("lost" line), unless it is the first message seen from
// that sender in this session (it started before we did, or we reconnect).
type chaosChecker struct {
	seqs map[uint32]uint64
	n    uint64
}

// check returns a violation (corrupt, reordered, duplicated), or the
// number of messages lost before this one; pid is the sender's.
func (c *chaosChecker) check(b []byte) (pid uint32, lost uint64, err error) {
	pid, seq, err := chaosDecode(b)
	if err != nil {
		return 0, 0, err
	}
	lost, err = c.record(pid, seq)
	return pid, lost, err
}

// record checks sender pid's message seq against the ones before.
func (c *chaosChecker) record(pid uint32, seq uint64) (lost uint64, err error) {
	last, seen := c.seqs[pid]
	switch {
	case !seen:
	case seq == last:
		return 0, fmt.Errorf("sender pid %d: duplicate seq %d", pid, seq)
	case seq < last:
		return 0, fmt.Errorf("sender pid %d: seq %d after %d", pid, seq, last)
	default:
		lost = seq - last - 1
	}
	c.seqs[pid] = seq
	c.n++
	return lost, nil
}

// chaosNode opens the node of a chaos child (domain and port from the
// environment); it lives as long as the child.
func chaosNode() *core.Node {
	n, err := core.OpenNode(core.Config{})
	if err != nil {
		panic(err)
	}
	return n
}

// progress prints "<word> N" at most every 20 ms.
type progress struct {
	word    string
	printed time.Time
	last    uint64
}

func (p *progress) report(n uint64) {
	if now := time.Now(); n != p.last && now.Sub(p.printed) >= 20*time.Millisecond {
		fmt.Printf("%s %d\n", p.word, n)
		p.printed, p.last = now, n
	}
}

// chaosPubChild publishes on topic (args: topic slot) in ack mode as fast
// as it can and prints "sent N". Until SIGTERM; then "done ..." and exit
// 0. Any send error other than an ack timeout prints "error: ..." and
// exits 1.
func chaosPubChild(args []string) int {
	a := testutil.ChildArgs(args)
	slot, _ := strconv.Atoi(a[1])
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	pub, err := chaosNode().NewPublisher(a[0], &core.PublisherOptions{AckTimeout: chaosAck})
	if err != nil {
		fmt.Println("error: new publisher:", err)
		return 1
	}
	s := newChaosSender(slot, chaosMaxSize)
	p := progress{word: "sent"}
	var ackTimeouts uint64
	for ctx.Err() == nil {
		size := s.next()
		sctx, cancel := context.WithTimeout(ctx, 2*chaosStall)
		err := pub.SendFunc(sctx, size, func(buf []byte) error { s.fill(buf); return nil })
		cancel()
		switch {
		case err == nil:
		case errors.Is(err, core.ErrAckTimeout):
			ackTimeouts++
		case ctx.Err() != nil:
			continue // SIGTERM during the send
		default:
			fmt.Printf("error: send seq %d (%d bytes): %v\n", s.seq, size, err)
			return 1
		}
		p.report(s.seq)
		s.pause()
	}
	st := pub.Stats()
	fmt.Printf("done sent=%d ack-timeouts=%d/%d grows=%d\n", st.Sent, ackTimeouts, st.AckTimeouts, st.Grows)
	if err := pub.Close(); err != nil && !errors.Is(err, core.ErrAckTimeout) {
		fmt.Println("error: close:", err)
		return 1
	}
	return 0
}

// chaosSubChild subscribes to topic (args: topic copy|zerocopy) and checks
// every message: payload checksum, size, per publisher strictly increasing
// clock with Header.Dropped equal to the clock gap, per sender process
// strictly increasing seq (chaosChecker). It prints "recv N", "first
// pid=P seq=S dropped=D" for each publisher's first message, "lost N ..."
// for a loss, and "error: ..." per violation (the first 20), and goes on;
// at SIGTERM it prints "done ..." and exits 0, or 1 if there was any
// violation.
func chaosSubChild(args []string) int {
	a := testutil.ChildArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	sub, err := chaosNode().NewSubscriber(a[0], &core.SubscriberOptions{ZeroCopy: a[1] == "zerocopy"})
	if err != nil {
		fmt.Println("error: new subscriber:", err)
		return 1
	}
	clocks := map[uint64]uint64{}
	firstAt := map[uint64]time.Time{} // when each publisher's first message came
	seqs := chaosChecker{seqs: map[uint32]uint64{}}
	// firstDropped sums Header.Dropped of each publisher's first message
	// here (each also printed as a "first" line): messages sent before this
	// subscriber existed are not "missed" (TestLateSubscribers checks).
	var count, dropped, firstDropped uint64
	// loss reports n messages of publisher pub lost: within chaosLinkGrace
	// of its first message here, before the publisher could link this
	// process, apart.
	loss := func(n uint64, pub uint64, pid uint32, what string) {
		word := "lost"
		if time.Since(firstAt[pub]) < chaosLinkGrace {
			word = "startup-lost"
		}
		fmt.Printf("%s %d publisher=%016x pid=%d %s\n", word, n, pub, pid, what)
	}
	// The callback only looks (a zero-copy view may be overwritten under
	// it: ReceiveFunc then says so, and what it saw does not count); the
	// state moves on afterwards (account).
	type seen struct {
		h   core.Header
		pid uint32
		seq uint64
		err error
	}
	var cur seen
	account := func(overrun bool) error {
		h := cur.h
		if !overrun && cur.err != nil {
			return fmt.Errorf("publisher %016x clock %d: %w", h.Publisher, h.Clock, cur.err)
		}
		last, known := clocks[h.Publisher]
		switch {
		case !known:
			firstAt[h.Publisher] = time.Now()
			firstDropped += h.Dropped
			fmt.Printf("first pid=%d seq=%d dropped=%d\n", cur.pid, cur.seq, h.Dropped)
			delete(seqs.seqs, cur.pid) // a sender's first message through this publisher
		case h.Clock <= last:
			return fmt.Errorf("publisher %016x (pid %d): clock %d after clock %d", h.Publisher, cur.pid, h.Clock, last)
		case h.Dropped != h.Clock-last-1:
			return fmt.Errorf("publisher %016x (pid %d): clock %d after clock %d reports Dropped %d, want %d (the clock gap)",
				h.Publisher, cur.pid, h.Clock, last, h.Dropped, h.Clock-last-1)
		case h.Dropped > 0:
			loss(h.Dropped, h.Publisher, cur.pid, fmt.Sprintf("clock=%d", h.Clock))
		}
		clocks[h.Publisher] = h.Clock
		dropped += h.Dropped
		if overrun {
			loss(1, h.Publisher, cur.pid, fmt.Sprintf("clock=%d (zero-copy view overwritten)", h.Clock))
			return nil
		}
		if lost, err := seqs.record(cur.pid, cur.seq); err != nil {
			return fmt.Errorf("publisher %016x clock %d: %w", h.Publisher, h.Clock, err)
		} else if lost > 0 && known && h.Dropped == 0 {
			loss(lost, h.Publisher, cur.pid, fmt.Sprintf("seq=%d (seq gap, no clock gap)", cur.seq))
		}
		return nil
	}
	p := progress{word: "recv"}
	var violations uint64
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := sub.ReceiveFunc(rctx, func(h core.Header, b []byte) error {
			cur = seen{h: h}
			if h.Size != len(b) {
				cur.err = fmt.Errorf("header size %d, payload %d bytes", h.Size, len(b))
				return nil
			}
			cur.pid, cur.seq, cur.err = chaosDecode(b)
			return nil
		})
		cancel()
		var checkErr error
		switch {
		case err == nil:
			count++
			checkErr = account(false)
		case errors.Is(err, core.ErrOverrun):
			checkErr = account(true)
		case ctx.Err() != nil:
			continue
		case errors.Is(err, context.DeadlineExceeded):
		default:
			fmt.Printf("error: receive after message %d: %v\n", count, err)
			return 1
		}
		if checkErr != nil {
			if violations++; violations <= 20 {
				fmt.Printf("error: message %d: %v\n", count, checkErr)
			}
		}
		p.report(count)
	}
	fmt.Printf("done recv=%d publishers=%d dropped=%d (on first messages %d) violations=%d\n",
		count, len(clocks), dropped, firstDropped, violations)
	if err := sub.Close(); err != nil {
		fmt.Println("error: close:", err)
		return 1
	}
	if violations > 0 {
		return 1
	}
	return 0
}

// reopen opens path with flags, retrying (every 10 ms) while the mount is
// down, until ctx is done.
func reopen(ctx context.Context, path string, flags int) (int, bool) {
	for ctx.Err() == nil {
		fd, err := syscall.Open(path, flags|syscall.O_CLOEXEC, 0)
		if err == nil {
			return fd, true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return -1, false
}

// chaosMountPubChild writes chaos payloads (64 B..64 KiB, one write(2)
// each: one message) to a topic's data file through the mount (args: path
// slot), printing "sent N". When the mount dies (ENOTCONN and the like) it
// reopens the file until the mount is back. Until SIGTERM.
func chaosMountPubChild(args []string) int {
	a := testutil.ChildArgs(args)
	slot, _ := strconv.Atoi(a[1])
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	s := newChaosSender(slot, 64<<10)
	p := progress{word: "sent"}
	buf := make([]byte, 64<<10)
	for ctx.Err() == nil {
		fd, ok := reopen(ctx, a[0], syscall.O_WRONLY)
		if !ok {
			break
		}
		for ctx.Err() == nil {
			size := s.next()
			s.fill(buf[:size])
			n, err := syscall.Write(fd, buf[:size])
			for err == syscall.EINTR {
				n, err = syscall.Write(fd, buf[:size])
			}
			if err != nil || n != size {
				s.seq-- // not published (the mount is gone): send it again
				break
			}
			p.report(s.seq)
			s.pause()
		}
		syscall.Close(fd)
	}
	fmt.Printf("done sent=%d\n", s.seq)
	return 0
}

// chaosMountSubChild reads a topic's data file through the mount (args:
// path) and checks every message (chaosChecker, per open of the file: a
// reopened file is a new subscriber), printing "recv N", "lost N ..." and
// "error: ...". When the mount dies it reopens the file until it is back.
// Until SIGTERM; exit 1 if there was a violation.
func chaosMountSubChild(args []string) int {
	a := testutil.ChildArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	p := progress{word: "recv"}
	buf := make([]byte, 1<<20)
	var count, violations uint64
	for ctx.Err() == nil {
		fd, ok := reopen(ctx, a[0], syscall.O_RDONLY)
		if !ok {
			break
		}
		c := chaosChecker{seqs: map[uint32]uint64{}}
		firstAt := map[uint32]time.Time{} // per sender, in this session
		for ctx.Err() == nil {
			n, err := syscall.Read(fd, buf)
			if err == syscall.EINTR {
				continue
			}
			if err != nil || n == 0 {
				break // the mount is gone (or shut down): reopen
			}
			count++
			pid, lost, err := c.check(buf[:n])
			if _, ok := firstAt[pid]; !ok && err == nil {
				firstAt[pid] = time.Now()
			}
			switch {
			case err != nil:
				if violations++; violations <= 20 {
					fmt.Printf("error: message %d: %v\n", count, err)
				}
			case lost > 0 && time.Since(firstAt[pid]) < chaosLinkGrace:
				fmt.Printf("startup-lost %d pid=%d (mount reader, seq gap)\n", lost, pid)
			case lost > 0:
				fmt.Printf("lost %d pid=%d (mount reader, seq gap)\n", lost, pid)
			}
			p.report(count)
		}
		syscall.Close(fd)
	}
	fmt.Printf("done recv=%d violations=%d\n", count, violations)
	if violations > 0 {
		return 1
	}
	return 0
}

// incarnation is one run of a chaos role, watched by its own goroutine.
type incarnation struct {
	child    *testutil.Child
	count    atomic.Uint64 // last progress number printed
	stopping atomic.Bool   // we kill or terminate it: exiting is expected
	maxGap   atomic.Int64  // longest silence between progress lines (ns)
	watched  chan struct{} // closed when its output ended

	mu     sync.Mutex
	firsts []chaosFirst // a subscriber's first message of each publisher
}

// chaosFirst is a subscriber's first message of one publisher process.
type chaosFirst struct{ pid, seq, dropped uint64 }

// chaosRole is one process slot that the run kills and restarts. kind
// groups roles in the report. start runs a new incarnation; a role with
// counts reports progress ("sent N"/"recv N") and must progress after
// every kill; one without (the mount daemon) is judged by the others
// (the mount's readers and writers progress only while it serves).
type chaosRole struct {
	name, kind string
	counts     bool
	start      func(t *testing.T) *testutil.Child
	runs       int
	cur        *incarnation
}

// chaosRun holds what the watchers found and the final summaries.
type chaosRun struct {
	mu        sync.Mutex
	problems  []string
	summaries []string
	lost      uint64 // messages lost by live subscribers
	lostLines []string
	// startupLost: lost within chaosLinkGrace of a subscriber's first
	// message of a publisher (before it was linked)
	startupLost uint64
}

func (r *chaosRun) problem(format string, args ...any) {
	r.mu.Lock()
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *chaosRun) allProblems() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.problems, "\n")
}

// start runs a new incarnation of role and watches its output: progress
// numbers, losses, error lines, stalls, and exits nobody asked for.
func (r *chaosRun) start(t *testing.T, role *chaosRole) {
	role.runs++
	name := fmt.Sprintf("%s#%d", role.name, role.runs)
	inc := &incarnation{child: role.start(t), watched: make(chan struct{})}
	role.cur = inc
	go func() {
		defer close(inc.watched)
		var last time.Time
		for l := range inc.child.Lines() {
			now := time.Now()
			if f := strings.Fields(l); len(f) == 2 && (f[0] == "sent" || f[0] == "recv") {
				if n, err := strconv.ParseUint(f[1], 10, 64); err == nil {
					inc.count.Store(n)
				}
				if !last.IsZero() && now.Sub(last) > time.Duration(inc.maxGap.Load()) {
					inc.maxGap.Store(int64(now.Sub(last)))
				}
				last = now
				continue
			}
			var f chaosFirst
			if _, err := fmt.Sscanf(l, "first pid=%d seq=%d dropped=%d", &f.pid, &f.seq, &f.dropped); err == nil {
				inc.mu.Lock()
				inc.firsts = append(inc.firsts, f)
				inc.mu.Unlock()
				continue
			}
			var n uint64
			if _, err := fmt.Sscanf(l, "startup-lost %d", &n); err == nil {
				r.mu.Lock()
				r.startupLost += n
				r.mu.Unlock()
				continue
			}
			if _, err := fmt.Sscanf(l, "lost %d", &n); err == nil {
				r.mu.Lock()
				r.lost += n
				if len(r.lostLines) < 20 {
					r.lostLines = append(r.lostLines, name+": "+l)
				}
				r.mu.Unlock()
				continue
			}
			if strings.HasPrefix(l, "done") {
				r.mu.Lock()
				r.summaries = append(r.summaries, name+": "+l)
				r.mu.Unlock()
				continue
			}
			if role.counts {
				r.problem("%s: %s", name, l)
			}
		}
		select {
		case <-inc.child.Done():
		case <-time.After(10 * time.Second):
			r.problem("%s: stdout closed but the process was not reaped within 10 s", name)
			return
		}
		if _, err := inc.child.Exited(); !inc.stopping.Load() {
			r.problem("%s: exited on its own: %v", name, err)
		}
	}()
}

// chaosKills is the number of kills: SHMFS_CHAOS_KILLS, else the default.
func chaosKills(t *testing.T) int {
	if s := os.Getenv("SHMFS_CHAOS_KILLS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("SHMFS_CHAOS_KILLS=%q: want a positive number", s)
		}
		return n
	}
	return chaosDefaultKills
}

// percentile returns the p-th percentile (0..100) of sorted ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[min(len(ds)-1, (len(ds)*p+99)/100-1)]
}

// TestChaosKill runs two ack-mode publishers and three subscribers (two
// copying, one zero-copy) of one topic, and a mount of the domain with a
// writer and a reader of the same topic through it, and SIGKILLs a random
// one of these eight processes at a random instant, SHMFS_CHAOS_KILLS
// times (default 50), restarting it each time. After every kill each
// counting process must make progress within 5 s (else it is a hang: it is
// killed too, and the run fails at the end); every receiver checks
// checksums, order and losses throughout. At the end everything stops
// cleanly, `shmfs clean` removes what the killed processes left, and
// /dev/shm holds nothing of the domain. The report (lines starting with
// "chaos:") gives kills, hangs, losses, corruptions, recovery times per
// kind and stale objects. Without FUSE (outside CI) the mount's roles are
// left out.
//
// Adding a process kind (a bridge, say) is one more chaosRole: how to
// start it, whether it counts, and its kind for the report.
func TestChaosKill(t *testing.T) {
	kills := chaosKills(t)
	e := newEnv(t)
	vars := e.vars()
	t.Cleanup(func() {
		// Runs after the children were killed and reaped: a failed run
		// leaves the objects of killed processes; the failure is reported
		// already.
		if t.Failed() {
			_, _ = shm.Sweep(e.domain, false)
		}
	})
	const topic = "chaos"
	child := func(name string, args ...string) func(t *testing.T) *testutil.Child {
		return func(t *testing.T) *testutil.Child { return testutil.StartChild(t, name, vars, args...) }
	}
	roles := []*chaosRole{
		{name: "sub0", kind: "subscriber", counts: true, start: child("chaossub", topic, "copy")},
		{name: "sub1", kind: "subscriber", counts: true, start: child("chaossub", topic, "copy")},
		{name: "sub2", kind: "subscriber", counts: true, start: child("chaossub", topic, "zerocopy")},
		{name: "pub0", kind: "publisher", counts: true, start: child("chaospub", topic, "0")},
		{name: "pub1", kind: "publisher", counts: true, start: child("chaospub", topic, "1")},
	}
	if fuseUsable() {
		mp := filepath.Join(t.TempDir(), "mnt")
		data := filepath.Join(mp, topic, "data")
		mount := func(t *testing.T) *testutil.Child {
			p := startMountProcess(t, e, mp, "", shmfsBin, "mount", "--ack-timeout", chaosAck.String(), mp)
			waitMounted(t, p, e, mp, 20*time.Second)
			if err := os.MkdirAll(filepath.Dir(data), 0o755); err != nil {
				t.Fatal(err)
			}
			return p
		}
		roles = append(roles,
			&chaosRole{name: "mount", kind: "mount daemon", start: mount},
			&chaosRole{name: "mountsub", kind: "mount reader", counts: true, start: child("chaosmountsub", data)},
			&chaosRole{name: "mountpub", kind: "mount writer", counts: true, start: child("chaosmountpub", data, "2")},
		)
		defer func() {
			if !mounted(mp) {
				return
			}
			_ = syscall.Unmount(mp, syscall.MNT_DETACH)
		}()
	} else {
		if os.Getenv("CI") != "" {
			t.Fatal("chaos: FUSE unavailable in CI: the mount's roles cannot run")
		}
		t.Log("chaos: FUSE unavailable: the mount's roles are left out")
	}
	run := &chaosRun{}
	var retired []*incarnation
	// The mount first (its readers need it), then subscribers (they get
	// everything), then the senders.
	slices.SortStableFunc(roles, func(a, b *chaosRole) int {
		order := map[string]int{"mount daemon": 0, "subscriber": 1, "mount reader": 1}
		oa, ok1 := order[a.kind]
		ob, ok2 := order[b.kind]
		if !ok1 {
			oa = 2
		}
		if !ok2 {
			ob = 2
		}
		return oa - ob
	})
	for _, r := range roles {
		run.start(t, r)
	}
	snapshot := func() map[*chaosRole]uint64 {
		m := map[*chaosRole]uint64{}
		for _, r := range roles {
			m[r] = r.cur.count.Load()
		}
		return m
	}
	// progressed waits until every counting role's current incarnation went
	// past its count in before (0 for a fresh one). It returns the roles
	// that did not within chaosStall.
	progressed := func(before map[*chaosRole]uint64) []*chaosRole {
		deadline := time.Now().Add(chaosStall)
		for {
			var stuck []*chaosRole
			for _, r := range roles {
				if r.counts && r.cur.count.Load() <= before[r] {
					stuck = append(stuck, r)
				}
			}
			if len(stuck) == 0 || time.Now().After(deadline) {
				return stuck
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	kill := func(r *chaosRole) {
		t.Helper()
		old := r.cur
		old.stopping.Store(true)
		old.child.Kill()
		select {
		case <-old.child.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("%s#%d not reaped 5 s after SIGKILL", r.name, r.runs)
		}
		retired = append(retired, old)
	}
	var hangs []string
	start := time.Now()
	if stuck := progressed(map[*chaosRole]uint64{}); len(stuck) > 0 {
		t.Fatalf("chaos: not every process communicates after %v: %v; problems:\n%s", chaosStall, names(stuck), run.allProblems())
	}
	t.Logf("chaos: %d processes running and communicating after %v", len(roles), time.Since(start).Round(time.Millisecond))

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	perKind := map[string]int{}
	recoveries := map[string][]time.Duration{}
	began := time.Now()
	for k := 0; k < kills; k++ {
		// A random instant: whatever the victim is doing (sending,
		// waiting for acks, copying, growing a file, serving a read).
		time.Sleep(time.Duration(50+rng.IntN(450)) * time.Millisecond)
		victim := roles[rng.IntN(len(roles))]
		before := snapshot()
		kill(victim)
		killed := time.Now()
		perKind[victim.kind]++
		run.start(t, victim)
		before[victim] = 0
		stuck := progressed(before)
		for _, r := range stuck {
			// A hang: record it, then kill and restart the process so
			// that the run goes on (the test fails at the end).
			hangs = append(hangs, fmt.Sprintf("kill %d (%s#%d): %s#%d made no progress within %v (count %d); problems so far:\n%s",
				k+1, victim.name, victim.runs-1, r.name, r.runs, chaosStall, r.cur.count.Load(), run.allProblems()))
			kill(r)
			run.start(t, r)
		}
		if len(stuck) == 0 {
			recoveries[victim.kind] = append(recoveries[victim.kind], time.Since(killed))
		} else if again := progressed(snapshot()); len(again) > 0 {
			t.Fatalf("chaos: %v stuck even after a restart; problems:\n%s", names(again), run.allProblems())
		}
		if (k+1)%100 == 0 {
			t.Logf("chaos: %d kills after %v", k+1, time.Since(began).Round(time.Second))
		}
	}

	// Stop everything cleanly: each process must exit 0 within 10 s.
	for _, r := range roles {
		r.cur.stopping.Store(true)
		sig := syscall.SIGTERM
		if r.kind == "mount daemon" {
			continue // last: its readers and writers first
		}
		r.cur.child.Signal(sig)
	}
	for _, r := range roles {
		if r.kind == "mount daemon" {
			continue
		}
		if err := r.cur.child.Wait(t, 10*time.Second); err != nil {
			hangs = append(hangs, fmt.Sprintf("%s#%d: %v after SIGTERM", r.name, r.runs, err))
		}
		retired = append(retired, r.cur)
	}
	for _, r := range roles {
		if r.kind == "mount daemon" {
			r.cur.child.Signal(syscall.SIGINT)
			if err := r.cur.child.Wait(t, 10*time.Second); err != nil {
				hangs = append(hangs, fmt.Sprintf("%s#%d: %v after SIGINT", r.name, r.runs, err))
			}
			retired = append(retired, r.cur)
		}
	}
	var maxGap time.Duration
	for _, inc := range retired {
		select {
		case <-inc.watched:
		case <-time.After(10 * time.Second):
			t.Fatal("a watcher did not finish")
		}
		maxGap = max(maxGap, time.Duration(inc.maxGap.Load()))
	}
	for _, s := range run.summaries {
		t.Log(s)
	}

	// What the killed processes left is removed by `shmfs clean`.
	left := testutil.ShmObjects(e.domain)
	clean := testutil.Run(t, 10*time.Second, options("", vars), shmfsBin, "clean")
	if clean.Code != 0 {
		t.Errorf("shmfs clean: exit status %d; stdout:\n%s\nstderr:\n%s", clean.Code, clean.Stdout, clean.Stderr)
	}
	var stale []string
	for _, n := range testutil.ShmObjects(e.domain) {
		// A process killed between creating a temporary object and writing
		// its header leaves a file that clean removes only after
		// shm.SweepGrace (documented); anything else is a leak.
		if strings.HasSuffix(n, "_"+shm.TempSuffix) {
			if st, err := os.Stat(shmname.Path(n)); err == nil && st.Size() < shm.HeaderSize {
				t.Logf("chaos: %s: headerless temporary object of a killed process (clean waits %v); removing", n, shm.SweepGrace)
				_ = os.Remove(shmname.Path(n))
				continue
			}
		}
		stale = append(stale, n)
	}

	// The report.
	problems := run.allProblems()
	corrupt := strings.Count(problems, "error: ")
	total := 0
	for _, n := range perKind {
		total += n
	}
	t.Logf("chaos: %d kills in %v (%s)", total, time.Since(began).Round(time.Second), kindCounts(perKind))
	t.Logf("chaos: hangs: %d", len(hangs))
	t.Logf("chaos: messages lost by live subscribers: %d; corrupt, reordered or duplicated: %d", run.lost, corrupt)
	t.Logf("chaos: lost by subscribers just started, before the publisher linked them (within %v of their first message; not protected by design): %d", chaosLinkGrace, run.startupLost)
	kinds := make([]string, 0, len(recoveries))
	for k := range recoveries {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		ds := recoveries[k]
		slices.Sort(ds)
		t.Logf("chaos: recovery after killing a %s (kill to every process progressing): n=%d p50 %v p99 %v max %v",
			k, len(ds), percentile(ds, 50).Round(time.Millisecond), percentile(ds, 99).Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	}
	t.Logf("chaos: longest silence of any process: %v", maxGap.Round(time.Millisecond))
	t.Logf("chaos: objects left by killed processes: %d; stale after shmfs clean: %d", len(left), len(stale))

	for _, h := range hangs {
		t.Errorf("chaos: hang: %s", h)
	}
	if problems != "" {
		t.Errorf("chaos: %s", problems)
	}
	if run.lost > 0 {
		t.Errorf("chaos: live subscribers lost %d messages: %s", run.lost, strings.Join(run.lostLines, "\n"))
	}
	for _, n := range stale {
		t.Errorf("chaos: left in /dev/shm after shmfs clean: %s", n)
	}
	if total == 0 {
		t.Error("chaos: no kill happened")
	}
}

func names(rs []*chaosRole) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s#%d", r.name, r.runs))
	}
	return out
}

func kindCounts(m map[string]int) string {
	var parts []string
	for k, n := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, n))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// fuseUsable reports whether this host can mount (as root: /dev/fuse).
func fuseUsable() bool {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return os.Geteuid() == 0
}

// TestLateSubscribers starts copy and zero-copy subscriber processes one
// after another while two ack-mode publishers are busy: each must receive
// every publisher's messages in order, without duplicates, from its first
// message on (the chaos test's restarts, without the kills), and must not
// count messages sent before it started as dropped.
func TestLateSubscribers(t *testing.T) {
	e := newEnv(t)
	vars := e.vars()
	const topic = "late"
	run := &chaosRun{}
	child := func(name string, args ...string) func(t *testing.T) *testutil.Child {
		return func(t *testing.T) *testutil.Child { return testutil.StartChild(t, name, vars, args...) }
	}
	pubs := []*chaosRole{
		{name: "pub0", counts: true, start: child("chaospub", topic, "0")},
		{name: "pub1", counts: true, start: child("chaospub", topic, "1")},
	}
	for _, r := range pubs {
		run.start(t, r)
	}
	for i := range 12 {
		mode := "copy"
		if i%3 == 2 {
			mode = "zerocopy"
		}
		r := &chaosRole{name: fmt.Sprintf("sub%d-%s", i, mode), counts: true, start: child("chaossub", topic, mode)}
		// Every message up to a publisher's printed count was sent before
		// the subscriber started.
		sentBefore := map[uint64]uint64{}
		for _, p := range pubs {
			sentBefore[uint64(p.cur.child.PID())] = p.cur.count.Load()
		}
		run.start(t, r)
		testutil.CheckFor(t, chaosStall, 5*time.Millisecond, func() error {
			if n := r.cur.count.Load(); n < 50 {
				return fmt.Errorf("%s received %d messages, want 50; problems so far:\n%s", r.name, n, run.allProblems())
			}
			return nil
		})
		r.cur.stopping.Store(true)
		r.cur.child.Signal(syscall.SIGTERM)
		if err := r.cur.child.Wait(t, 10*time.Second); err != nil {
			t.Errorf("%s: %v after SIGTERM", r.name, err)
		}
		select {
		case <-r.cur.watched:
		case <-time.After(10 * time.Second):
			t.Fatal("a watcher did not finish")
		}
		for _, f := range r.cur.firsts {
			if f.dropped > 0 && f.seq-f.dropped <= sentBefore[f.pid] {
				t.Errorf("%s: first message of publisher pid %d (seq %d) has Header.Dropped %d: it counts seq %d.. as missed, sent before the subscriber started (the publisher had sent %d)",
					r.name, f.pid, f.seq, f.dropped, f.seq-f.dropped, sentBefore[f.pid])
			}
		}
	}
	for _, r := range pubs {
		r.cur.stopping.Store(true)
		r.cur.child.Signal(syscall.SIGTERM)
	}
	for _, r := range pubs {
		if err := r.cur.child.Wait(t, 10*time.Second); err != nil {
			t.Errorf("%s: %v after SIGTERM", r.name, err)
		}
	}
	for _, r := range pubs {
		select {
		case <-r.cur.watched:
		case <-time.After(10 * time.Second):
			t.Fatal("a watcher did not finish")
		}
	}
	if p := run.allProblems(); p != "" {
		t.Errorf("late subscribers: %s", p)
	}
	if run.lost > 0 {
		t.Errorf("late subscribers lost %d messages: %s", run.lost, strings.Join(run.lostLines, "\n"))
	}
	for _, s := range run.summaries {
		t.Log(s)
	}
}
