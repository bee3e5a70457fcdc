package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmfs/shmfs/core"
)

var pubCommand = &command{
	name:  "pub",
	args:  "TOPIC [MSG...]",
	short: "publish messages",
	long: `Publishes each MSG argument as one message. Without MSG arguments, publishes
one message per line of standard input (without the line ending), or, with
--file, the whole file as one message.

By default pub runs in ack mode (--ack-timeout 1s): a send waits while a
subscriber process is a whole window (1024 messages) behind, and pub waits at
exit until every subscriber took every message, so a 'shmfs sub' that is
already running receives every message, even when pub exits right after
sending. (The Go API's default is fire and forget: --ack-timeout 0.) A
subscriber that stays a window behind for longer than the timeout is set aside
and reported on standard error; the messages were still published.`,
	examples: `  shmfs pub greetings hello world          # two messages: "hello", "world"
  date | shmfs pub clock                    # one message per line
  shmfs pub --file frame.jpg --type image/jpeg camera
  shmfs pub --rate 10 --repeat 0 heartbeat ping   # 10 Hz until Ctrl-C`,
	run: runPub,
}

type pubOptions struct {
	typ        string
	ackTimeout time.Duration
	rate       float64
	id         int64
	file       string
	repeat     int
}

func runPub(c *cli, args []string) error {
	fs := c.flags()
	var o pubOptions
	fs.StringVar(&o.typ, "type", "", "topic type, e.g. text, image/jpeg, protobuf:pkg.Msg (default \"raw\")")
	fs.DurationVar(&o.ackTimeout, "ack-timeout", time.Second, "ack mode: wait up to this long for a subscriber a window behind, and at exit (0: fire and forget)")
	fs.Float64Var(&o.rate, "rate", 0, "messages per second (0: as fast as possible)")
	fs.Int64Var(&o.id, "id", 0, "message id sent with every message")
	fs.StringVarP(&o.file, "file", "f", "", "publish the contents of `FILE` as one message (- for standard input)")
	fs.IntVar(&o.repeat, "repeat", 1, "send the messages this many times (0: until interrupted)")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageErrorf("missing TOPIC")
	}
	topic, msgs := fs.Arg(0), fs.Args()[1:]
	if err := checkTopic(topic); err != nil {
		return err
	}
	switch {
	case o.ackTimeout < 0:
		return usageErrorf("--ack-timeout %v is negative", o.ackTimeout)
	case o.rate < 0 || o.rate != o.rate:
		return usageErrorf("--rate %v must be >= 0", o.rate)
	case o.repeat < 0:
		return usageErrorf("--repeat %d is negative", o.repeat)
	case o.file != "" && len(msgs) > 0:
		return usageErrorf("--file and MSG arguments exclude each other")
	case o.file == "" && len(msgs) == 0 && fs.Changed("repeat"):
		return usageErrorf("--repeat needs MSG arguments or --file (standard input is read once)")
	}

	var src messageSource
	switch {
	case o.file != "":
		b, err := readMessageFile(o.file, c.stdin, core.DefaultMaxMessageSize)
		if err != nil {
			return err
		}
		src = &listSource{msgs: [][]byte{b}, repeat: o.repeat}
	case len(msgs) > 0:
		l := &listSource{repeat: o.repeat}
		for _, m := range msgs {
			l.msgs = append(l.msgs, []byte(m))
		}
		src = l
	default:
		if isTerminal(c.stdin) {
			fmt.Fprintln(c.stderr, "shmfs: pub: reading messages from the terminal, one per line; Ctrl-D ends")
		}
		src = newLineSource(c.stdin, core.DefaultMaxMessageSize)
	}

	ctx, stop := signalContext()
	defer stop()
	node, err := c.openNode()
	if err != nil {
		return err
	}
	defer node.Close()
	p, err := node.NewPublisher(topic, &core.PublisherOptions{Type: o.typ, AckTimeout: o.ackTimeout})
	if err != nil {
		return fmt.Errorf("publish %q: %w", topic, err)
	}
	_, unacked, err := publish(ctx, p, src, o)
	// Subscribers that registration announced but that never attached are
	// named: they did not get what was published (another user's process
	// that may not read the topic, one that failed to open it).
	for _, u := range unattached(ctx, p) {
		if u.Err != nil {
			fmt.Fprintf(c.stderr, "shmfs: pub: warning: subscriber pid %d (uid %d) cannot read the topic: %v\n", u.PID, u.UID, u.Err)
		} else {
			fmt.Fprintf(c.stderr, "shmfs: pub: warning: subscriber pid %d (uid %d) of %q never attached to this publisher; it may have missed the messages\n", u.PID, u.UID, topic)
		}
	}
	// Close waits (at most the ack timeout) until every subscriber took
	// every message.
	switch cerr := p.Close(); {
	case errors.Is(cerr, core.ErrAckTimeout):
		unacked++
	case err == nil && cerr != nil && !errors.Is(cerr, core.ErrClosed):
		err = fmt.Errorf("close publisher: %w", cerr)
	}
	if unacked > 0 {
		fmt.Fprintf(c.stderr, "shmfs: pub: warning: %d times a subscriber process fell a whole window behind for longer than %v: it missed messages (they were still published)\n",
			unacked, o.ackTimeout)
	}
	if err != nil && ctx.Err() != nil {
		return nil // interrupted: a normal way to stop
	}
	return err
}

// unattached returns the subscriber processes that did not attach to p,
// giving those that may read the topic up to half a second to do so (one
// that started just now is not reported).
func unattached(ctx context.Context, p *core.Publisher) []core.UnattachedSubscriber {
	deadline := time.Now().Add(500 * time.Millisecond)
	for {
		us := p.Unattached()
		pending := false
		for _, u := range us {
			pending = pending || u.Err == nil
		}
		if !pending || time.Now().After(deadline) || sleepUntil(ctx, time.Now().Add(20*time.Millisecond)) != nil {
			return us
		}
	}
}

// publish sends every message of src, paced by o.rate. It returns the number
// sent and how many of those missed an acknowledgement.
func publish(ctx context.Context, p *core.Publisher, src messageSource, o pubOptions) (sent, unacked int, err error) {
	var period time.Duration
	if o.rate > 0 {
		period = time.Duration(float64(time.Second) / o.rate)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the reader goroutine
	msgs := make(chan []byte)
	errc := make(chan error, 1)
	// The source may block on standard input; reading in a goroutine lets
	// an interrupt stop pub at once (the process exits after cleanup).
	go func() {
		for {
			m, err := src.next()
			if err != nil {
				errc <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				errc <- ctx.Err()
				return
			}
		}
	}()
	var start time.Time // when the first message went out; pacing counts from it
	for {
		var m []byte
		select {
		case m = <-msgs:
		case err := <-errc:
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return sent, unacked, err
		case <-ctx.Done():
			return sent, unacked, ctx.Err()
		}
		if period > 0 && sent > 0 {
			if err := sleepUntil(ctx, start.Add(time.Duration(sent)*period)); err != nil {
				return sent, unacked, err
			}
		}
		err = p.SendWith(ctx, m, core.SendOptions{ID: o.id})
		switch {
		case err == nil:
		case errors.Is(err, core.ErrAckTimeout):
			unacked++
		default:
			return sent, unacked, fmt.Errorf("send message %d: %w", sent+1, err)
		}
		if sent == 0 {
			start = time.Now()
		}
		sent++
	}
}

// sleepUntil waits until t or until ctx is done.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// messageSource yields messages until io.EOF.
type messageSource interface {
	next() ([]byte, error)
}

// listSource yields a fixed list repeat times (0: forever).
type listSource struct {
	msgs   [][]byte
	repeat int
	i      int
}

func (l *listSource) next() ([]byte, error) {
	if len(l.msgs) == 0 || (l.repeat > 0 && l.i >= l.repeat*len(l.msgs)) {
		return nil, io.EOF
	}
	m := l.msgs[l.i%len(l.msgs)]
	l.i++
	if l.repeat == 0 {
		l.i %= len(l.msgs) // no overflow when repeating forever
	}
	return m, nil
}

// lineSource yields one message per line, without "\n" or "\r\n". A line
// longer than max is an error, so memory stays bounded.
type lineSource struct {
	sc *bufio.Scanner
}

func newLineSource(r io.Reader, max int) *lineSource {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, min(64<<10, max+2)), max+2) // room for the line ending
	return &lineSource{sc: sc}
}

func (l *lineSource) next() ([]byte, error) {
	if l.sc.Scan() {
		return append([]byte(nil), l.sc.Bytes()...), nil
	}
	if err := l.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("standard input: line longer than the maximum message size (%d bytes); use --file for large messages", core.DefaultMaxMessageSize)
		}
		return nil, fmt.Errorf("read standard input: %w", err)
	}
	return nil, io.EOF
}

// isTerminal reports whether stream (stdin, stdout or stderr) is a
// terminal: a user typing messages, a progress bar shown.
func isTerminal(stream any) bool {
	f, ok := stream.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// readMessageFile reads name ("-": stdin) as one message of at most max bytes.
func readMessageFile(name string, stdin io.Reader, max int) ([]byte, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("--file: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("--file %s: %w", name, err)
	}
	if len(b) > max {
		return nil, fmt.Errorf("--file %s: larger than the maximum message size (%d bytes)", name, max)
	}
	return b, nil
}
