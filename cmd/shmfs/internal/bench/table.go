package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// A grid is one table of a report, rendered as text (WriteText) or as
// Markdown (the docs), from the same cells.
type grid struct {
	title string
	note  string
	head  []string
	rows  [][]string
}

// Summary is the report's first line: machine, date, duration.
func (r *Report) Summary() string {
	m := r.Machine
	mode := "full run"
	if r.Quick {
		mode = "quick run"
	}
	return fmt.Sprintf("%s, %d cores, %.0f GiB, %s, %s, load %.2f at start; %s, %s, %.0f s",
		orUnknown(m.CPU), m.Cores, m.MemoryG, orUnknown(m.Kernel), m.Go, m.Load,
		r.Started.Format("2006-01-02 15:04 MST"), mode, r.Seconds)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// FutexLine describes the futex floor.
func (r *Report) FutexLine() string {
	if r.Futex.Error != "" || r.Futex.Count == 0 {
		return "futex wake-up between two processes: not measured (" + r.Futex.Error + ")"
	}
	return fmt.Sprintf("futex wake-up between two processes, one way (round trip / 2, %d round trips): p50 %s µs, p99 %s µs",
		r.Futex.Count, fmtUs(r.Futex.P50us), fmtUs(r.Futex.P99us))
}

func (r *Report) grids() []grid {
	var gs []grid
	lat := grid{title: "Latency, one way, p50 / p99 in µs (one message in flight)"}
	lat.head = append([]string{"size"}, seriesIDs(r.Latency)...)
	for _, size := range r.Sizes {
		row := []string{SizeName(size)}
		for i := range r.Latency {
			row = append(row, latCell(&r.Latency[i], size))
		}
		lat.rows = append(lat.rows, row)
	}
	gs = append(gs, lat)

	for _, unit := range []string{"msg/s", "MB/s"} {
		tp := grid{title: "Throughput, " + unit + " received (lossless unless marked: % received)"}
		tp.head = append([]string{"size"}, seriesIDs(r.Through)...)
		for _, size := range r.Sizes {
			row := []string{SizeName(size)}
			for i := range r.Through {
				row = append(row, tpCell(&r.Through[i], size, unit))
			}
			tp.rows = append(tp.rows, row)
		}
		gs = append(gs, tp)
	}

	subs := fanOutCounts(r.FanOuts)
	fan := grid{title: fmt.Sprintf("Fan-out: %s messages from one sender to N receiver processes; msg/s every receiver got, and the sender's CPU per message", SizeName(r.FanOut))}
	fan.head = []string{"transport"}
	for _, n := range subs {
		fan.head = append(fan.head, fmt.Sprintf("1→%d msg/s", n))
	}
	for _, n := range subs {
		fan.head = append(fan.head, fmt.Sprintf("1→%d CPU", n))
	}
	for i := range r.FanOuts {
		s := &r.FanOuts[i]
		row := []string{s.ID}
		for _, n := range subs {
			row = append(row, pointCell(s, r.FanOut, n, func(p Point) string { return fmtRate(p.MsgsPerSec) }))
		}
		for _, n := range subs {
			row = append(row, pointCell(s, r.FanOut, n, func(p Point) string { return fmtNs(p.CPUNsPerMsg) }))
		}
		fan.rows = append(fan.rows, row)
	}
	gs = append(gs, fan)
	gs = append(gs, r.latencyRatios(), r.throughputRatios())
	return gs
}

// ratio is one column of a ratio grid: a ÷ b of one metric.
type ratio struct{ a, b string }

func (r *Report) latencyRatios() grid {
	cols := []ratio{{"shmfs-ack1-copy", "unix"}, {"shmfs-ack1-zc", "unix"}, {"shmfs-ack1-zc", "tcp"},
		{"shmfs-ack1-zc", "nats"}, {"shmfs-ack1-copy", "futex"}, {"shmfs-ack1-zc", "futex"}, {"shmfs-ack1-copy", "memmove"}}
	p50 := func(id string, size int) (float64, bool) {
		if id == "futex" {
			return r.Futex.P50us, r.Futex.Count > 0
		}
		p, ok := Find(r.Latency, id).At(size, 0)
		return p.P50us, ok
	}
	return r.ratioGrid("Latency ratios (p50 ÷ p50; below 1: shmfs is faster)",
		"futex: the one-way wake-up floor; memmove: one copy of the message", cols, p50)
}

func (r *Report) throughputRatios() grid {
	cols := []ratio{{"shmfs-window-copy", "unix"}, {"shmfs-window-zc", "unix"}, {"shmfs-window-copy", "tcp"},
		{"shmfs-window-copy", "nats"}, {"shmfs-window-copy", "memmove"}, {"shmfs-ack1-copy", "shmfs-window-copy"}}
	rate := func(id string, size int) (float64, bool) {
		p, ok := Find(r.Through, id).At(size, 0)
		return p.MsgsPerSec, ok
	}
	return r.ratioGrid("Throughput ratios (msg/s ÷ msg/s; above 1: the first is faster)",
		"memmove: one copy per message, the rate a copying path cannot beat", cols, rate)
}

// ratioGrid is a grid of a ÷ b per size and column, value giving each
// side's number.
func (r *Report) ratioGrid(title, note string, cols []ratio, value func(id string, size int) (float64, bool)) grid {
	g := grid{title: title, note: note, head: []string{"size"}}
	for _, c := range cols {
		g.head = append(g.head, c.a+" ÷ "+c.b)
	}
	for _, size := range r.Sizes {
		row := []string{SizeName(size)}
		for _, c := range cols {
			a, okA := value(c.a, size)
			b, okB := value(c.b, size)
			row = append(row, ratioCell(a, b, okA && okB))
		}
		g.rows = append(g.rows, row)
	}
	return g
}

func seriesIDs(ss []Series) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.ID
	}
	return out
}

// fanOutCounts lists the receiver counts measured, ascending.
func fanOutCounts(ss []Series) []int {
	seen := map[int]bool{}
	var out []int
	for _, s := range ss {
		for _, p := range s.Points {
			if !seen[p.Subscribers] {
				seen[p.Subscribers] = true
				out = append(out, p.Subscribers)
			}
		}
	}
	slices.Sort(out)
	return out
}

// pointCell renders the point of s at size/subscribers, "failed" or "—".
func pointCell(s *Series, size, subs int, f func(Point) string) string {
	for _, p := range s.Points {
		if p.Size == size && p.Subscribers == subs {
			if !p.OK() {
				return "failed"
			}
			return f(p)
		}
	}
	return "—"
}

func latCell(s *Series, size int) string {
	return pointCell(s, size, 0, func(p Point) string { return fmtUs(p.P50us) + " / " + fmtUs(p.P99us) })
}

func tpCell(s *Series, size int, unit string) string {
	return pointCell(s, size, 0, func(p Point) string {
		v := fmtRate(p.MsgsPerSec)
		if unit == "MB/s" {
			v = fmtMB(p.MBPerSec)
		}
		if p.ReceivedPct < 99.995 {
			v += fmt.Sprintf(" (%.1f %%)", p.ReceivedPct)
		}
		return v
	})
}

func ratioCell(a, b float64, ok bool) string {
	if !ok || b == 0 {
		return "—"
	}
	return sig3(a/b) + "×"
}

// sig3 formats v with about three significant digits.
func sig3(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a < 0.01:
		return strconv.FormatFloat(v, 'g', 2, 64)
	case a < 1:
		return strconv.FormatFloat(v, 'f', 3, 64)
	case a < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case a < 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func fmtUs(v float64) string { return sig3(v) }

func fmtNs(v float64) string {
	if v >= 1e3 {
		return sig3(v/1e3) + " µs"
	}
	return sig3(v) + " ns"
}

func fmtRate(v float64) string {
	switch {
	case v >= 1e6:
		return sig3(v/1e6) + " M"
	case v >= 1e3:
		return sig3(v/1e3) + " k"
	}
	return sig3(v)
}

func fmtMB(v float64) string { return sig3(v) }

// WriteText writes the report as plain-text tables.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "shmfs bench: %s\n%s\n", r.Summary(), r.FutexLine())
	for _, g := range r.grids() {
		fmt.Fprintf(&b, "\n%s\n", g.title)
		if g.note != "" {
			fmt.Fprintf(&b, "(%s)\n", g.note)
		}
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, strings.Join(g.head, "\t")+"\t")
		for _, row := range g.rows {
			fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
		}
		tw.Flush()
	}
	if len(r.Failures) > 0 {
		fmt.Fprintf(&b, "\nFailed (%d):\n", len(r.Failures))
		for _, f := range r.Failures {
			fmt.Fprintln(&b, "  "+f)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
