package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/shmfs/shmfs/core"
)

var hzCommand = &command{
	name:  "hz",
	args:  "TOPIC",
	short: "show the message rate of a topic",
	long: `Subscribes to TOPIC and prints, once per --interval, rate statistics over the
last --window intervals between messages: the average rate (1 / mean
interval), the shortest and longest interval and their standard deviation,
like 'ros2 topic hz'. Runs until interrupted, --count messages arrived, or
--timeout passed; then prints the statistics once more.

Intervals are measured between arrivals at this subscriber (the copy out of
shared memory), or, with --header-time, between the publishers' send
timestamps, which leaves out this process's scheduling delays. Messages of
all publishers of the topic count together; messages published before hz
subscribed (such as the last one, which a new subscriber finds in shared
memory) do not count. Messages this subscriber missed are counted and shown
("missed"); an interval spanning missed messages is left out, so the rate is
the publishers' rate even when this subscriber cannot keep up.`,
	examples: `  shmfs hz camera
  shmfs hz --window 100 --count 500 camera
  shmfs hz --timeout 10s --header-time telemetry`,
	run: runHz,
}

func runHz(c *cli, args []string) error {
	fs := c.flags()
	window := fs.IntP("window", "w", 10000, "number of intervals the statistics cover")
	count := fs.IntP("count", "n", 0, "exit after this many messages (0: no limit)")
	timeout := fs.Duration("timeout", 0, "exit after this long (0: no limit)")
	interval := fs.Duration("interval", time.Second, "print the statistics this often")
	headerTime := fs.Bool("header-time", false, "use the publishers' send timestamps instead of arrival times")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	topic, err := oneTopic(fs.Args())
	if err != nil {
		return err
	}
	switch {
	case *window < 1:
		return usageErrorf("--window %d must be at least 1", *window)
	case *count < 0:
		return usageErrorf("--count %d is negative", *count)
	case *timeout < 0:
		return usageErrorf("--timeout %v is negative", *timeout)
	case *interval <= 0:
		return usageErrorf("--interval %v must be positive", *interval)
	}
	ctx, stop := signalContext()
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	node, err := c.openNode()
	if err != nil {
		return err
	}
	defer node.Close()
	subscribed := time.Now()
	s, err := node.NewSubscriber(topic, nil)
	if err != nil {
		return fmt.Errorf("subscribe to %q: %w", topic, err)
	}
	defer s.Close()

	hz := hzState{w: newIntervalWindow(*window)}
	msgs := s.Messages(ctx)
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	// stopped ends the run at an interrupt or --timeout: the final
	// statistics, and a failure if --count was not reached in time.
	stopped := func() error {
		if err := hz.print(c.stdout, true); err != nil {
			return outputErr(err)
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && *count > 0 {
			return fmt.Errorf("timed out after %v: received %d of %d messages", *timeout, hz.received, *count)
		}
		return nil
	}
	for *count == 0 || hz.received < *count {
		select {
		case m, ok := <-msgs:
			if !ok {
				if ctx.Err() == nil {
					return fmt.Errorf("subscriber closed: %w", core.ErrClosed)
				}
				return stopped()
			}
			if m.Time.Before(subscribed) {
				// Published before hz subscribed (the message a new
				// subscriber finds in the memory file): no arrival.
				continue
			}
			at := time.Now()
			if *headerTime {
				at = m.Time
			}
			hz.add(at, m.Dropped)
		case <-tick.C:
			if err := hz.print(c.stdout, false); err != nil {
				return outputErr(err)
			}
		case <-ctx.Done():
			return stopped()
		}
	}
	return outputErr(hz.print(c.stdout, true))
}

// outputErr turns a failed write of hz's output into the command's result:
// none when the reader went away ('shmfs hz t | head -3').
func outputErr(err error) error {
	if err == nil || isBrokenPipe(err) {
		return nil
	}
	return fmt.Errorf("write output: %w", err)
}

// hzState accumulates what hz reports.
type hzState struct {
	w        *intervalWindow
	received int
	dropped  uint64
	newSince bool // a message arrived since the last print
}

func (h *hzState) add(at time.Time, dropped uint64) {
	h.w.add(at, dropped > 0)
	h.received++
	h.dropped += dropped
	h.newSince = true
}

// print writes one line: the statistics, or why there are none. Periodic
// lines say "no new messages" when nothing arrived since the last line; the
// final line always has the statistics when there are any.
func (h *hzState) print(w io.Writer, final bool) error {
	line := ""
	st, ok := h.w.stats()
	switch {
	case !h.newSince && h.received > 0 && !final:
		line = "no new messages"
	case ok:
		line = formatHz(st, h.dropped)
	case h.received == 0:
		line = "no messages yet"
	default:
		line = "1 message, no rate yet"
	}
	h.newSince = false
	_, err := fmt.Fprintln(w, line)
	return err
}

// formatHz renders statistics as one line, e.g.
// "average rate: 50.012 Hz  min: 19.8ms  max: 20.3ms  std dev: 0.12ms  window: 50".
func formatHz(st rateStats, dropped uint64) string {
	s := fmt.Sprintf("average rate: %.3f Hz  min: %s  max: %s  std dev: %s  window: %d",
		st.Rate, fmtDur(st.Min), fmtDur(st.Max), fmtDur(st.StdDev), st.N)
	if dropped > 0 {
		s += fmt.Sprintf("  missed: %d", dropped)
	}
	return s
}

// fmtDur prints a duration with 4 significant digits in a fitting unit.
func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.3fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.4gms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.4gµs", float64(d)/float64(time.Microsecond))
	}
}
