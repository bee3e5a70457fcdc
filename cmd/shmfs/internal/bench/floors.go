package bench

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/shmfs/shmfs/core/event"
	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
)

// The floors of the machine, measured in the same run:
//   - a futex wake-up between two processes (core/event Set/Wait there and
//     back, halved): what any event-driven delivery costs, whatever the size;
//   - memmove of the message size: what one copy costs (a copying path makes
//     at least one, shmfs's copy mode two: into shared memory and out).

func futexCount(quick bool) int {
	if quick {
		return 5000
	}
	return 50000
}

// futex measures the one-way wake-up between this process and a child.
func (r *runner) futex() Futex {
	r.starting("floor futex")
	defer r.step()
	count := futexCount(r.opt.Quick)
	f, err := r.futexPingPong(count)
	if err != nil {
		r.rep.Failures = append(r.rep.Failures, "floor futex: "+err.Error())
		return Futex{Error: err.Error()}
	}
	return f
}

func (r *runner) futexPingPong(count int) (Futex, error) {
	pingName := shmname.Object(r.opt.Domain, proc.RandomID(), "ping")
	pongName := shmname.Object(r.opt.Domain, proc.RandomID(), "pong")
	ping, err := event.Create(pingName, event.Options{})
	if err != nil {
		return Futex{}, err
	}
	defer ping.Destroy()
	pong, err := event.Create(pongName, event.Options{})
	if err != nil {
		return Futex{}, err
	}
	defer pong.Destroy()
	warm := count / 10
	k, err := r.startChild("futex", nil, pingName, pongName, strconv.Itoa(warm+count))
	if err != nil {
		return Futex{}, err
	}
	defer k.stop()
	if _, err := k.expect("up", 30*time.Second); err != nil {
		return Futex{}, err
	}
	oneWay := make([]int64, 0, count)
	seq := pong.Seq()
	for i := 0; i < warm+count; i++ {
		t0 := time.Now()
		ping.Set()
		next, err := pong.Wait(seq, 10*time.Second)
		if err != nil {
			return Futex{}, fmt.Errorf("round trip %d: %w", i, err)
		}
		seq = next
		if i >= warm {
			oneWay = append(oneWay, int64(time.Since(t0))/2)
		}
	}
	if _, err := k.expect("done", 30*time.Second); err != nil {
		return Futex{}, err
	}
	p50, p99 := percentiles(oneWay)
	return Futex{Count: count, P50us: float64(p50) / 1e3, P99us: float64(p99) / 1e3}, nil
}

// childFutex: args ping pong count. Answers count pings, then says "done".
func childFutex(a []string, out io.Writer) error {
	if len(a) != 3 {
		return fmt.Errorf("futex receiver: want ping pong count, got %q", a)
	}
	count, err := strconv.Atoi(a[2])
	if err != nil {
		return fmt.Errorf("futex receiver: count %q: %w", a[2], err)
	}
	ping, err := event.Open(a[0], event.Options{})
	if err != nil {
		return err
	}
	defer ping.Close()
	pong, err := event.Open(a[1], event.Options{})
	if err != nil {
		return err
	}
	defer pong.Close()
	seq := ping.Seq() // before "up": the sender sets ping only after it
	fmt.Fprintln(out, "up")
	for i := 0; i < count; i++ {
		next, err := ping.Wait(seq, 10*time.Second)
		if err != nil {
			return fmt.Errorf("wait ping %d: %w", i, err)
		}
		seq = next
		pong.Set()
	}
	fmt.Fprintln(out, "done")
	return nil
}

type memmoveSeries struct{ latency, throughput Series }

// memmove measures one copy of each size between two buffers of this
// process: p50/p99 over samples, each the mean of a batch of copies long
// enough to time (the buffers stay hot in cache when they fit).
func (r *runner) memmove(sizes []int) memmoveSeries {
	lat := Series{ID: "memmove", Label: "memmove (one copy)", Group: "floor",
		Note: "copy() of the message size between two buffers of one process"}
	tp := lat
	tp.Lossless = true
	tp.Note = "one copy per message: the rate a single-copy path cannot beat"
	for _, size := range sizes {
		r.starting("floor memmove " + SizeName(size))
		src, dst := make([]byte, size), make([]byte, size)
		for i := range src {
			src[i] = byte(i)
		}
		count, _ := latCount(size, r.opt.Quick)
		batch := max(1, (256<<10)/size)
		samples := make([]int64, 0, count)
		for i := 0; i < count; i++ {
			t0 := time.Now()
			for j := 0; j < batch; j++ {
				copy(dst, src)
			}
			samples = append(samples, int64(time.Since(t0))/int64(batch))
		}
		p50, p99 := percentiles(samples)
		p := Point{Size: size, Count: count * batch, P50us: float64(p50) / 1e3, P99us: float64(p99) / 1e3}
		lat.Points = append(lat.Points, p)
		rate := 1e9 / float64(max(p50, 1))
		tp.Points = append(tp.Points, Point{Size: size, Count: count * batch, MsgsPerSec: rate,
			MBPerSec: rate * float64(size) / 1e6, ReceivedPct: 100})
		r.step()
	}
	return memmoveSeries{lat, tp}
}
