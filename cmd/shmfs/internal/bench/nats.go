package bench

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// NATS over loopback: an embedded nats-server in the sending process (as
// `shmfs bridge` embeds one), the sender and every receiver connected
// through TCP on 127.0.0.1 with nats.go. Core NATS is at-most-once: the
// server's per-client buffer is raised to 1 GiB and the receivers' limits
// lifted so that no message is dropped for a slow consumer; a drop would
// show as a loss.

func natsTransport() transport {
	return transport{id: "nats", label: "NATS loopback", group: "alternative", lossless: true,
		note: "embedded nats-server in the sending process; its CPU counts as the sender's",
		open: func(r *runner, n int, reply bool) (link, []*child, error) {
			return r.openNats(n, reply)
		}}
}

type natsServer struct {
	s   *server.Server
	url string
}

// errNats: the embedded server did not start.
var errNats = errors.New("bench: embedded nats-server did not start")

func startNats() (*natsServer, error) {
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		MaxPayload: 32 << 20, MaxPending: 1 << 30, WriteDeadline: time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNats, err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errNats
	}
	return &natsServer{s: s, url: s.ClientURL()}, nil
}

func (n *natsServer) shutdown() {
	n.s.Shutdown()
	n.s.WaitForShutdown()
}

func natsConnect(url string) (*nats.Conn, error) {
	return nats.Connect(url, nats.Name("shmfs-bench"), nats.NoReconnect(), nats.Timeout(10*time.Second))
}

func (r *runner) openNats(n int, reply bool) (link, []*child, error) {
	if r.nats == nil {
		s, err := startNats()
		if err != nil {
			return nil, nil, err
		}
		r.nats = s
	}
	nc, err := natsConnect(r.nats.url)
	if err != nil {
		return nil, nil, err
	}
	r.topics++
	subject := "bench." + strconv.Itoa(r.topics)
	l := &natsLink{nc: nc, subject: subject}
	replySubject := "-"
	var kids []*child
	fail := func(err error) (link, []*child, error) {
		l.close()
		for _, k := range kids {
			k.stop()
		}
		return nil, nil, err
	}
	if reply {
		replySubject = subject + ".r"
		if l.reply, err = nc.SubscribeSync(replySubject); err != nil {
			return fail(err)
		}
		if err := nc.Flush(); err != nil {
			return fail(err)
		}
	}
	for i := 0; i < n; i++ {
		k, err := r.startChild("nats", nil, r.nats.url, subject, replySubject)
		if err != nil {
			return fail(err)
		}
		kids = append(kids, k)
	}
	for _, k := range kids {
		// Each receiver's subscription reached the server before "up".
		if _, err := k.expect("up", 30*time.Second); err != nil {
			return fail(err)
		}
	}
	return l, kids, nil
}

type natsLink struct {
	nc       *nats.Conn
	subject  string
	reply    *nats.Subscription
	deadline time.Time
	buf      []byte
}

func (l *natsLink) begin(deadline time.Time) { l.deadline = deadline }

func (l *natsLink) send(n int, seq uint64) error {
	if len(l.buf) < n {
		l.buf = make([]byte, n)
	}
	stamp(l.buf, seq)
	return l.nc.Publish(l.subject, l.buf[:n])
}

func (l *natsLink) await() error {
	_, err := l.reply.NextMsg(time.Until(l.deadline))
	return err
}

func (l *natsLink) close() { l.nc.Close() }

// natsRx: args url subject reply-subject|-.
type natsRx struct {
	nc       *nats.Conn
	sub      *nats.Subscription
	reply    string
	deadline time.Time
}

func newNatsRx(a []string) (receiver, error) {
	if len(a) != 3 {
		return nil, fmt.Errorf("nats receiver: want url subject reply, got %q", a)
	}
	nc, err := natsConnect(a[0])
	if err != nil {
		return nil, err
	}
	sub, err := nc.SubscribeSync(a[1])
	if err == nil {
		err = sub.SetPendingLimits(-1, -1)
	}
	if err == nil {
		err = nc.Flush() // the server has the subscription
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &natsRx{nc: nc, sub: sub, reply: a[2]}, nil
}

func (rx *natsRx) begin(deadline time.Time) { rx.deadline = deadline }

func (rx *natsRx) recv(size int, fn func([]byte)) error {
	m, err := rx.sub.NextMsg(time.Until(rx.deadline))
	if err != nil {
		return err
	}
	fn(m.Data)
	return nil
}

func (rx *natsRx) answer() error {
	if rx.reply == "-" {
		return nil
	}
	return rx.nc.Publish(rx.reply, one)
}

func (rx *natsRx) dropped() uint64 {
	n, _ := rx.sub.Dropped()
	return uint64(max(n, 0))
}

func (rx *natsRx) close() { rx.nc.Close() }
