package fs

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/shmfs/shmfs/internal/shmname"
)

// maxEventsBuffered bounds the unread lines of one open events file; lines
// beyond it are counted and reported as one "lost count=N" line.
const maxEventsBuffered = 256 << 10

// eventsNode is T/events.
type eventsNode struct {
	gofs.Inode
	fs    *filesystem
	topic string
}

var (
	_ = (gofs.NodeOpener)((*eventsNode)(nil))
	_ = (gofs.NodeGetattrer)((*eventsNode)(nil))
	_ = (gofs.FileReader)((*eventsHandle)(nil))
	_ = (gofs.FileReleaser)((*eventsHandle)(nil))
)

func (n *eventsNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fs.fileAttr(&out.Attr, 0o444)
	return 0
}

func (n *eventsNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EACCES
	}
	t, ok := n.fs.acquire(n.topic)
	if !ok {
		return nil, 0, syscall.ENODEV
	}
	h := &eventsHandle{t: t, wake: make(chan struct{}, 1), lock: make(chan struct{}, 1), nonblock: flags&syscall.O_NONBLOCK != 0}
	if !n.fs.addHandle(h) {
		n.fs.release(t)
		return nil, 0, syscall.ENODEV
	}
	t.mu.Lock()
	closed := t.closed
	if !closed {
		t.events[h] = struct{}{}
		for _, l := range t.refusals { // refusals stay news: the reader may have missed them
			h.push(l)
		}
	}
	t.mu.Unlock()
	if closed {
		h.mu.Lock() // h.closed is guarded by h.mu, as in shutdown
		h.closed = true
		h.mu.Unlock()
	}
	return h, fuse.FOPEN_DIRECT_IO | fuse.FOPEN_NONSEEKABLE | fuse.FOPEN_STREAM, 0
}

// eventsHandle is one open events file: its own queue of lines.
type eventsHandle struct {
	t        *topic
	wake     chan struct{} // signalled when lines arrive or on shutdown
	lock     chan struct{} // one reader at a time, interruptible
	nonblock bool          // O_NONBLOCK given to open(2) (see dataHandle.Read)

	mu     sync.Mutex
	buf    []byte
	lost   int
	closed bool
}

func (h *eventsHandle) push(line string) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	if len(h.buf)+len(line) > maxEventsBuffered {
		h.lost++
	} else {
		if h.lost > 0 {
			h.buf = append(h.buf, stamp(time.Now())+fmt.Sprintf(" lost count=%d\n", h.lost)...)
			h.lost = 0
		}
		h.buf = append(h.buf, line...)
	}
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func (h *eventsHandle) shutdown() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Read returns buffered lines (a line may continue in the next read) and
// blocks while there are none. It returns EOF after shutdown.
func (h *eventsHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	select {
	case h.lock <- struct{}{}:
		defer func() { <-h.lock }()
	case <-ctx.Done():
		return nil, syscall.EINTR
	}
	for {
		h.mu.Lock()
		if len(h.buf) > 0 {
			n := copy(dest, h.buf)
			h.buf = h.buf[n:]
			if len(h.buf) == 0 {
				h.buf = nil
			}
			h.mu.Unlock()
			return fuse.ReadResultData(dest[:n]), 0
		}
		closed := h.closed
		h.mu.Unlock()
		if closed {
			return fuse.ReadResultData(nil), 0
		}
		if h.nonblock {
			return nil, syscall.EAGAIN
		}
		select {
		case <-h.wake:
		case <-ctx.Done():
			return nil, syscall.EINTR
		}
	}
}

func (h *eventsHandle) Release(ctx context.Context) syscall.Errno {
	h.shutdown()
	t := h.t
	t.mu.Lock()
	delete(t.events, h)
	t.mu.Unlock()
	t.fs.removeHandle(h)
	t.fs.release(t)
	return 0
}

// emitLocked sends one event line to every open events file (t.mu held).
func (t *topic) emitLocked(now time.Time, format string, args ...any) {
	if len(t.events) == 0 {
		return
	}
	line := stamp(now) + " " + fmt.Sprintf(format, args...) + "\n"
	for h := range t.events {
		h.push(line)
	}
}

// stamp formats an event time: UTC, milliseconds, e.g. 2026-11-26T10:00:00.123Z.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

func hexID(id uint64) string { return shmname.Hex(id) }

// word makes an untrusted string (process or host name from registration)
// safe for a space-separated key=value line.
func word(s string) string {
	if s == "" {
		return "-"
	}
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f || r == '=' {
			return '_'
		}
		return r
	}, s)
}
