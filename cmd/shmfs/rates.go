package main

import (
	"math"
	"time"
)

// intervalWindow keeps the last size intervals between message arrivals,
// for rate statistics like 'ros2 topic hz'.
type intervalWindow struct {
	size int
	last time.Time
	have bool            // last is set
	ivs  []time.Duration // ring buffer of intervals
	next int             // where the next interval goes once ivs is full
}

func newIntervalWindow(size int) *intervalWindow {
	if size < 1 {
		size = 1
	}
	return &intervalWindow{size: size, ivs: make([]time.Duration, 0, min(size, 1024))}
}

// add records an arrival at t. gap says that messages were missed right
// before this one: the interval since the previous arrival spans them and is
// not recorded. Arrivals must come in time order; one that does not (a
// publisher clock going back) likewise records no (negative) interval.
func (w *intervalWindow) add(t time.Time, gap bool) {
	if w.have && !gap && !t.Before(w.last) {
		iv := t.Sub(w.last)
		if len(w.ivs) < w.size {
			w.ivs = append(w.ivs, iv)
		} else {
			w.ivs[w.next] = iv
			w.next = (w.next + 1) % w.size
		}
	}
	w.last, w.have = t, true
}

// rateStats summarise the intervals of a window.
type rateStats struct {
	N      int     // intervals in the window
	Rate   float64 // messages per second: 1 / mean interval
	Mean   time.Duration
	Min    time.Duration
	Max    time.Duration
	StdDev time.Duration // population standard deviation of the intervals
}

// stats returns the statistics of the window; ok is false with fewer than
// one interval (two arrivals).
func (w *intervalWindow) stats() (s rateStats, ok bool) {
	return intervalStats(w.ivs)
}

// intervalStats computes rate statistics of intervals.
func intervalStats(ivs []time.Duration) (s rateStats, ok bool) {
	if len(ivs) == 0 {
		return s, false
	}
	s.N = len(ivs)
	s.Min, s.Max = ivs[0], ivs[0]
	var sum float64
	for _, iv := range ivs {
		sum += iv.Seconds()
		s.Min, s.Max = min(s.Min, iv), max(s.Max, iv)
	}
	mean := sum / float64(len(ivs))
	var sq float64
	for _, iv := range ivs {
		d := iv.Seconds() - mean
		sq += d * d
	}
	s.Mean = secs(mean)
	s.StdDev = secs(math.Sqrt(sq / float64(len(ivs))))
	if mean > 0 {
		s.Rate = 1 / mean
	} else {
		s.Rate = math.Inf(1)
	}
	return s, true
}

func secs(f float64) time.Duration { return time.Duration(math.Round(f * float64(time.Second))) }

// counterRate estimates a publisher's message rate from its Sent counter
// as seen in successive registration announcements (ls, info): no
// subscription is needed, so looking never changes what is looked at.
type counterRate struct {
	first, last counterSample
	n           int // samples since the last reset
}

type counterSample struct {
	t    time.Time
	sent uint64
}

// add records the counter value sent seen at t. Samples not newer than the
// last are ignored; a counter that went back (a restarted publisher with
// the same id, or a corrupt announcement) restarts the estimate.
func (r *counterRate) add(t time.Time, sent uint64) {
	s := counterSample{t, sent}
	switch {
	case r.n == 0:
		r.first, r.last, r.n = s, s, 1
	case !t.After(r.last.t):
	case sent < r.last.sent:
		r.first, r.last, r.n = s, s, 1
	default:
		r.last = s
		r.n++
	}
}

// span is the time between the first and the last sample.
func (r *counterRate) span() time.Duration { return r.last.t.Sub(r.first.t) }

// rate returns messages per second over the samples, if they span at
// least minSpan.
func (r *counterRate) rate(minSpan time.Duration) (float64, bool) {
	sp := r.span()
	if r.n < 2 || sp <= 0 || sp < minSpan {
		return 0, false
	}
	return float64(r.last.sent-r.first.sent) / sp.Seconds(), true
}
