package fs

import (
	"context"
	"sync"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// The poll(2) events of a readable and of a writable file, and of one at
// its end (Linux's values, which FUSE uses; x/sys lacks the *NORM ones).
const (
	pollIn  = unix.POLLIN | 0x40   // POLLRDNORM
	pollOut = unix.POLLOUT | 0x100 // POLLWRNORM
	pollHup = unix.POLLHUP
)

// maxWriteCheck bounds the interval at which a watcher asks whether a
// blocked write could go on: a publisher tells nobody when the reader it
// waits for acknowledges, so writability is polled (1 ms, doubling to
// this), only while a poller waits for it.
const maxWriteCheck = 10 * time.Millisecond

// waiter is an open file a poller's watcher can wait on.
type waiter interface {
	// waitIn blocks until a read would not block (nil), the file closed,
	// or ctx is done.
	waitIn(ctx context.Context) error
	// canWrite reports whether a write would not block.
	canWrite() bool
}

// poller wakes the poll(2), select(2) and epoll waiters of one open file.
//
// The kernel sends FUSE_POLL with FUSE_POLL_SCHEDULE_NOTIFY when a waiter
// will sleep; the file answers what is ready now and must send NOTIFY_POLL
// with the kernel's handle once that changes (the kernel then polls
// again). Readiness that is there when polled needs no watcher; events
// that are not there make a watcher goroutine wait for them (a message:
// Subscriber.Wait; room to write: polled) and notify once. When a read
// finds nothing (EAGAIN, or it is about to block) after a poll said
// "readable", the next message is waited for the same way: an
// edge-triggered epoll (Go's runtime) learns of every message that comes
// after it read everything, and a level-triggered one polls again anyway.
type poller struct {
	inode  *gofs.Inode // any inode of the mount: NotifyPoll's way to the kernel
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	kh       uint64 // the kernel's handle of the open file
	armed    bool   // a waiter sleeps: notify kh at the next change
	wantIn   bool   // it waits for something to read
	wantOut  bool   // it waits for room to write
	watching bool   // a watcher goroutine runs
	kick     context.CancelFunc
	done     bool
}

func (p *poller) init(f *filesystem, n *gofs.Inode) {
	p.inode = n
	p.ctx, p.cancel = context.WithCancel(f.ctx)
}

// closed reports whether the file was shut down (end of file).
func (p *poller) closed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// arm records a waiter from a FUSE_POLL that asks to be notified, and
// starts a watcher (w; nil: the file notifies by itself) for the events it
// asks about that the file can have (can) but that are not ready.
func (p *poller) arm(w waiter, in *fuse.PollIn, ready, can uint32) {
	if in.Flags&fuse.FUSE_POLL_SCHEDULE_NOTIFY == 0 {
		return
	}
	events := in.Events
	if events == 0 { // protocol before 7.21: not said
		events = pollIn | pollOut
	}
	missing := events & can &^ ready
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	p.kh, p.armed = in.Kh, true
	p.wantIn, p.wantOut = missing&pollIn != 0, missing&pollOut != 0
	p.startLocked(w)
}

// idle says that a read found nothing: a waiter armed while the file was
// readable is woken by the next message.
func (p *poller) idle(w waiter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.armed || p.done || p.wantIn {
		return
	}
	p.wantIn = true
	p.startLocked(w)
}

// startLocked starts the watcher, or makes a running one look again at
// what is wanted. Caller holds mu.
func (p *poller) startLocked(w waiter) {
	if w == nil || (!p.wantIn && !p.wantOut) {
		return
	}
	if p.watching {
		if p.kick != nil {
			p.kick()
		}
		return
	}
	p.watching = true
	go p.watch(w)
}

// watch waits for what is wanted, notifies once and ends.
func (p *poller) watch(w waiter) {
	check := time.Millisecond
	for {
		p.mu.Lock()
		in, out := p.wantIn, p.wantOut
		if !p.armed || p.done || (!in && !out) {
			p.watching, p.kick = false, nil
			p.mu.Unlock()
			return
		}
		ctx, kick := context.WithCancel(p.ctx)
		if out {
			ctx, kick = context.WithTimeout(p.ctx, check)
		}
		p.kick = kick
		p.mu.Unlock()
		var err error
		switch {
		case out && w.canWrite():
		case in:
			err = w.waitIn(ctx)
		default:
			<-ctx.Done()
			err = ctx.Err()
		}
		kick()
		if err != nil && p.ctx.Err() == nil && ctx.Err() != nil {
			// Kicked, or time to check writability again.
			check = min(2*check, maxWriteCheck)
			continue
		}
		p.notify()
	}
}

// changed wakes an armed waiter now (the file's state changed).
func (p *poller) changed() { p.notify() }

func (p *poller) notify() {
	p.mu.Lock()
	kh, armed := p.kh, p.armed
	p.armed, p.wantIn, p.wantOut = false, false, false
	p.mu.Unlock()
	if armed {
		_ = p.inode.NotifyPoll(kh) // ENOENT: the file is gone already
	}
}

// shutdown ends the watcher and wakes a waiter: the file reached its end.
func (p *poller) shutdown() {
	p.mu.Lock()
	p.done = true
	p.mu.Unlock()
	p.cancel()
	p.notify()
}
