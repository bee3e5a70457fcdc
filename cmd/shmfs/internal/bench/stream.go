package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Byte streams: a Unix stream socket, TCP over loopback, a pair of pipes.
// The sender writes each message whole; the receiver knows the size and
// reads exactly that many bytes into its own buffer (a copy out of the
// kernel, as a subscriber's copy), and answers latency messages with one
// byte. Fan-out writes every message to each receiver's connection in turn.

func streamTransport(id, label, network string) transport {
	return transport{id: id, label: label, group: "alternative", lossless: true,
		open: func(r *runner, n int, reply bool) (link, []*child, error) {
			return r.openStream(network, n)
		}}
}

func pipeTransport() transport {
	return transport{id: "pipe", label: "pipe", group: "alternative", lossless: true,
		note: "a pipe pair (data one way, answers back); default pipe buffer (64 KiB)",
		open: func(r *runner, n int, reply bool) (link, []*child, error) {
			if n != 1 {
				return nil, nil, fmt.Errorf("pipe: one receiver only, asked for %d", n)
			}
			return r.openPipe()
		}}
}

// deadliner is a connection or pipe end with deadlines.
type deadliner interface{ SetDeadline(time.Time) error }

type streamLink struct {
	w    []io.Writer
	r    io.Reader // answers of the first receiver
	ends []deadliner
	stop func()
	buf  []byte
	ack  [1]byte
}

func (l *streamLink) close() { l.stop() }

func (l *streamLink) begin(deadline time.Time) {
	for _, e := range l.ends {
		_ = e.SetDeadline(deadline)
	}
}

func (l *streamLink) send(n int, seq uint64) error {
	if len(l.buf) < n {
		l.buf = make([]byte, n)
	}
	stamp(l.buf, seq)
	for _, w := range l.w {
		if _, err := w.Write(l.buf[:n]); err != nil {
			return err
		}
	}
	return nil
}

func (l *streamLink) await() error {
	_, err := io.ReadFull(l.r, l.ack[:])
	return err
}

func (r *runner) openStream(network string, n int) (link, []*child, error) {
	var ln net.Listener
	var err error
	var addr string
	if network == "unix" {
		r.topics++
		addr = filepath.Join(r.dir, "s"+strconv.Itoa(r.topics))
		ln, err = net.Listen("unix", addr)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			addr = ln.Addr().String()
		}
	}
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	var kids []*child
	var conns []net.Conn
	fail := func(err error) (link, []*child, error) {
		for _, c := range conns {
			c.Close()
		}
		for _, k := range kids {
			k.stop()
		}
		return nil, nil, err
	}
	for i := 0; i < n; i++ {
		k, err := r.startChild(network, nil, addr)
		if err != nil {
			return fail(err)
		}
		kids = append(kids, k)
	}
	_ = ln.(interface{ SetDeadline(time.Time) error }).SetDeadline(time.Now().Add(30 * time.Second))
	for range kids {
		c, err := ln.Accept()
		if err != nil {
			return fail(fmt.Errorf("accept: %w", err))
		}
		conns = append(conns, c)
	}
	for _, k := range kids {
		if _, err := k.expect("up", 30*time.Second); err != nil {
			return fail(err)
		}
	}
	l := &streamLink{r: conns[0], stop: func() {
		for _, c := range conns {
			c.Close()
		}
	}}
	for _, c := range conns {
		l.w = append(l.w, c)
		l.ends = append(l.ends, c)
	}
	return l, kids, nil
}

func (r *runner) openPipe() (link, []*child, error) {
	// data: us → receiver (its fd 3); answers: receiver (its fd 4) → us.
	dr, dw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	ar, aw, err := os.Pipe()
	if err != nil {
		dr.Close()
		dw.Close()
		return nil, nil, err
	}
	k, err := r.startChild("pipe", []*os.File{dr, aw})
	if err != nil {
		dr.Close()
		aw.Close()
		dw.Close()
		ar.Close()
		return nil, nil, err
	}
	if _, err := k.expect("up", 30*time.Second); err != nil {
		dw.Close()
		ar.Close()
		k.stop()
		return nil, nil, err
	}
	l := &streamLink{w: []io.Writer{dw}, r: ar, ends: []deadliner{dw, ar}, stop: func() {
		dw.Close()
		ar.Close()
	}}
	return l, []*child{k}, nil
}

// streamRx reads messages from a connection or pipe.
type streamRx struct {
	r    io.Reader
	w    io.Writer
	ends []deadliner
	buf  []byte
	c    []io.Closer
}

func dialStreamRx(network string, a []string) (receiver, error) {
	if len(a) != 1 {
		return nil, fmt.Errorf("%s receiver: want an address, got %q", network, a)
	}
	c, err := net.DialTimeout(network, a[0], 10*time.Second)
	if err != nil {
		return nil, err
	}
	return &streamRx{r: c, w: c, ends: []deadliner{c}, c: []io.Closer{c}}, nil
}

// errPipe: the pipe receiver's descriptors are missing.
var errPipe = errors.New("pipe receiver: fds 3 and 4 are not pipes")

func pipeRx() (receiver, error) {
	// Inherited descriptors are blocking; non-blocking ones get Go's
	// poller, and with it deadlines.
	for _, fd := range []int{3, 4} {
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
			return nil, errPipe
		}
		if err := syscall.SetNonblock(fd, true); err != nil {
			return nil, err
		}
	}
	r, w := os.NewFile(3, "data"), os.NewFile(4, "answers")
	return &streamRx{r: r, w: w, ends: []deadliner{r, w}, c: []io.Closer{r, w}}, nil
}

func (rx *streamRx) begin(deadline time.Time) {
	for _, e := range rx.ends {
		_ = e.SetDeadline(deadline)
	}
}

func (rx *streamRx) recv(size int, fn func([]byte)) error {
	if len(rx.buf) < size {
		rx.buf = make([]byte, size)
	}
	if _, err := io.ReadFull(rx.r, rx.buf[:size]); err != nil {
		return err
	}
	fn(rx.buf[:size])
	return nil
}

func (rx *streamRx) answer() error {
	_, err := rx.w.Write(one)
	return err
}

func (rx *streamRx) dropped() uint64 { return 0 }

func (rx *streamRx) close() {
	for _, c := range rx.c {
		c.Close()
	}
}
