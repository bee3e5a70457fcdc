package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A report with a failed point, a series without points and a missing
// floor renders everywhere: the failure is shown, not hidden or crashed on.
func TestRenderPartialReport(t *testing.T) {
	r := &Report{Version: ReportVersion, Started: time.Now(), Sizes: []int{64, 4096}, FanOut: 1024,
		Futex: Futex{Error: "no child"},
		Latency: []Series{
			{ID: "shmfs-ack1-copy", Label: "shmfs", Group: "shmfs", Points: []Point{
				{Size: 64, Count: 10, P50us: 3, P99us: 9}, {Size: 4096, Error: "receiver died"}}},
			{ID: "unix", Label: "unix", Group: "alternative"},
		},
		Through: []Series{{ID: "shmfs-ff-copy", Label: "ff", Group: "shmfs", Points: []Point{
			{Size: 64, Count: 10, MsgsPerSec: 1e6, MBPerSec: 64, ReceivedPct: 50}}}},
		FanOuts:  []Series{{ID: "nats", Label: "nats", Group: "alternative", Points: []Point{{Size: 1024, Subscribers: 4, Error: "lost"}}}},
		Failures: []string{"latency shmfs-ack1-copy 4KiB: receiver died"},
	}
	var b bytes.Buffer
	if err := WriteText(&b, r); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, want := range []string{"failed", "3.00 / 9.00", "(50.0 %)", "not measured (no child)", "receiver died"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	dir := t.TempDir()
	if err := Plot(r, dir); err != nil {
		t.Fatal(err)
	}
	for _, c := range Charts {
		for _, ext := range []string{".svg", ".png"} {
			if st, err := os.Stat(filepath.Join(dir, c+ext)); err != nil || st.Size() == 0 {
				t.Errorf("%s%s: %v", c, ext, err)
			}
		}
	}
	md := Markdown(r, "img")
	if !strings.Contains(md, "### Failed points (1)") || !strings.Contains(md, "| 4KiB | failed |") {
		t.Errorf("markdown hides the failure:\n%s", md)
	}
}

// The markers must be there, once each, in order; the rest of the file is kept.
func TestUpdateMarkdownMarkers(t *testing.T) {
	dir := t.TempDir()
	r := &Report{Version: ReportVersion, Sizes: []int{64}}
	for name, body := range map[string]string{
		"none":     "# doc\n",
		"reversed": MarkEnd + "\n" + MarkBegin + "\n",
		"twice":    MarkBegin + MarkEnd + MarkBegin + MarkEnd,
	} {
		p := filepath.Join(dir, name+".md")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := UpdateMarkdown(r, p, ""); err == nil {
			t.Errorf("%s: no error", name)
		}
		if b, _ := os.ReadFile(p); string(b) != body {
			t.Errorf("%s: file changed to %q", name, b)
		}
	}
	p := filepath.Join(dir, "ok.md")
	if err := os.WriteFile(p, []byte("A\n"+MarkBegin+"\nold\n"+MarkEnd+"\nB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UpdateMarkdown(r, p, filepath.Join(dir, "img")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	s := string(b)
	if !strings.HasPrefix(s, "A\n"+MarkBegin+"\n") || !strings.HasSuffix(s, MarkEnd+"\nB\n") || strings.Contains(s, "old") ||
		!strings.Contains(s, "](img/latency.svg)") {
		t.Errorf("updated file:\n%s", s)
	}
}

// fakeRx hands out prepared messages.
type fakeRx struct{ msgs [][]byte }

func (f *fakeRx) begin(time.Time) {}
func (f *fakeRx) recv(size int, fn func([]byte)) error {
	m := f.msgs[0]
	f.msgs = f.msgs[1:]
	fn(m)
	return nil
}
func (f *fakeRx) answer() error   { return nil }
func (f *fakeRx) dropped() uint64 { return 0 }
func (f *fakeRx) close()          {}

// The receiver's protocol: bad commands and messages of the wrong size are
// errors that name the cause; a good exchange answers as documented.
func TestChildProtocol(t *testing.T) {
	msg := func(size int, seq uint64) []byte {
		b := make([]byte, size)
		stamp(b, seq)
		return b
	}
	for _, tc := range []struct {
		cmd  string
		msgs [][]byte
		want string
		bad  string
	}{
		{cmd: "lat 64 2 1", msgs: [][]byte{msg(64, warmBit), msg(64, 0), msg(64, 1)}, want: "up\nready\nlat "},
		{cmd: "tp 64 2 1", msgs: [][]byte{msg(64, warmBit), msg(64, 0), msg(64, 1)}, want: "up\nready\nwarm\ngot 2 0\n"},
		{cmd: "tp 64 3 0", msgs: [][]byte{msg(64, 0), msg(64, 2)}, want: "up\nready\nwarm\ngot 2 0\n"},
		{cmd: "lat 64 1 0", msgs: [][]byte{msg(32, 0)}, bad: "wrong size"},
		{cmd: "lat 8 1 0", bad: "bad command"},
		{cmd: "ping", bad: "bad command"},
		{cmd: "tp 64 x 1", bad: "bad command"},
	} {
		var out bytes.Buffer
		err := serve(&fakeRx{msgs: tc.msgs}, strings.NewReader(tc.cmd+"\n"), &out)
		switch {
		case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
			t.Errorf("%q: error %v, want %q", tc.cmd, err, tc.bad)
		case tc.bad == "" && (err != nil || !strings.HasPrefix(out.String(), tc.want)):
			t.Errorf("%q: %v, said %q, want %q", tc.cmd, err, out.String(), tc.want)
		}
	}
}

// The ratio grids divide the right numbers: p50 by p50 (the futex floor
// from its own field), msg/s by msg/s; a missing side shows "—".
func TestRatioGrids(t *testing.T) {
	r := &Report{Sizes: []int{64, 1024}, Futex: Futex{Count: 5, P50us: 2},
		Latency: []Series{
			{ID: "shmfs-ack1-copy", Points: []Point{{Size: 64, Count: 1, P50us: 3}, {Size: 1024, Count: 1, P50us: 5}}},
			{ID: "unix", Points: []Point{{Size: 64, Count: 1, P50us: 6}}},
		},
		Through: []Series{
			{ID: "shmfs-window-copy", Points: []Point{{Size: 64, Count: 1, MsgsPerSec: 2e6}}},
			{ID: "unix", Points: []Point{{Size: 64, Count: 1, MsgsPerSec: 4e5}}},
		},
	}
	cell := func(g grid, row int, head string) string {
		for i, h := range g.head {
			if h == head {
				return g.rows[row][i]
			}
		}
		t.Fatalf("%s: no column %q in %q", g.title, head, g.head)
		return ""
	}
	lat, thr := r.latencyRatios(), r.throughputRatios()
	for _, c := range []struct {
		g          grid
		row        int
		head, want string
	}{
		{lat, 0, "shmfs-ack1-copy ÷ unix", "0.500×"},
		{lat, 0, "shmfs-ack1-copy ÷ futex", "1.50×"},
		{lat, 1, "shmfs-ack1-copy ÷ futex", "2.50×"},
		{lat, 1, "shmfs-ack1-copy ÷ unix", "—"},
		{thr, 0, "shmfs-window-copy ÷ unix", "5.00×"},
		{thr, 0, "shmfs-window-zc ÷ unix", "—"},
	} {
		if got := cell(c.g, c.row, c.head); got != c.want {
			t.Errorf("%s, row %d, %s: %q, want %q", c.g.title, c.row, c.head, got, c.want)
		}
	}
}
