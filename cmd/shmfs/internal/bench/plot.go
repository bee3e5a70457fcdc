package bench

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Charts are the files Plot writes, without extension; each is written as
// .svg and .png.
var Charts = []string{"latency", "throughput", "fanout"}

const (
	chartW  = 11 * vg.Inch
	chartH  = 5.5 * vg.Inch
	legendW = 3.6 * vg.Inch
)

// errPlot: a chart could not be drawn or written.
var errPlot = errors.New("bench: plot")

// Plot writes the charts of r into dir (created if missing): latency
// (p50 vs size, log-log), throughput (MB/s vs size, log-log) and fan-out
// (msg/s per receiver vs receivers), one line per transport, each as SVG
// and PNG.
func Plot(r *Report, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("%w: %w", errPlot, err)
	}
	sizeTicks := plot.ConstantTicks{}
	for _, s := range r.Sizes {
		sizeTicks = append(sizeTicks, plot.Tick{Value: float64(s), Label: SizeName(s)})
	}

	lat := newChart("One-way latency, p50 (one message in flight), "+r.shortMachine(), "message size", "µs (log)")
	lat.p.X.Scale, lat.p.X.Tick.Marker = plot.LogScale{}, sizeTicks
	for i := range r.Latency {
		s := &r.Latency[i]
		lat.line(s, func(p Point) (float64, float64) { return float64(p.Size), p.P50us })
	}
	if r.Futex.Count > 0 && len(r.Sizes) > 0 {
		f := Series{ID: "futex", Label: "futex wake-up, one way (floor)", Group: "floor"}
		for _, size := range []int{r.Sizes[0], r.Sizes[len(r.Sizes)-1]} {
			f.Points = append(f.Points, Point{Size: size, Count: r.Futex.Count, P50us: r.Futex.P50us})
		}
		lat.line(&f, func(p Point) (float64, float64) { return float64(p.Size), p.P50us })
	}

	tp := newChart("Throughput received (lossless unless marked), "+r.shortMachine(), "message size", "MB/s (log)")
	tp.p.X.Scale, tp.p.X.Tick.Marker = plot.LogScale{}, sizeTicks
	for i := range r.Through {
		s := &r.Through[i]
		tp.line(s, func(p Point) (float64, float64) { return float64(p.Size), p.MBPerSec })
	}

	fan := newChart(fmt.Sprintf("Fan-out of %s messages: msg/s every receiver got, %s", SizeName(r.FanOut), r.shortMachine()),
		"receiver processes", "msg/s per receiver (log)")
	nTicks := plot.ConstantTicks{}
	for _, n := range fanOutCounts(r.FanOuts) {
		nTicks = append(nTicks, plot.Tick{Value: float64(n), Label: strconv.Itoa(n)})
	}
	fan.p.X.Tick.Marker = nTicks
	for i := range r.FanOuts {
		s := &r.FanOuts[i]
		fan.line(s, func(p Point) (float64, float64) { return float64(p.Subscribers), p.MsgsPerSec })
	}

	for i, c := range []*chart{lat, tp, fan} {
		if err := c.save(filepath.Join(dir, Charts[i])); err != nil {
			return err
		}
	}
	return nil
}

func (r *Report) shortMachine() string {
	return fmt.Sprintf("%d cores, %s", r.Machine.Cores, r.Started.Format("2006-01-02"))
}

type chart struct {
	p      *plot.Plot
	legend plot.Legend
	n      int // lines added
	points int // points drawn
	err    error
}

func newChart(title, x, y string) *chart {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Add(plotter.NewGrid())
	l := plot.NewLegend()
	l.Top, l.Left = true, true
	return &chart{p: p, legend: l}
}

// line adds s as a line with its points marked: shmfs solid, alternatives
// dashed, floors dotted. Points that failed or are not positive (a log
// axis) are left out.
func (c *chart) line(s *Series, xy func(Point) (float64, float64)) {
	var pts plotter.XYs
	for _, p := range s.Points {
		if !p.OK() {
			continue
		}
		x, y := xy(p)
		if x > 0 && y > 0 && !math.IsInf(y, 0) && !math.IsNaN(y) {
			pts = append(pts, plotter.XY{X: x, Y: y})
		}
	}
	i := c.n
	c.n++
	if len(pts) == 0 {
		return
	}
	c.points += len(pts)
	l, sc, err := plotter.NewLinePoints(pts)
	if err != nil {
		c.err = err
		return
	}
	col := plotutil.Color(i)
	l.Color, sc.Color = col, col
	sc.Shape = plotutil.Shape(i)
	switch s.Group {
	case "shmfs":
		l.Width = vg.Points(2)
	case "floor":
		l.Color, sc.Color = color.Gray{Y: 0x60}, color.Gray{Y: 0x60}
		l.Dashes = []vg.Length{vg.Points(1), vg.Points(3)}
	default:
		l.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
	}
	c.p.Add(l, sc)
	label := s.Label
	if !s.Lossless && s.Group == "shmfs" && c.p.Y.Label.Text == "MB/s (log)" {
		label += " (delivered)"
	}
	c.legend.Add(label, l, sc)
}

// save writes the chart, plot on the left and legend on the right, as
// path.svg and path.png.
func (c *chart) save(path string) error {
	if c.err != nil {
		return fmt.Errorf("%w: %s: %w", errPlot, path, c.err)
	}
	// A log axis needs a positive range that is not a single value.
	for _, a := range []*plot.Axis{&c.p.X, &c.p.Y} {
		if _, log := a.Scale.(plot.LogScale); !log {
			continue
		}
		if c.points == 0 {
			a.Min, a.Max = 1, 10
		} else if a.Min == a.Max {
			a.Min, a.Max = a.Min/2, a.Max*2
		}
	}
	if c.points == 0 {
		c.p.Title.Text += " — no data"
	}
	for _, ext := range []string{"svg", "png"} {
		canvas, err := draw.NewFormattedCanvas(chartW, chartH, ext)
		if err != nil {
			return fmt.Errorf("%w: %w", errPlot, err)
		}
		dc := draw.New(canvas)
		c.p.Draw(draw.Crop(dc, 0, -legendW, 0, 0))
		c.legend.Draw(draw.Crop(dc, chartW-legendW+vg.Points(8), 0, 0, -vg.Points(24)))
		f, err := os.Create(path + "." + ext)
		if err != nil {
			return fmt.Errorf("%w: %w", errPlot, err)
		}
		_, werr := canvas.WriteTo(f)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("%w: %s.%s: %w", errPlot, path, ext, werr)
		}
	}
	return nil
}
