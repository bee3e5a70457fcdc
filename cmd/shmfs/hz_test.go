package main

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var hzLine = regexp.MustCompile(`^average rate: ([0-9.]+) Hz  min: (\S+)  max: (\S+)  std dev: (\S+)  window: (\d+)`)

// hz prints rate statistics of a running publisher and stops after --count.
func TestHz(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	startShmfs(t, e.vars(), "pub", "--rate", "50", "--repeat", "0", "ticks", "tick")
	for _, headerTime := range []bool{false, true} {
		args := []string{"hz", "--count", "20", "--timeout", "60s", "--interval", "200ms", "ticks"}
		if headerTime {
			args = append(args, "--header-time")
		}
		r := runShmfs(t, 90*time.Second, e.vars(), "", args...)
		if r.code != 0 {
			t.Fatalf("hz: exit %d: %s", r.code, r.stderr)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		last := lines[len(lines)-1]
		m := hzLine.FindStringSubmatch(last)
		if m == nil {
			t.Fatalf("hz --header-time=%v: last line %q is not statistics; output:\n%s", headerTime, last, r.stdout)
		}
		rate, _ := strconv.ParseFloat(m[1], 64)
		var ds [3]time.Duration
		for i := range ds {
			d, err := time.ParseDuration(m[2+i])
			if err != nil {
				t.Fatalf("%q: %v", last, err)
			}
			ds[i] = d
		}
		lo, hi, sd := ds[0], ds[1], ds[2]
		n, _ := strconv.Atoi(m[5])
		// 20 messages give at most 19 intervals; the mean interval lies
		// between the shortest and the longest (formatting rounds to 4
		// digits, hence the slack).
		if n < 1 || n > 19 || lo <= 0 || lo > hi || sd < 0 || sd > hi-lo+time.Microsecond ||
			rate < 0.999/hi.Seconds() || rate > 1.001/lo.Seconds() || math.IsInf(rate, 0) {
			t.Errorf("hz --header-time=%v: inconsistent statistics %q", headerTime, last)
		}
	}
}
