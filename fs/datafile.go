package fs

import (
	"context"
	"errors"
	"slices"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/shmfs/shmfs/core"
)

// streamFlags make the kernel bypass the page cache and file size and pass
// every read(2) and write(2) to us, with offset 0 at the start of each.
const streamFlags = fuse.FOPEN_DIRECT_IO | fuse.FOPEN_NONSEEKABLE | fuse.FOPEN_STREAM

// pageSize is the unit in which the kernel limits one request (256 pages).
const pageSize = 4096

// holdTimeout bounds how long a write piece that may continue waits for
// the rest of its write(2) before it is published alone.
const holdTimeout = 50 * time.Millisecond

// dataNode is T/data: write(2) publishes, read(2) subscribes.
type dataNode struct {
	gofs.Inode
	fs    *filesystem
	topic string
}

var (
	_ = (gofs.NodeOpener)((*dataNode)(nil))
	_ = (gofs.NodeGetattrer)((*dataNode)(nil))
	_ = (gofs.NodeSetattrer)((*dataNode)(nil))
	_ = (gofs.FileFlagsReader)((*dataHandle)(nil))
	_ = (gofs.FilePoller)((*dataHandle)(nil))
	_ = (gofs.FileWriter)((*dataHandle)(nil))
	_ = (gofs.FileFlusher)((*dataHandle)(nil))
	_ = (gofs.FileReleaser)((*dataHandle)(nil))
)

func (n *dataNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fs.fileAttr(&out.Attr, 0o666, n.fs.lastPublish(n.topic))
	out.SetTimeout(0) // mtime changes with every message
	return 0
}

func (n *dataNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := n.fs.setattr(in, 0o666); errno != 0 {
		return errno
	}
	n.fs.fileAttr(&out.Attr, 0o666, n.fs.lastPublish(n.topic))
	out.SetTimeout(0)
	return 0
}

// setattr accepts what shells and tools do to a stream file: truncation to
// size 0 (O_TRUNC of `>`) and time updates (touch, which change nothing).
// Everything else fails.
func (f *filesystem) setattr(in *fuse.SetAttrIn, perm uint32) syscall.Errno {
	if sz, ok := in.GetSize(); ok && sz != 0 {
		return syscall.EINVAL
	}
	if _, ok := in.GetMode(); ok {
		return syscall.EPERM
	}
	if _, ok := in.GetUID(); ok {
		return syscall.EPERM
	}
	if _, ok := in.GetGID(); ok {
		return syscall.EPERM
	}
	return 0
}

func (n *dataNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	t, ok := n.fs.acquire(n.topic)
	if !ok {
		return nil, 0, syscall.ENODEV
	}
	h := &dataHandle{
		t: t, lock: make(chan struct{}, 1),
		appends: flags&syscall.O_APPEND != 0,
	}
	h.poll.init(n.fs, n.EmbeddedInode())
	acc := flags & syscall.O_ACCMODE
	if acc == syscall.O_WRONLY || acc == syscall.O_RDWR {
		// Create the publisher now, so that the first write does not wait
		// for discovery.
		if _, err := t.publisher(); err != nil {
			n.fs.release(t)
			n.fs.log.Printf("topic %q: publisher: %v", n.topic, err)
			return nil, 0, errno(err)
		}
		h.write = true
	}
	if acc == syscall.O_RDONLY || acc == syscall.O_RDWR {
		sub, err := n.fs.be.NewSubscriber(n.topic, subOptions{onlyNew: true})
		if err != nil {
			n.fs.release(t)
			n.fs.log.Printf("topic %q: subscriber: %v", n.topic, err)
			return nil, 0, errno(err)
		}
		h.sub = sub
	}
	if !n.fs.addHandle(h) || (h.sub != nil && !t.addReader(h)) {
		h.close()
		n.fs.removeHandle(h)
		n.fs.release(t)
		return nil, 0, syscall.ENODEV
	}
	return h, streamFlags, 0
}

// dataHandle is one open file description of data: its own subscriber
// (when readable), the remainder of a message not yet read, and a write
// piece waiting for the rest of its write(2).
type dataHandle struct {
	t       *topic
	sub     subscriber // nil when write-only
	write   bool
	appends bool // O_APPEND: offsets are not write(2)-relative
	poll    poller

	// lock admits one reader at a time; a channel so that waiting for it
	// is interruptible. It guards rest and next.
	lock chan struct{}
	rest []byte // unread remainder of the current message
	// next is a whole message that poll took from the subscriber to tell
	// whether one was there (empty messages are skipped); read returns it
	// first.
	next    core.Message
	hasNext bool

	wmu     sync.Mutex
	held    []byte      // first piece of a write(2) the kernel split
	heldEnd int64       // offset where its continuation starts
	timer   *time.Timer // publishes held alone after holdTimeout

	closeOnce sync.Once
}

// ReadWithFlags returns bytes of one message only. A read(2) with a buffer
// at least as large as the message returns exactly that message; a longer
// message continues on the next read(2). The kernel splits a read(2) into
// requests of at most 256 pages at increasing offsets of one call
// (FOPEN_STREAM starts each read(2) at offset 0): a request at offset > 0
// with nothing left of the message ends the read(2) instead of starting
// the next one.
//
// flags are the file's flags now: O_NONBLOCK, given to open(2) or set
// later with fcntl(2), makes a read with nothing pending return EAGAIN.
func (h *dataHandle) ReadWithFlags(ctx context.Context, dest []byte, off int64, flags uint32) (fuse.ReadResult, syscall.Errno) {
	if h.sub == nil {
		return nil, syscall.EBADF
	}
	select {
	case h.lock <- struct{}{}:
		defer func() { <-h.lock }()
	case <-ctx.Done():
		return nil, syscall.EINTR
	}
	if len(h.rest) > 0 {
		n := copy(dest, h.rest)
		h.rest = h.rest[n:]
		return fuse.ReadResultData(dest[:n]), 0
	}
	if off > 0 {
		return fuse.ReadResultData(nil), 0
	}
	m, ok, errno := h.nextLocked()
	if !ok && errno == 0 {
		if flags&syscall.O_NONBLOCK != 0 {
			h.poll.idle(h) // a poller that was told "readable" waits for the next one
			return nil, syscall.EAGAIN
		}
		m, errno = h.receive(ctx)
	}
	if errno != 0 {
		return nil, errno
	}
	if m.Data == nil {
		return fuse.ReadResultData(nil), 0 // shutdown: EOF
	}
	h.t.fs.observeDelivered(h.t.name, len(m.Data), m.Time)
	n := copy(dest, m.Data)
	if n < len(m.Data) {
		h.rest = m.Data[n:]
	} else {
		h.sub.Release(m) // copied out whole: the buffer can be reused
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// nextLocked takes the next non-empty message without waiting: the one
// poll took, else one from the subscriber. An empty message would read as
// end of file: skipped. After shutdown it returns a message without Data
// (EOF). Caller holds lock.
func (h *dataHandle) nextLocked() (core.Message, bool, syscall.Errno) {
	if h.hasNext {
		m := h.next
		h.next, h.hasNext = core.Message{}, false
		return m, true, 0
	}
	for {
		m, ok, err := h.sub.TryReceive()
		switch {
		case errors.Is(err, core.ErrClosed):
			return core.Message{}, true, 0
		case err != nil && h.t.report(err):
			continue // a refused publisher: the others' messages flow
		case err != nil:
			h.t.fs.log.Printf("topic %q: receive: %v", h.t.name, err)
			return core.Message{}, false, errno(err)
		case !ok:
			return core.Message{}, false, 0
		case len(m.Data) > 0:
			return m, true, 0
		}
	}
}

// receive waits for the next non-empty message. Core either returns the
// message or leaves it queued when ctx is cancelled (FUSE interrupt), so
// nothing is lost or doubled. Caller holds lock.
func (h *dataHandle) receive(ctx context.Context) (core.Message, syscall.Errno) {
	h.poll.idle(h)
	for {
		m, err := h.sub.Receive(ctx)
		switch {
		case errors.Is(err, core.ErrClosed):
			return core.Message{}, 0 // shutdown: EOF
		case err != nil && ctx.Err() != nil:
			return core.Message{}, syscall.EINTR
		case err != nil && h.t.report(err):
			continue // a refused publisher: the others' messages flow
		case err != nil:
			h.t.fs.log.Printf("topic %q: receive: %v", h.t.name, err)
			return core.Message{}, errno(err)
		case len(m.Data) > 0:
			return m, 0
		}
	}
}

// Poll answers poll(2), select(2) and epoll: readable (POLLIN) when a
// message is waiting for this open file (or it reached end of file at
// shutdown), writable (POLLOUT) when a write would not wait for a reader a
// window behind. A waiter is woken (NOTIFY_POLL) when that changes; see
// poller.
func (h *dataHandle) Poll(ctx context.Context, in *fuse.PollIn) (uint32, syscall.Errno) {
	var ready uint32
	if h.sub != nil && h.readable() {
		ready |= pollIn
	}
	if h.write && !h.t.wouldWait() {
		ready |= pollOut
	}
	if h.poll.closed() {
		ready |= pollHup
		if h.sub != nil {
			ready |= pollIn // reads return end of file
		}
	}
	var can uint32
	if h.sub != nil {
		can |= pollIn
	}
	if h.write {
		can |= pollOut
	}
	h.poll.arm(h, in, ready, can)
	return ready, 0
}

// readable reports whether a read would return without waiting. With the
// read lock free it takes a pending message (skipping empty ones) into
// next, so that the answer is exact; while a read holds the lock (a
// blocking reader in another thread) it asks the subscriber.
func (h *dataHandle) readable() bool {
	select {
	case h.lock <- struct{}{}:
		defer func() { <-h.lock }()
	default:
		return h.sub.Ready()
	}
	if len(h.rest) > 0 || h.hasNext {
		return true
	}
	if !h.sub.Ready() {
		return false
	}
	m, ok, errno := h.nextLocked()
	if ok && m.Data != nil {
		h.next, h.hasNext = m, true
	}
	return ok || errno != 0
}

// waitIn blocks until a read would not wait (poller's watcher).
func (h *dataHandle) waitIn(ctx context.Context) error { return h.sub.Wait(ctx) }

// canWrite reports whether a write would not wait (poller's watcher).
func (h *dataHandle) canWrite() bool { return !h.t.wouldWait() }

// Write publishes one write(2) as one message. The kernel passes at most
// 256 pages per request: a write(2) of up to 1 MiB from a buffer that is
// not page-aligned arrives as a piece of 1 MiB minus the buffer's offset
// in its page, then the rest at the offset where the piece ended. Such a
// piece is held until its continuation arrives (or the next write, close,
// or holdTimeout) and published with it as one message. Pieces of a
// write(2) over 1 MiB are published separately (use whole).
func (h *dataHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !h.write {
		return 0, syscall.EBADF
	}
	h.wmu.Lock()
	defer h.wmu.Unlock()
	if h.held != nil {
		if off > 0 && off == h.heldEnd && len(h.held)+len(data) <= MaxWrite {
			h.held = append(h.held, data...)
			return uint32(len(data)), errno(h.publishHeldLocked())
		}
		if err := h.publishHeldLocked(); err != nil {
			h.t.fs.log.Printf("topic %q: publish: %v", h.t.name, err)
		}
	}
	if off == 0 && !h.appends && len(data) > MaxWrite-pageSize && len(data) < MaxWrite {
		h.held = slices.Clone(data)
		h.heldEnd = int64(len(data))
		h.timer = time.AfterFunc(holdTimeout, h.flushHeld)
		return uint32(len(data)), 0
	}
	if err := h.t.send(data); err != nil {
		return 0, errno(err)
	}
	return uint32(len(data)), 0
}

func (h *dataHandle) publishHeldLocked() error {
	if h.timer != nil {
		h.timer.Stop()
		h.timer = nil
	}
	m := h.held
	h.held = nil
	if m == nil {
		return nil
	}
	return h.t.send(m)
}

func (h *dataHandle) flushHeld() {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	if err := h.publishHeldLocked(); err != nil {
		h.t.fs.log.Printf("topic %q: publish: %v", h.t.name, err)
	}
}

// Flush (every close(2)) publishes a held piece.
func (h *dataHandle) Flush(ctx context.Context) syscall.Errno {
	if !h.write {
		return 0
	}
	h.wmu.Lock()
	defer h.wmu.Unlock()
	return errno(h.publishHeldLocked())
}

// shutdown closes the subscriber: a blocked Receive returns ErrClosed and
// the read returns EOF; a poller wakes and finds end of file.
func (h *dataHandle) shutdown() { h.close() }

func (h *dataHandle) close() {
	h.closeOnce.Do(func() {
		h.poll.shutdown()
		if h.sub != nil {
			if err := h.sub.Close(); err != nil && !errors.Is(err, core.ErrClosed) {
				h.t.fs.log.Printf("topic %q: close subscriber: %v", h.t.name, err)
			}
		}
	})
}

func (h *dataHandle) Release(ctx context.Context) syscall.Errno {
	if h.write {
		h.flushHeld()
	}
	h.close()
	h.t.removeReader(h)
	h.t.fs.removeHandle(h)
	h.t.fs.release(h.t)
	return 0
}
