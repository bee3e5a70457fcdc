package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shm"
	"github.com/shmfs/shmfs/internal/shmname"
)

// Options configure Run.
type Options struct {
	// Quick measures fewer sizes and messages (a run under a minute).
	Quick bool
	// Exe is the binary re-executed for the receivers (default: this one)
	// and ChildArgs the arguments that make it run ChildMain, before the
	// receiver's kind (e.g. "bench", "--child").
	Exe       string
	ChildArgs []string
	// Domain is the shmfs domain of the run (default: a fresh one, so that
	// nothing else running is disturbed or counted) and Port its
	// registration port (0: the default).
	Domain string
	Port   int
	// Progress, when set, is called after every point.
	Progress func(done, total int, what string)
}

// Sizes returns the message sizes of a run.
func Sizes(quick bool) []int {
	if quick {
		return []int{64, 4 << 10, 64 << 10, 1 << 20, 16 << 20}
	}
	return []int{64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20}
}

// FanOutSubscribers returns the receiver counts of the fan-out suite.
func FanOutSubscribers(quick bool) []int {
	if quick {
		return []int{1, 4}
	}
	return []int{1, 2, 4, 8}
}

// fanOutSize is the message size of the fan-out suite.
const fanOutSize = 1 << 10

func clamp(v, lo, hi int) int { return max(lo, min(hi, v)) }

// latCount: messages measured (after warm ones) per latency point.
func latCount(size int, quick bool) (count, warm int) {
	if quick {
		count = clamp((64<<20)/size, 20, 2000)
	} else {
		count = clamp((512<<20)/size, 100, 10000)
	}
	return count, 3 + count/20
}

// tpCount: messages per throughput point.
func tpCount(size int, quick bool) int {
	if quick {
		return clamp((256<<20)/size, 16, 50000)
	}
	return clamp((512<<20)/size, 32, 200000)
}

func fanOutCount(quick bool) int {
	if quick {
		return 5000
	}
	return 50000
}

const tpWarm = 4

// runner holds what one run shares: the shmfs node and NATS server of the
// sending side, the receivers started, scratch space.
type runner struct {
	ctx     context.Context
	opt     Options
	machine Machine
	rep     *Report
	dir     string // sockets
	node    *core.Node
	nats    *natsServer
	kids    []*child
	topics  int
	done    int
	total   int
	what    string // the point being measured
}

// Run measures every suite and returns the report. A point that fails is
// recorded (Point.Error, Report.Failures) and the run goes on; Run returns
// an error only when the run could not be made at all or ctx ended (then
// with what was measured so far).
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("bench: find own executable: %w", err)
		}
		o.Exe = exe
	}
	if o.Domain == "" {
		o.Domain = "bench-" + shmname.Hex(proc.RandomID())[:8]
	}
	if err := shmname.CheckDomain(o.Domain); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	dir, err := os.MkdirTemp("", "shmfs-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	r := &runner{ctx: ctx, opt: o, machine: readMachine(), dir: dir}
	defer r.cleanup()
	node, err := core.OpenNode(core.Config{Domain: o.Domain, Port: o.Port})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	r.node = node

	sizes := Sizes(o.Quick)
	rep := &Report{
		Version: ReportVersion, Machine: r.machine, Quick: o.Quick,
		Started: time.Now().UTC().Truncate(time.Second), Sizes: sizes, FanOut: fanOutSize,
	}
	r.rep = rep
	lat, tp, fan := latencyTransports(), throughputTransports(), fanOutTransports()
	subs := FanOutSubscribers(o.Quick)
	r.total = 1 + len(sizes) + (len(lat)+len(tp))*len(sizes) + len(fan)*len(subs)

	start := time.Now()
	rep.Futex = r.futex()
	mm := r.memmove(sizes)
	rep.Latency = append(rep.Latency, mm.latency)
	rep.Through = append(rep.Through, mm.throughput)
	for _, t := range lat {
		rep.Latency = append(rep.Latency, r.series("latency", t, sizes, []int{1}, r.latencyPoint))
	}
	for _, t := range tp {
		rep.Through = append(rep.Through, r.series("throughput", t, sizes, []int{1}, r.throughputPoint))
	}
	for _, t := range fan {
		rep.FanOuts = append(rep.FanOuts, r.series("fan-out", t, []int{fanOutSize}, subs, r.fanOutPoint))
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, ctx.Err()
}

// cleanup stops every receiver, closes the node and the NATS server, and
// removes what the run left in /dev/shm and the temporary directory.
func (r *runner) cleanup() {
	for _, k := range r.kids {
		k.stop()
	}
	if r.node != nil {
		_ = r.node.Close()
	}
	if r.nats != nil {
		r.nats.shutdown()
	}
	_ = os.RemoveAll(r.dir)
	_, _ = shm.Sweep(r.opt.Domain, false)
}

// starting tells the progress callback what is measured now; step counts
// a point done.
func (r *runner) starting(what string) {
	r.what = what
	if r.opt.Progress != nil {
		r.opt.Progress(r.done, r.total, what)
	}
}

func (r *runner) step() {
	r.done++
	if r.opt.Progress != nil {
		r.opt.Progress(r.done, r.total, r.what)
	}
}

// fail records a failed point.
func (r *runner) fail(what string, err error) Point {
	msg := err.Error()
	r.rep.Failures = append(r.rep.Failures, what+": "+msg)
	return Point{Error: msg}
}

// A transport carries messages from this process to receiver processes.
type transport struct {
	id, label, group, note string
	lossless               bool
	// open starts n receivers and connects to them; with reply they
	// answer every message (latency).
	open func(r *runner, n int, reply bool) (link, []*child, error)
}

// link is the sender's end of a transport.
type link interface {
	// begin starts a point that must end by deadline.
	begin(deadline time.Time)
	// send sends one message of n bytes with sequence number seq (and the
	// time stamp) in its first 16 bytes, to every receiver.
	send(n int, seq uint64) error
	// await waits for the (one) receiver's answer to a latency message.
	await() error
	close()
}

type pointFunc func(l link, kids []*child, size int) (Point, error)

// series measures t at every size (and receiver count): one set of
// receivers for the whole series, started again after a failed point.
func (r *runner) series(suite string, t transport, sizes, subs []int, measure pointFunc) Series {
	s := Series{ID: t.id, Label: t.label, Group: t.group, Lossless: t.lossless, Note: t.note}
	var l link
	var kids []*child
	stop := func() {
		if l != nil {
			l.close()
		}
		for _, k := range kids {
			k.stop()
		}
		l, kids = nil, nil
	}
	defer stop()
	for _, n := range subs {
		if n != len(kids) {
			stop()
		}
		for _, size := range sizes {
			what := fmt.Sprintf("%s %s %s", suite, t.id, SizeName(size))
			if suite == "fan-out" {
				what = fmt.Sprintf("%s %s 1→%d", suite, t.id, n)
			}
			r.starting(what)
			var p Point
			var err error
			if err = r.ctx.Err(); err == nil && l == nil {
				l, kids, err = t.open(r, n, suite == "latency")
				if err != nil {
					stop()
				}
			}
			if err == nil {
				p, err = measure(l, kids, size)
			}
			if err == nil && suite != "latency" && t.lossless && p.ReceivedPct < 100 {
				err = fmt.Errorf("%w: %s received %.3f %% of %d", errLost, t.id, p.ReceivedPct, p.Count)
			}
			if err != nil {
				p = r.fail(what, err)
				stop()
			}
			p.Size = size
			if suite == "fan-out" {
				p.Subscribers = n
			}
			s.Points = append(s.Points, p)
			r.step()
		}
	}
	return s
}

func (r *runner) latencyPoint(l link, kids []*child, size int) (Point, error) {
	count, warm := latCount(size, r.opt.Quick)
	k := kids[0]
	if err := k.tell("lat %d %d %d", size, count, warm); err != nil {
		return Point{}, err
	}
	if _, err := k.expect("ready", 30*time.Second); err != nil {
		return Point{}, err
	}
	l.begin(time.Now().Add(pointTimeout))
	for i := 0; i < warm+count; i++ {
		seq := uint64(i - warm)
		if i < warm {
			seq = warmBit | uint64(i)
		}
		if err := l.send(size, seq); err != nil {
			return Point{}, fmt.Errorf("send %d: %w", i, err)
		}
		if err := l.await(); err != nil {
			return Point{}, fmt.Errorf("answer %d: %w", i, err)
		}
	}
	f, err := k.expect("lat", pointTimeout)
	if err != nil {
		return Point{}, err
	}
	v, err := ints(f, 3)
	if err != nil {
		return Point{}, err
	}
	return Point{Count: v[2], P50us: float64(v[0]) / 1e3, P99us: float64(v[1]) / 1e3}, nil
}

// stream sends warm-up messages, then count messages as fast as the link
// takes them, and returns the seconds until every receiver reported, the
// messages the slowest receiver got, and the sending process's CPU time.
func (r *runner) stream(l link, kids []*child, size, count int) (secs float64, got int, cpu time.Duration, err error) {
	for _, k := range kids {
		if err := k.tell("tp %d %d %d", size, count, tpWarm); err != nil {
			return 0, 0, 0, err
		}
	}
	for _, k := range kids {
		if _, err := k.expect("ready", 30*time.Second); err != nil {
			return 0, 0, 0, err
		}
	}
	l.begin(time.Now().Add(pointTimeout))
	for i := 0; i < tpWarm; i++ {
		if err := l.send(size, warmBit|uint64(i)); err != nil {
			return 0, 0, 0, fmt.Errorf("send warm-up %d: %w", i, err)
		}
	}
	for _, k := range kids {
		if _, err := k.expect("warm", pointTimeout); err != nil {
			return 0, 0, 0, err
		}
	}
	cpu0 := cpuTime()
	t0 := time.Now()
	for i := 0; i < count; i++ {
		if err := l.send(size, uint64(i)); err != nil {
			return 0, 0, 0, fmt.Errorf("send %d: %w", i, err)
		}
	}
	got = count
	for _, k := range kids {
		f, err := k.expect("got", pointTimeout)
		if err != nil {
			return 0, 0, 0, err
		}
		v, err := ints(f, 2)
		if err != nil {
			return 0, 0, 0, err
		}
		got = min(got, v[0])
	}
	return time.Since(t0).Seconds(), got, cpuTime() - cpu0, nil
}

// errLost: a transport that should deliver everything did not.
var errLost = errors.New("messages lost")

func (r *runner) throughputPoint(l link, kids []*child, size int) (Point, error) {
	count := tpCount(size, r.opt.Quick)
	secs, got, _, err := r.stream(l, kids, size, count)
	if err != nil {
		return Point{}, err
	}
	rate := float64(got) / secs
	return Point{Count: count, MsgsPerSec: rate, MBPerSec: rate * float64(size) / 1e6,
		ReceivedPct: 100 * float64(got) / float64(count)}, nil
}

func (r *runner) fanOutPoint(l link, kids []*child, size int) (Point, error) {
	count := fanOutCount(r.opt.Quick)
	secs, got, cpu, err := r.stream(l, kids, size, count)
	if err != nil {
		return Point{}, err
	}
	if got != count {
		return Point{}, fmt.Errorf("%w: a receiver got %d of %d", errLost, got, count)
	}
	rate := float64(count) / secs
	return Point{Count: count, MsgsPerSec: rate, MBPerSec: rate * float64(size) / 1e6, ReceivedPct: 100,
		CPUNsPerMsg: float64(cpu.Nanoseconds()) / float64(count)}, nil
}

// ints parses the first n fields as integers.
func ints(f []string, n int) ([]int, error) {
	if len(f) < n {
		return nil, fmt.Errorf("%w: answer %q too short", errChild, strings.Join(f, " "))
	}
	v := make([]int, n)
	for i := range v {
		x, err := strconv.Atoi(f[i])
		if err != nil {
			return nil, fmt.Errorf("%w: answer %q: %w", errChild, strings.Join(f, " "), err)
		}
		v[i] = x
	}
	return v, nil
}

// cpuTime is the CPU time (user + system) of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// SizeName formats a message size: 64B, 4KiB, 16MiB.
func SizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}
