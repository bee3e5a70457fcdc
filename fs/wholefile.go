package fs

import (
	"context"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// wholeNode is T/whole: everything written through one open file
// description until close(2) is published as one message, so that
// `cat bigfile > T/whole` sends a file of any size (up to MaxMessageSize)
// as a single message.
type wholeNode struct {
	gofs.Inode
	fs    *filesystem
	topic string
}

var (
	_ = (gofs.NodeOpener)((*wholeNode)(nil))
	_ = (gofs.NodeGetattrer)((*wholeNode)(nil))
	_ = (gofs.NodeSetattrer)((*wholeNode)(nil))
	_ = (gofs.FileWriter)((*wholeHandle)(nil))
	_ = (gofs.FileFlusher)((*wholeHandle)(nil))
	_ = (gofs.FileReleaser)((*wholeHandle)(nil))
)

func (n *wholeNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fs.fileAttr(&out.Attr, 0o222, time.Time{})
	return 0
}

func (n *wholeNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := n.fs.setattr(in, 0o222); errno != 0 {
		return errno
	}
	n.fs.fileAttr(&out.Attr, 0o222, time.Time{})
	return 0
}

func (n *wholeNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_WRONLY {
		return nil, 0, syscall.EACCES
	}
	t, ok := n.fs.acquire(n.topic)
	if !ok {
		return nil, 0, syscall.ENODEV
	}
	if _, err := t.publisher(); err != nil {
		n.fs.release(t)
		n.fs.log.Printf("topic %q: publisher: %v", n.topic, err)
		return nil, 0, errno(err)
	}
	h := &wholeHandle{t: t}
	if !n.fs.addHandle(h) {
		n.fs.release(t)
		return nil, 0, syscall.ENODEV
	}
	return h, streamFlags, 0
}

// wholeHandle collects the message of one open file description.
type wholeHandle struct {
	t *topic

	mu      sync.Mutex
	buf     []byte
	pending bool // something was written since the last publish
	tooBig  bool // a write went over the size limit: the message is void
	closed  bool
}

func (h *wholeHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return 0, syscall.ENODEV
	}
	if h.tooBig {
		return 0, syscall.EFBIG
	}
	if len(h.buf)+len(data) > h.t.fs.opts.MaxMessageSize {
		// The message can never be whole: publish nothing of it.
		h.buf, h.tooBig = nil, true
		return 0, syscall.EFBIG
	}
	h.buf = append(h.buf, data...)
	h.pending = true
	return uint32(len(data)), 0
}

// Flush runs at every close(2) of a descriptor of this file description
// (the shell's open/dup2/close before the command runs included): it
// publishes what was written since the previous flush, if anything. An
// error is returned by close(2).
func (h *wholeHandle) Flush(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tooBig {
		h.buf, h.pending, h.tooBig = nil, false, false
		return syscall.EFBIG
	}
	if !h.pending || h.closed {
		return 0
	}
	err := h.t.send(h.buf)
	h.buf, h.pending = nil, false
	return errno(err)
}

func (h *wholeHandle) shutdown() {
	h.mu.Lock()
	h.closed = true
	h.buf = nil
	h.mu.Unlock()
}

// Release drops data that no close(2) published (a writer that died
// without its flush reaching us).
func (h *wholeHandle) Release(ctx context.Context) syscall.Errno {
	h.shutdown()
	h.t.fs.removeHandle(h)
	h.t.fs.release(h.t)
	return 0
}
