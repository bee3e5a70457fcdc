package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
)

// In-process tests of the pure pieces: statistics, parsing and formatting.

func TestIntervalStats(t *testing.T) {
	ms := time.Millisecond
	st, ok := intervalStats([]time.Duration{10 * ms, 20 * ms, 30 * ms, 40 * ms})
	if !ok {
		t.Fatal("no statistics")
	}
	// mean 25 ms, population variance ((15²+5²+5²+15²)/4) ms² = 125 ms².
	if st.N != 4 || st.Mean != 25*ms || st.Min != 10*ms || st.Max != 40*ms || math.Abs(st.Rate-40) > 1e-9 {
		t.Errorf("stats = %+v", st)
	}
	if want := time.Duration(math.Sqrt(125) * float64(ms)); absDur(st.StdDev-want) > time.Microsecond {
		t.Errorf("std dev %v, want %v", st.StdDev, want)
	}
	if _, ok := intervalStats(nil); ok {
		t.Error("statistics of no intervals")
	}
	st, _ = intervalStats([]time.Duration{0, 0})
	if !math.IsInf(st.Rate, 1) {
		t.Errorf("rate of zero intervals = %v, want +Inf", st.Rate)
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func TestIntervalWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	w := newIntervalWindow(3)
	if _, ok := w.stats(); ok {
		t.Fatal("statistics before any arrival")
	}
	w.add(at(0), false)
	if _, ok := w.stats(); ok {
		t.Fatal("statistics after one arrival")
	}
	// intervals 10, 20, 30, then 40 pushes out 10.
	for _, ms := range []int{10, 30, 60, 100} {
		w.add(at(ms), false)
	}
	st, _ := w.stats()
	if st.N != 3 || st.Min != 20*time.Millisecond || st.Max != 40*time.Millisecond {
		t.Errorf("window of 3 = %+v, want intervals 20, 30, 40 ms", st)
	}
	// A gap (missed messages) and a clock going back record nothing.
	w.add(at(500), true)
	w.add(at(400), false)
	if st2, _ := w.stats(); st2 != st {
		t.Errorf("gap or backwards clock changed the window: %+v", st2)
	}
	w.add(at(401), false) // counts from 400
	if st2, _ := w.stats(); st2.Min != time.Millisecond {
		t.Errorf("after resuming: %+v, want a 1 ms interval", st2)
	}
}

func TestCounterRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var r counterRate
	if _, ok := r.rate(0); ok {
		t.Fatal("rate without samples")
	}
	r.add(t0, 100)
	r.add(t0, 999) // not newer: ignored
	if _, ok := r.rate(0); ok {
		t.Fatal("rate from one sample")
	}
	r.add(t0.Add(time.Second), 150)
	r.add(t0.Add(2*time.Second), 300)
	if v, ok := r.rate(time.Second); !ok || v != 100 {
		t.Errorf("rate = %v, %v; want 100 msg/s over 2 s", v, ok)
	}
	if _, ok := r.rate(3 * time.Second); ok {
		t.Error("rate over a span shorter than asked")
	}
	r.add(t0.Add(3*time.Second), 5) // restarted publisher
	r.add(t0.Add(4*time.Second), 25)
	if v, ok := r.rate(0); !ok || v != 20 {
		t.Errorf("after restart rate = %v, %v; want 20", v, ok)
	}
}

func TestFormatHz(t *testing.T) {
	st := rateStats{N: 50, Rate: 50.0123, Min: 19800 * time.Microsecond, Max: 20300 * time.Microsecond, StdDev: 120 * time.Microsecond}
	want := "average rate: 50.012 Hz  min: 19.8ms  max: 20.3ms  std dev: 120µs  window: 50"
	if got := formatHz(st, 0); got != want {
		t.Errorf("formatHz = %q, want %q", got, want)
	}
	if got := formatHz(st, 3); got != want+"  missed: 3" {
		t.Errorf("formatHz with drops = %q", got)
	}
}

func TestWriteMessage(t *testing.T) {
	m := core.Message{Header: core.Header{Publisher: 0xab, ID: -2, Clock: 9, Time: time.Unix(1, 5).UTC(), Size: 3, Hash: 0x10},
		Data: []byte{'a', 0xff, '\n'}}
	var b bytes.Buffer
	for _, f := range []string{formatText, formatHex, formatJSON} {
		if err := writeMessage(&b, f, "t", m); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.SplitN(b.String(), "\n", 4)
	if lines[0] != "a\xff" || lines[1] != "" || lines[2] != "61ff0a" {
		t.Errorf("text and hex output %q", b.String())
	}
	var j messageJSON
	if err := json.Unmarshal([]byte(lines[3]), &j); err != nil {
		t.Fatal(err)
	}
	if j.Publisher != "00000000000000ab" || j.Hash != "0000000000000010" || j.ID != -2 || j.Clock != 9 ||
		j.Data != nil || j.DataBase64 == nil || *j.DataBase64 != "Yf8K" || !j.Time.Equal(m.Time) {
		t.Errorf("json = %+v", j)
	}
}

func TestDropReporter(t *testing.T) {
	var b bytes.Buffer
	d := dropReporter{w: &b, every: time.Second}
	t0 := time.Unix(1000, 0)
	d.add(2, t0)                           // reported at once
	d.add(3, t0.Add(100*time.Millisecond)) // held back
	d.add(0, t0.Add(200*time.Millisecond))
	if got := strings.Count(b.String(), "\n"); got != 1 {
		t.Fatalf("%d reports within a second: %q", got, b.String())
	}
	d.flush()
	want := "shmfs: sub: missed 2 messages (2 in total)\nshmfs: sub: missed 3 messages (5 in total)\n"
	if b.String() != want {
		t.Errorf("reports %q, want %q", b.String(), want)
	}
}

func TestSources(t *testing.T) {
	l := &listSource{msgs: [][]byte{[]byte("a"), []byte("b")}, repeat: 2}
	var got []string
	for {
		m, err := l.next()
		if err == io.EOF {
			break
		}
		got = append(got, string(m))
	}
	if strings.Join(got, ",") != "a,b,a,b" {
		t.Errorf("listSource yields %q", got)
	}
	forever := &listSource{msgs: [][]byte{[]byte("x")}}
	for range 5 {
		if m, err := forever.next(); err != nil || string(m) != "x" {
			t.Fatalf("repeat 0: %q, %v", m, err)
		}
	}

	ls := newLineSource(strings.NewReader("one\r\n\nthree"), 10)
	got = nil
	for {
		m, err := ls.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(m))
	}
	if strings.Join(got, "|") != "one||three" {
		t.Errorf("lineSource yields %q", got)
	}
	if _, err := newLineSource(strings.NewReader(strings.Repeat("x", 20)+"\n"), 10).next(); err == nil || !strings.Contains(err.Error(), "longer than the maximum") {
		t.Errorf("overlong line: %v", err)
	}
	if _, err := readMessageFile("-", strings.NewReader("12345"), 4); err == nil {
		t.Error("readMessageFile accepted a message over the maximum")
	}
	if b, err := readMessageFile("-", strings.NewReader("1234"), 4); err != nil || string(b) != "1234" {
		t.Errorf("readMessageFile = %q, %v", b, err)
	}
}

func TestErrorLineAndExitCode(t *testing.T) {
	cases := []struct {
		err  error
		code int
		line string
	}{
		{nil, 0, ""},
		{errHelp, 0, ""},
		{usageErrorf("missing TOPIC"), 2, "shmfs: sub: missing TOPIC (see 'shmfs sub --help')"},
		{fmt.Errorf("subscribe: %w", core.ErrInvalidTopic), 2, "shmfs: sub: subscribe: invalid topic name (see 'shmfs sub --help')"},
		{fmt.Errorf("join: %w", errors.New("boom\nmore")), 1, "shmfs: sub: join: boom; more"},
	}
	for _, c := range cases {
		if got := exitCode(c.err); got != c.code {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.code)
		}
		if c.line != "" {
			if got := errorLine("sub", c.err); got != c.line {
				t.Errorf("errorLine(%v) = %q, want %q", c.err, got, c.line)
			}
		}
	}
}

func TestResolveDomainPort(t *testing.T) {
	t.Setenv("SHMFS_DOMAIN", "envdom")
	t.Setenv("SHMFS_PORT", "15000")
	if d, p, err := resolveDomainPort("", 0); err != nil || d != "envdom" || p != 15000 {
		t.Errorf("from env: %q %d %v", d, p, err)
	}
	if d, p, err := resolveDomainPort("flagdom", 16000); err != nil || d != "flagdom" || p != 16000 {
		t.Errorf("flags win: %q %d %v", d, p, err)
	}
	t.Setenv("SHMFS_DOMAIN", "")
	t.Setenv("SHMFS_PORT", "")
	if d, p, err := resolveDomainPort("", 0); err != nil || d != "default" || p != 0 {
		t.Errorf("defaults: %q %d %v", d, p, err)
	}
	if _, _, err := resolveDomainPort("a/b", 0); exitCode(err) != exitUsage {
		t.Errorf("bad domain: %v", err)
	}
}

func TestShmfsMounts(t *testing.T) {
	table := `proc /proc proc rw 0 0
shmfs:robot /mnt/a\040b fuse.shmfs rw,nosuid 0 0
shmfs /mnt/old fuse rw 0 0
other /mnt/c fuse.sshfs rw 0 0
short line
`
	ms, err := shmfsMounts(strings.NewReader(table))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].point != "/mnt/a b" || ms[1].point != "/mnt/old" {
		t.Errorf("mounts = %+v", ms)
	}
}

func TestCheckStaleMounts(t *testing.T) {
	p := t.TempDir() + "/mounts"
	table := "shmfs:d /ok fuse.shmfs rw 0 0\nshmfs:d /stale fuse.shmfs rw 0 0\nshmfs:d /gone fuse.shmfs rw 0 0\n"
	if err := os.WriteFile(p, []byte(table), 0o600); err != nil {
		t.Fatal(err)
	}
	stat := func(errs map[string]error) func(string) error {
		return func(path string) error {
			return errs[path]
		}
	}
	f := checkStaleMounts(p, stat(map[string]error{"/stale": &os.PathError{Op: "stat", Path: "/stale", Err: syscall.ENOTCONN}}))
	if f.status != statusFail || !strings.Contains(f.detail, "1 stale") || !strings.Contains(f.detail, "/stale") || !strings.Contains(f.fix, "/stale") {
		t.Errorf("stale: %+v", f)
	}
	f = checkStaleMounts(p, stat(map[string]error{"/gone": syscall.EACCES}))
	if f.status != statusWarn {
		t.Errorf("unreadable mount: %+v", f)
	}
	f = checkStaleMounts(p, stat(nil))
	if f.status != statusOK || f.detail != "3 mounted, none stale" {
		t.Errorf("healthy: %+v", f)
	}
	// A daemon that never answers (stopped): doctor reports it instead of
	// waiting with it.
	never := make(chan struct{})
	defer close(never)
	f = checkStaleMounts(p, func(path string) error {
		if path == "/ok" {
			<-never
		}
		return nil
	})
	if f.status != statusFail || !strings.Contains(f.detail, "1 not answering") || !strings.Contains(f.detail, "/ok") || !strings.Contains(f.fix, "/ok") {
		t.Errorf("not answering: %+v", f)
	}
	if f := checkStaleMounts(p+".missing", stat(nil)); f.status != statusWarn {
		t.Errorf("missing mount table: %+v", f)
	}
}

func TestQuotePath(t *testing.T) {
	for in, want := range map[string]string{"/mnt/x": "/mnt/x", "/mnt/a b": "'/mnt/a b'", "/it's": `'/it'\''s'`} {
		if got := quotePath(in); got != want {
			t.Errorf("quotePath(%q) = %q, want %q", in, got, want)
		}
	}
}
