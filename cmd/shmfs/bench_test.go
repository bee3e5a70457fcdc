package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shmfs/shmfs/cmd/shmfs/internal/bench"
)

// `shmfs bench --quick` as CI runs it: one run with --json, --plot and
// --markdown. The JSON parses and holds every transport of every suite,
// each measured at every size without a failure; the charts are valid SVG
// and PNG; the Markdown file got the tables between its markers and kept
// the rest. No timing is asserted: the numbers only have to exist.
func TestBenchQuick(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	doc := filepath.Join(dir, "doc.md")
	if err := os.WriteFile(doc, []byte("# Before\n\n"+bench.MarkBegin+"\nold\n"+bench.MarkEnd+"\n\nAfter.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "img")
	r := runShmfs(t, 3*time.Minute, nil, "", append(e.flags(), "bench", "--quick", "--json", "--plot", img, "--markdown", doc)...)
	if r.code != 0 {
		t.Fatalf("shmfs bench --quick: exit %d\nstderr:\n%s\nstdout:\n%s", r.code, r.stderr, r.stdout)
	}
	var rep bench.Report
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("stdout is not a report: %v\n%s", err, r.stdout)
	}
	if !rep.Quick || len(rep.Failures) != 0 || rep.Version != bench.ReportVersion {
		t.Errorf("quick %v, version %d, failures %q", rep.Quick, rep.Version, rep.Failures)
	}
	if rep.Futex.Count == 0 || rep.Futex.P50us <= 0 || rep.Futex.P99us < rep.Futex.P50us {
		t.Errorf("futex floor not measured: %+v", rep.Futex)
	}
	sizes := bench.Sizes(true)
	checkSuite(t, "latency", rep.Latency, bench.LatencyIDs(), sizes, []int{0}, func(p bench.Point) bool {
		return p.P50us > 0 && p.P99us >= p.P50us
	})
	checkSuite(t, "throughput", rep.Through, bench.ThroughputIDs(), sizes, []int{0}, func(p bench.Point) bool {
		return p.MsgsPerSec > 0 && p.MBPerSec > 0 && p.ReceivedPct > 0 && p.ReceivedPct <= 100
	})
	checkSuite(t, "fan-out", rep.FanOuts, bench.FanOutIDs(), []int{rep.FanOut}, bench.FanOutSubscribers(true), func(p bench.Point) bool {
		return p.MsgsPerSec > 0 && p.ReceivedPct == 100 && p.CPUNsPerMsg > 0
	})
	for _, s := range rep.Through {
		if s.Lossless {
			for _, p := range s.Points {
				if p.ReceivedPct != 100 {
					t.Errorf("throughput %s %d B: lossless transport received %v %%", s.ID, p.Size, p.ReceivedPct)
				}
			}
		}
	}

	for _, c := range bench.Charts {
		checkSVG(t, filepath.Join(img, c+".svg"))
		checkPNG(t, filepath.Join(img, c+".png"))
	}

	md, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	s := string(md)
	for _, want := range []string{"# Before\n\n" + bench.MarkBegin + "\n", bench.MarkEnd + "\n\nAfter.\n",
		"![latency](img/latency.svg)", "| size | memmove | shmfs-ack1-copy |", "### Highlights"} {
		if !strings.Contains(s, want) {
			t.Errorf("markdown lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "\nold\n") {
		t.Errorf("markdown kept the old generated part:\n%s", s)
	}
}

// checkSuite: every id present once, with a measured point per size and
// receiver count for which ok holds.
func checkSuite(t *testing.T, suite string, ss []bench.Series, ids []string, sizes, subs []int, ok func(bench.Point) bool) {
	t.Helper()
	if len(ss) != len(ids) {
		t.Errorf("%s: %d series, want %d (%v)", suite, len(ss), len(ids), ids)
	}
	for _, id := range ids {
		s := bench.Find(ss, id)
		if s == nil {
			t.Errorf("%s: no series %q", suite, id)
			continue
		}
		for _, n := range subs {
			for _, size := range sizes {
				p, found := s.At(size, n)
				if !found || !ok(p) {
					t.Errorf("%s %s size %d receivers %d: point %+v (found %v)", suite, id, size, n, p, found)
				}
			}
		}
	}
}

// checkSVG parses the file as XML with an <svg> root.
func checkSVG(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Error(err)
		return
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Errorf("%s: not XML: %v", path, err)
			return
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Errorf("%s: root element %q, want svg", path, root)
	}
	if !bytes.Contains(b, []byte("shmfs")) {
		t.Errorf("%s: no shmfs line in the legend", path)
	}
}

// checkPNG decodes the file as PNG.
func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 200 {
		t.Errorf("%s: %v is too small for a chart", path, b)
	}
}

// Bad input fails at once, naming the cause, before anything is measured.
func TestBenchUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	noMarks := filepath.Join(dir, "plain.md")
	if err := os.WriteFile(noMarks, []byte("# no markers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notJSON := filepath.Join(dir, "x.json")
	if err := os.WriteFile(notJSON, []byte("{\"version\": 99}"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bench", "extra"}, 2, "unexpected arguments"},
		{[]string{"bench", "--from", notJSON, "--quick"}, 2, "choose one"},
		{[]string{"bench", "--markdown", noMarks}, 1, "<!-- shmfs bench: begin -->"},
		{[]string{"bench", "--from", notJSON}, 1, "has version 99"},
		{[]string{"bench", "--from", filepath.Join(dir, "missing.json")}, 1, "no such file"},
	} {
		r := runShmfs(t, 30*time.Second, nil, "", tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("shmfs %q: exit %d, stderr %q; want exit %d naming %q in one line", tc.args, r.code, r.stderr, tc.code, tc.want)
		}
	}
}
