package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/shmfs/shmfs/core"
)

// shmfs delivery modes.
const (
	ack1   = "ack1"   // ack mode, window 1: eCAL's handshake, one message in flight
	window = "window" // ack mode, the default window (1024)
	ff     = "ff"     // fire and forget
)

const benchAckTimeout = 10 * time.Second

// shmfsTransport: the sender publishes through the core API, each receiver
// process subscribes. Copy: Send copies the payload in, the subscriber
// copies it out. Zero copy: SendFunc fills the message in place and the
// subscriber reads it in place (this benchmark writes and reads only the
// 16-byte stamp: a producer writes its data once wherever it goes).
func shmfsTransport(id, label, mode string, zc bool) transport {
	return transport{id: id, label: label, group: "shmfs", lossless: mode != ff,
		open: func(r *runner, n int, reply bool) (link, []*child, error) {
			return r.openShmfs(n, mode, zc, reply)
		}}
}

// errConnect: receivers did not connect in time.
var errConnect = errors.New("receivers did not connect")

func (r *runner) openShmfs(n int, mode string, zc, reply bool) (link, []*child, error) {
	r.topics++
	topic := "bench" + strconv.Itoa(r.topics)
	l := &shmfsLink{zc: zc, base: r.ctx, ctx: r.ctx, cancel: func() {}}
	replyTopic := "-"
	// Over an acknowledged window of 1, Send returns when the receiver
	// took the message; fire and forget needs an answer: a message back.
	if reply && mode != ack1 {
		replyTopic = topic + "r"
		s, err := r.node.NewSubscriber(replyTopic, &core.SubscriberOptions{OnlyNew: true})
		if err != nil {
			return nil, nil, err
		}
		l.reply = s
	}
	kind := "copy"
	if zc {
		kind = "zc"
	}
	var kids []*child
	fail := func(err error) (link, []*child, error) {
		l.close()
		for _, k := range kids {
			k.stop()
		}
		return nil, nil, err
	}
	for i := 0; i < n; i++ {
		k, err := r.startChild("shmfs", nil, r.opt.Domain, strconv.Itoa(r.opt.Port), topic, kind, replyTopic)
		if err != nil {
			return fail(err)
		}
		kids = append(kids, k)
	}
	for _, k := range kids {
		if _, err := k.expect("up", 30*time.Second); err != nil {
			return fail(err)
		}
	}
	o := &core.PublisherOptions{}
	switch mode {
	case ack1:
		o.AckTimeout, o.Window = benchAckTimeout, 1
	case window:
		o.AckTimeout = benchAckTimeout
	}
	p, err := r.node.NewPublisher(topic, o)
	if err != nil {
		return fail(err)
	}
	l.pub = p
	if err := waitSubscribers(p, n); err != nil {
		return fail(err)
	}
	return l, kids, nil
}

// waitSubscribers waits until n subscriber processes are attached to p:
// nothing sent before could reach them.
func waitSubscribers(p *core.Publisher, n int) error {
	deadline := time.Now().Add(20 * time.Second)
	for p.Stats().Subscribers < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %d of %d after 20 s", errConnect, p.Stats().Subscribers, n)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

type shmfsLink struct {
	pub    *core.Publisher
	reply  *core.Subscriber // fire-and-forget latency: the receivers' answers
	zc     bool
	buf    []byte
	base   context.Context // the run's
	ctx    context.Context // the point's
	cancel context.CancelFunc
}

func (l *shmfsLink) begin(deadline time.Time) {
	l.cancel()
	l.ctx, l.cancel = context.WithDeadline(l.base, deadline)
}

func (l *shmfsLink) send(n int, seq uint64) error {
	if l.zc {
		return l.pub.SendFunc(l.ctx, n, func(b []byte) error {
			stamp(b, seq)
			return nil
		})
	}
	if len(l.buf) < n {
		l.buf = make([]byte, n)
	}
	stamp(l.buf, seq)
	return l.pub.Send(l.ctx, l.buf[:n])
}

func (l *shmfsLink) await() error {
	if l.reply == nil {
		return nil // window 1: Send returned after the acknowledgement
	}
	return l.reply.ReceiveFunc(l.ctx, func(core.Header, []byte) error { return nil })
}

func (l *shmfsLink) close() {
	l.cancel()
	if l.pub != nil {
		_ = l.pub.Close()
	}
	if l.reply != nil {
		_ = l.reply.Close()
	}
}

// shmfsRx: args domain port topic copy|zc reply-topic|-.
type shmfsRx struct {
	node   *core.Node
	sub    *core.Subscriber
	reply  *core.Publisher
	ctx    context.Context
	cancel context.CancelFunc
}

func newShmfsRx(a []string) (receiver, error) {
	if len(a) != 5 {
		return nil, fmt.Errorf("shmfs receiver: want domain port topic copy|zc reply, got %q", a)
	}
	port, err := strconv.Atoi(a[1])
	if err != nil {
		return nil, fmt.Errorf("shmfs receiver: port %q: %w", a[1], err)
	}
	n, err := core.OpenNode(core.Config{Domain: a[0], Port: port})
	if err != nil {
		return nil, err
	}
	rx := &shmfsRx{node: n, ctx: context.Background(), cancel: func() {}}
	rx.sub, err = n.NewSubscriber(a[2], &core.SubscriberOptions{ZeroCopy: a[3] == "zc", OnlyNew: true})
	if err != nil {
		rx.close()
		return nil, err
	}
	if a[4] != "-" {
		if rx.reply, err = n.NewPublisher(a[4], nil); err != nil {
			rx.close()
			return nil, err
		}
		if err := waitSubscribers(rx.reply, 1); err != nil {
			rx.close()
			return nil, err
		}
	}
	return rx, nil
}

func (rx *shmfsRx) begin(deadline time.Time) {
	rx.cancel()
	rx.ctx, rx.cancel = context.WithDeadline(context.Background(), deadline)
}

func (rx *shmfsRx) recv(size int, fn func([]byte)) error {
	return rx.sub.ReceiveFunc(rx.ctx, func(_ core.Header, b []byte) error {
		fn(b)
		return nil
	})
}

var one = []byte{1}

func (rx *shmfsRx) answer() error {
	if rx.reply == nil {
		return nil
	}
	return rx.reply.Send(rx.ctx, one)
}

func (rx *shmfsRx) dropped() uint64 { return rx.sub.Stats().Dropped }

func (rx *shmfsRx) close() {
	rx.cancel()
	if rx.sub != nil {
		_ = rx.sub.Close()
	}
	if rx.reply != nil {
		_ = rx.reply.Close()
	}
	_ = rx.node.Close()
}
