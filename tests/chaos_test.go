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

// Chaos payload: a little-endian header, a fill, and a CRC-32C of
// everything before it, so that a subscriber detects a torn or mixed
// message.
const (
	chaosMagic   = "shmfsCHS"
	chaosHdr     = 32 // magic, pid u32, slot u32, seq u64, size u64
	chaosMinSize = 64
	chaosMaxSize = 256 << 10
	chaosAck     = 500 * time.Millisecond
	chaosStall   = 5 * time.Second // longest tolerated silence of a live process
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

// chaosDecode validates a payload and returns its publisher pid and seq.
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

// chaosConfig is the children's domain and port, from the environment.
// chaosNode opens the node of a chaos child (domain and port from the
// environment); it lives as long as the child.
func chaosNode() *core.Node {
	n, err := core.OpenNode(core.Config{})
	if err != nil {
		panic(err)
	}
	return n
}

// chaosPubChild publishes on topic (args: topic slot) in ack mode as fast
// as it can, with sizes growing from 64 B to 256 KiB (so its memory file
// grows several times), and prints "sent N" at most every 20 ms. Until
// SIGTERM; then "done ..." and exit 0. Any send error other than an ack
// timeout prints "error: ..." and exits 1.
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
	pid := uint32(os.Getpid())
	rng := rand.New(rand.NewPCG(uint64(pid), uint64(time.Now().UnixNano())))
	pattern := make([]byte, 2*chaosMaxSize)
	for i := range pattern {
		pattern[i] = byte(rng.Uint32())
	}
	var seq, ackTimeouts uint64
	var printed time.Time
	for ctx.Err() == nil {
		seq++
		upper := chaosMaxSize
		if seq/64 < 12 {
			upper = min(chaosMaxSize, chaosMinSize<<(seq/64))
		}
		size := chaosMinSize + rng.IntN(upper-chaosMinSize+1)
		sctx, cancel := context.WithTimeout(ctx, 2*chaosStall)
		err := pub.SendFunc(sctx, size, func(buf []byte) error {
			chaosEncode(buf, pid, uint32(slot), seq, pattern)
			return nil
		})
		cancel()
		switch {
		case err == nil:
		case errors.Is(err, core.ErrAckTimeout):
			ackTimeouts++
		case ctx.Err() != nil:
			continue // SIGTERM during the send
		default:
			fmt.Printf("error: send seq %d (%d bytes): %v\n", seq, size, err)
			return 1
		}
		if now := time.Now(); now.Sub(printed) >= 20*time.Millisecond {
			fmt.Printf("sent %d\n", seq)
			printed = now
		}
		if rng.IntN(4) == 0 { // leave some CPU to the others (2 cores)
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
		}
	}
	st := pub.Stats()
	fmt.Printf("done sent=%d ack-timeouts=%d/%d grows=%d\n", st.Sent, ackTimeouts, st.AckTimeouts, st.Grows)
	if err := pub.Close(); err != nil {
		fmt.Println("error: close:", err)
		return 1
	}
	return 0
}

// chaosSubChild subscribes to topic (args: topic copy|zerocopy) and checks
// every message: payload checksum, size, per publisher strictly increasing
// seq and clock, and Header.Dropped equal to the clock gap. It prints
// "recv N" at most every 20 ms, "first pid=P seq=S dropped=D" for each
// publisher's first message, and an "error: ..." line per violation (the
// first 20), and goes on; at SIGTERM it prints "done ..." and exits 0, or
// 1 if there was any violation.
func chaosSubChild(args []string) int {
	a := testutil.ChildArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	sub, err := chaosNode().NewSubscriber(a[0], &core.SubscriberOptions{ZeroCopy: a[1] == "zerocopy"})
	if err != nil {
		fmt.Println("error: new subscriber:", err)
		return 1
	}
	type pubState struct {
		pid        uint32
		seq, clock uint64
	}
	pubs := map[uint64]*pubState{}
	// firstDropped sums Header.Dropped of each publisher's first message
	// here (each also printed as a "first" line): messages sent before this
	// subscriber existed are not "missed" (TestLateSubscribers checks).
	var count, gaps, dropped, firstDropped uint64
	check := func(h core.Header, b []byte) error {
		if h.Size != len(b) {
			return fmt.Errorf("header size %d, payload %d bytes", h.Size, len(b))
		}
		pid, seq, err := chaosDecode(b)
		if err != nil {
			return fmt.Errorf("publisher %016x clock %d: %w", h.Publisher, h.Clock, err)
		}
		st := pubs[h.Publisher]
		switch {
		case st == nil:
			pubs[h.Publisher] = &pubState{pid: pid, seq: seq, clock: h.Clock}
		case pid != st.pid:
			return fmt.Errorf("publisher %016x: payload of pid %d, earlier of pid %d", h.Publisher, pid, st.pid)
		case seq == st.seq && h.Clock == st.clock:
			return fmt.Errorf("publisher %016x (pid %d): duplicate: seq %d clock %d delivered again",
				h.Publisher, pid, seq, h.Clock)
		case seq <= st.seq || h.Clock <= st.clock:
			return fmt.Errorf("publisher %016x (pid %d): out of order: seq %d clock %d after seq %d clock %d",
				h.Publisher, pid, seq, h.Clock, st.seq, st.clock)
		case h.Dropped != h.Clock-st.clock-1:
			return fmt.Errorf("publisher %016x (pid %d): clock %d after clock %d reports Dropped %d, want %d (the clock gap)",
				h.Publisher, pid, h.Clock, st.clock, h.Dropped, h.Clock-st.clock-1)
		default:
			gaps += seq - st.seq - 1
			st.seq, st.clock = seq, h.Clock
		}
		if st == nil {
			firstDropped += h.Dropped
			fmt.Printf("first pid=%d seq=%d dropped=%d\n", pid, seq, h.Dropped)
		}
		dropped += h.Dropped
		return nil
	}
	var printed time.Time
	var reported, violations uint64
	var checkErr error
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		checkErr = nil
		err := sub.ReceiveFunc(rctx, func(h core.Header, b []byte) error {
			checkErr = check(h, b)
			return nil
		})
		cancel()
		switch {
		case err == nil:
			count++
			if checkErr != nil {
				if violations++; violations <= 20 {
					fmt.Printf("error: message %d: %v\n", count, checkErr)
				}
			}
		case ctx.Err() != nil:
			continue
		case errors.Is(err, context.DeadlineExceeded):
		default:
			fmt.Printf("error: receive after message %d: %v\n", count, err)
			return 1
		}
		if now := time.Now(); count != reported && now.Sub(printed) >= 20*time.Millisecond {
			fmt.Printf("recv %d\n", count)
			printed, reported = now, count
		}
	}
	fmt.Printf("done recv=%d publishers=%d gaps=%d dropped=%d (on first messages %d) violations=%d\n",
		count, len(pubs), gaps, dropped, firstDropped, violations)
	if err := sub.Close(); err != nil {
		fmt.Println("error: close:", err)
		return 1
	}
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

// chaosRole is one process slot (a publisher or a subscriber) that the
// test kills and restarts.
type chaosRole struct {
	name  string
	child string   // child function
	args  []string // child arguments
	runs  int
	cur   *incarnation
}

// chaosRun holds the problems the watchers found and the final summaries.
type chaosRun struct {
	mu        sync.Mutex
	problems  []string
	summaries []string
}

func (r *chaosRun) problem(format string, args ...any) {
	r.mu.Lock()
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *chaosRun) allProblems() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.problems) == 0 {
		return ""
	}
	return strings.Join(r.problems, "\n")
}

// start runs a new incarnation of role and watches its output: progress
// numbers, error lines, stalls, and exits nobody asked for.
func (r *chaosRun) start(t *testing.T, role *chaosRole, vars []string) {
	role.runs++
	name := fmt.Sprintf("%s#%d", role.name, role.runs)
	inc := &incarnation{child: testutil.StartChild(t, role.child, vars, role.args...), watched: make(chan struct{})}
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
			if strings.HasPrefix(l, "done") {
				r.mu.Lock()
				r.summaries = append(r.summaries, name+": "+l)
				r.mu.Unlock()
				continue
			}
			r.problem("%s: %s", name, l)
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

// TestChaosKill runs two ack-mode publishers and three subscribers (two
// copying, one zero-copy) on one topic and, for about 12 s, SIGKILLs a
// random one at a random instant and restarts it. After every kill each
// process, survivors and the restarted one, must make progress within 5 s;
// subscribers check checksums and per-publisher order throughout. At the
// end everything stops cleanly, `shmfs clean` removes what the killed
// processes left, and /dev/shm holds nothing of the domain.
func TestChaosKill(t *testing.T) {
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
	roles := []*chaosRole{
		{name: "pub0", child: "chaospub", args: []string{topic, "0"}},
		{name: "pub1", child: "chaospub", args: []string{topic, "1"}},
		{name: "sub0", child: "chaossub", args: []string{topic, "copy"}},
		{name: "sub1", child: "chaossub", args: []string{topic, "copy"}},
		{name: "sub2", child: "chaossub", args: []string{topic, "zerocopy"}},
	}
	run := &chaosRun{}
	var retired []*incarnation
	for _, r := range roles[2:] { // subscribers first: they get everything
		run.start(t, r, vars)
	}
	for _, r := range roles[:2] {
		run.start(t, r, vars)
	}
	// progressed waits until every role's current incarnation went past
	// its count in before (0 for a fresh one).
	progressed := func(before map[*chaosRole]uint64) {
		t.Helper()
		testutil.CheckFor(t, chaosStall, 5*time.Millisecond, func() error {
			var stuck []string
			for _, r := range roles {
				if n := r.cur.count.Load(); n <= before[r] {
					stuck = append(stuck, fmt.Sprintf("%s#%d at %d", r.name, r.runs, n))
				}
			}
			if len(stuck) > 0 {
				return fmt.Errorf("no progress: %s; problems so far:\n%s", strings.Join(stuck, ", "), run.allProblems())
			}
			return nil
		})
	}
	snapshot := func() map[*chaosRole]uint64 {
		m := map[*chaosRole]uint64{}
		for _, r := range roles {
			m[r] = r.cur.count.Load()
		}
		return m
	}
	start := time.Now()
	progressed(map[*chaosRole]uint64{})
	t.Logf("all 5 processes running and communicating after %v", time.Since(start).Round(time.Millisecond))

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	kills := map[string]int{}
	var recoveries []time.Duration
	for end := time.Now().Add(12 * time.Second); time.Now().Before(end); {
		// A random instant: whatever the victim is doing (sending,
		// waiting for acks, copying under the read lock, growing a file).
		time.Sleep(time.Duration(100+rng.IntN(700)) * time.Millisecond)
		victim := roles[rng.IntN(len(roles))]
		before := snapshot()
		had := before[victim]
		old := victim.cur
		old.stopping.Store(true)
		old.child.Kill()
		select {
		case <-old.child.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("%s#%d not reaped 5 s after SIGKILL", victim.name, victim.runs)
		}
		killed := time.Now()
		kills[victim.name]++
		retired = append(retired, old)
		run.start(t, victim, vars)
		before[victim] = 0
		progressed(before)
		rec := time.Since(killed)
		recoveries = append(recoveries, rec)
		t.Logf("killed %s#%d (had %d); all 5 progressing again after %v", victim.name, victim.runs-1, had, rec.Round(time.Millisecond))
	}

	// Stop everything cleanly: each process must exit 0 within 10 s.
	for _, r := range roles {
		r.cur.stopping.Store(true)
		r.cur.child.Signal(syscall.SIGTERM)
	}
	for _, r := range roles {
		if err := r.cur.child.Wait(t, 10*time.Second); err != nil {
			t.Errorf("%s#%d: %v after SIGTERM", r.name, r.runs, err)
		}
		retired = append(retired, r.cur)
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
	if p := run.allProblems(); p != "" {
		t.Errorf("chaos: %s", p)
	}
	for _, s := range run.summaries {
		t.Log(s)
	}
	if maxGap > chaosStall {
		t.Errorf("a process went %v without progress (limit %v)", maxGap, chaosStall)
	}
	total := 0
	for _, n := range kills {
		total += n
	}
	slices.Sort(recoveries)
	if len(recoveries) > 0 {
		var sum time.Duration
		for _, d := range recoveries {
			sum += d
		}
		t.Logf("%d kills %v; recovery (kill to all 5 progressing): min %v, median %v, max %v, mean %v; longest silence of any process %v",
			total, kills, recoveries[0].Round(time.Millisecond), recoveries[len(recoveries)/2].Round(time.Millisecond),
			recoveries[len(recoveries)-1].Round(time.Millisecond), (sum / time.Duration(len(recoveries))).Round(time.Millisecond),
			maxGap.Round(time.Millisecond))
	}
	if total == 0 {
		t.Error("no kill happened")
	}

	// What the killed processes left is removed by `shmfs clean`.
	left := testutil.ShmObjects(e.domain)
	clean := testutil.Run(t, 10*time.Second, options("", vars), shmfsBin, "clean")
	if clean.Code != 0 {
		t.Errorf("shmfs clean: exit status %d; stdout:\n%s\nstderr:\n%s", clean.Code, clean.Stdout, clean.Stderr)
	}
	t.Logf("shmfs clean: %d objects before, stdout:\n%s\nstderr:\n%s", len(left), clean.Stdout, clean.Stderr)
	for _, n := range testutil.ShmObjects(e.domain) {
		// A process killed between creating a temporary object and writing
		// its header leaves a file that clean removes only after
		// shm.SweepGrace (documented); anything else is a leak.
		if strings.HasSuffix(n, "_"+shm.TempSuffix) {
			if st, err := os.Stat(shmname.Path(n)); err == nil && st.Size() < shm.HeaderSize {
				t.Logf("%s: headerless temporary object of a killed process (clean waits %v); removing", n, shm.SweepGrace)
				_ = os.Remove(shmname.Path(n))
				continue
			}
		}
		t.Errorf("left in /dev/shm after shmfs clean: %s", n)
	}
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
	pubs := []*chaosRole{
		{name: "pub0", child: "chaospub", args: []string{topic, "0"}},
		{name: "pub1", child: "chaospub", args: []string{topic, "1"}},
	}
	for _, r := range pubs {
		run.start(t, r, vars)
	}
	for i := range 12 {
		mode := "copy"
		if i%3 == 2 {
			mode = "zerocopy"
		}
		r := &chaosRole{name: fmt.Sprintf("sub%d-%s", i, mode), child: "chaossub", args: []string{topic, mode}}
		// Every message up to a publisher's printed count was sent before
		// the subscriber started.
		sentBefore := map[uint64]uint64{}
		for _, p := range pubs {
			sentBefore[uint64(p.cur.child.PID())] = p.cur.count.Load()
		}
		run.start(t, r, vars)
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
	for _, s := range run.summaries {
		t.Log(s)
	}
}
