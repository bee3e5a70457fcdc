package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/shmname"
)

var subCommand = &command{
	name:  "sub",
	args:  "TOPIC",
	short: "print messages as they arrive",
	long: `Subscribes to TOPIC and prints every message on standard output, until
interrupted, --count messages arrived, or --timeout passed.

Formats:
  text  the payload followed by a newline (payloads are not escaped)
  hex   the payload in hexadecimal, one message per line
  json  one JSON object per line: topic, publisher (16 hex digits), id, clock,
        time (RFC 3339), size, hash (16 hex digits, "" if none), dropped,
        generation, zero_copy, ack_timeout_ms, and the payload as "data"
        (a string, when it is valid UTF-8) or else "data_base64"

Messages this subscriber missed (a slow reader) are reported on standard
error, at most once per second. With --timeout and --count, exit status 1
means fewer than --count messages arrived in time; with --timeout alone,
sub listens for that long and exits 0.`,
	examples: `  shmfs sub greetings
  shmfs sub --count 1 --timeout 5s camera --format json | jq .size
  shmfs sub --format hex telemetry`,
	run: runSub,
}

// Output formats of sub.
const (
	formatText = "text"
	formatHex  = "hex"
	formatJSON = "json"
)

func runSub(c *cli, args []string) error {
	fs := c.flags()
	count := fs.IntP("count", "n", 0, "exit after this many messages (0: no limit)")
	timeout := fs.Duration("timeout", 0, "exit after this long (0: no limit)")
	format := fs.String("format", formatText, "output format: text, hex or json")
	typ := fs.String("type", "", "require this topic type (default: accept any)")
	latest := fs.Bool("latest", false, "first print each publisher's newest message already in shared memory (default: only messages published after sub started)")
	verbose := fs.BoolP("verbose", "v", false, "report on standard error when subscribed")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	topic, err := oneTopic(fs.Args())
	if err != nil {
		return err
	}
	switch {
	case *count < 0:
		return usageErrorf("--count %d is negative", *count)
	case *timeout < 0:
		return usageErrorf("--timeout %v is negative", *timeout)
	case *format != formatText && *format != formatHex && *format != formatJSON:
		return usageErrorf("--format %q: want text, hex or json", *format)
	}

	ctx, stop := signalContext()
	defer stop()
	timedOut := func() bool { return false }
	if *timeout > 0 {
		tctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		timedOut = func() bool { return errors.Is(tctx.Err(), context.DeadlineExceeded) }
		ctx = tctx
	}

	node, err := c.openNode()
	if err != nil {
		return err
	}
	defer node.Close()
	s, err := node.NewSubscriber(topic, &core.SubscriberOptions{Type: *typ, OnlyNew: !*latest})
	if err != nil {
		return fmt.Errorf("subscribe to %q: %w", topic, err)
	}
	defer s.Close()
	stderr := &lockedWriter{w: c.stderr}
	if *verbose {
		fmt.Fprintf(stderr, "shmfs: sub: subscribed to %q in domain %q (port %d)\n", topic, c.domain, node.Config().Port)
	}
	stopHint := noPublisherHint(stderr, node, topic, c.domain)
	defer stopHint()

	drops := dropReporter{w: stderr, every: time.Second}
	n := 0
	for *count == 0 || n < *count {
		m, err := s.Receive(ctx)
		if err != nil {
			if errors.Is(err, core.ErrPermission) {
				// Reported once per publisher: whose topic it is and its
				// mode. The other publishers' messages flow.
				fmt.Fprintf(stderr, "shmfs: sub: %s\n", errLine(err))
				continue
			}
			if ctx.Err() == nil && !errors.Is(err, core.ErrClosed) && !errors.Is(err, core.ErrSystem) {
				// A problem with one publisher or message (another type, a
				// checksum, an announcement that does not match shared
				// memory, a corrupt file), reported once each; the rest
				// flows.
				fmt.Fprintf(stderr, "shmfs: sub: warning: %s\n", errLine(err))
				continue
			}
			if ctx.Err() == nil {
				return fmt.Errorf("receive: %w", err)
			}
			if timedOut() && *count > 0 {
				err := fmt.Errorf("timed out after %v: received %d of %d messages", *timeout, n, *count)
				if ti, ok := node.Topic(topic); ok && *typ != "" && ti.Type != "" && ti.Type != *typ {
					err = fmt.Errorf("%w (the topic's publishers send type %q, not --type %q)", err, ti.Type, *typ)
				}
				return err
			}
			break // interrupted, or --timeout without --count
		}
		drops.add(m.Dropped, time.Now())
		if err := writeMessage(c.stdout, *format, topic, m); err != nil {
			if isBrokenPipe(err) {
				return nil
			}
			return fmt.Errorf("write output: %w", err)
		}
		n++
	}
	drops.flush()
	return nil
}

// noPublisherHint says once, on w, when no publisher of topic is known a
// little more than a registration period after subscribing: a typo in the
// topic, --domain or --port otherwise looks like a quiet topic. It keeps
// waiting. The returned func stops it.
func noPublisherHint(w io.Writer, node *core.Node, topic, domain string) func() {
	after := node.Config().Refresh*5/4 + 250*time.Millisecond
	t := time.AfterFunc(after, func() {
		if ti, ok := node.Topic(topic); ok && len(ti.Publishers) > 0 {
			return
		}
		others := 0
		for _, ti := range node.Topics() {
			if ti.Name != topic {
				others++
			}
		}
		where := fmt.Sprintf("domain %q (port %d)", domain, node.Config().Port)
		if others == 0 {
			fmt.Fprintf(w, "shmfs: sub: no publisher of %q after %v, and nothing else runs in %s; still waiting (check --domain and --port)\n",
				topic, after.Round(10*time.Millisecond), where)
			return
		}
		fmt.Fprintf(w, "shmfs: sub: no publisher of %q in %s after %v; still waiting ('shmfs ls' lists its %d other topics)\n",
			topic, where, after.Round(10*time.Millisecond), others)
	})
	return func() { t.Stop() }
}

// lockedWriter serialises writes of several goroutines (one line each).
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// writeMessage prints one message in format with a single Write.
func writeMessage(w io.Writer, format, topic string, m core.Message) error {
	var b []byte
	switch format {
	case formatHex:
		b = make([]byte, hex.EncodedLen(len(m.Data))+1)
		hex.Encode(b, m.Data)
		b[len(b)-1] = '\n'
	case formatJSON:
		var err error
		if b, err = json.Marshal(jsonMessage(topic, m)); err != nil {
			return err
		}
		b = append(b, '\n')
	default:
		b = append(append(make([]byte, 0, len(m.Data)+1), m.Data...), '\n')
	}
	_, err := w.Write(b)
	return err
}

// messageJSON is the JSON form of one message (sub --format json).
type messageJSON struct {
	Topic        string    `json:"topic"`
	Publisher    string    `json:"publisher"`
	ID           int64     `json:"id"`
	Clock        uint64    `json:"clock"`
	Time         time.Time `json:"time"`
	Size         int       `json:"size"`
	Hash         string    `json:"hash"`
	Dropped      uint64    `json:"dropped"`
	Generation   uint64    `json:"generation"`
	ZeroCopy     bool      `json:"zero_copy"`
	AckTimeoutMS int64     `json:"ack_timeout_ms"`
	Data         *string   `json:"data,omitempty"`
	DataBase64   *string   `json:"data_base64,omitempty"`
}

func jsonMessage(topic string, m core.Message) messageJSON {
	j := messageJSON{
		Topic: topic, Publisher: shmname.Hex(m.Publisher), ID: m.ID, Clock: m.Clock,
		Time: m.Time.UTC(), Size: m.Size, Dropped: m.Dropped, Generation: m.Generation,
		ZeroCopy: m.ZeroCopy, AckTimeoutMS: m.AckTimeout.Milliseconds(),
	}
	if m.Hash != 0 {
		j.Hash = shmname.Hex(m.Hash)
	}
	if utf8.Valid(m.Data) {
		s := string(m.Data)
		j.Data = &s
	} else {
		s := base64.StdEncoding.EncodeToString(m.Data)
		j.DataBase64 = &s
	}
	return j
}

// dropReporter reports missed messages on w at most once per period, so a
// slow subscriber does not flood the terminal.
type dropReporter struct {
	w       io.Writer
	every   time.Duration
	pending uint64
	total   uint64
	last    time.Time
}

func (d *dropReporter) add(n uint64, now time.Time) {
	if n == 0 {
		return
	}
	d.pending += n
	d.total += n
	if now.Sub(d.last) >= d.every {
		d.flushAt(now)
	}
}

func (d *dropReporter) flush() { d.flushAt(time.Now()) }

func (d *dropReporter) flushAt(now time.Time) {
	if d.pending == 0 {
		return
	}
	fmt.Fprintf(d.w, "shmfs: sub: missed %d messages (%d in total)\n", d.pending, d.total)
	d.pending, d.last = 0, now
}
