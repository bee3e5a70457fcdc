package core

import (
	"errors"
	"hash/crc32"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmfs/shmfs/core/event"
	"github.com/shmfs/shmfs/core/memfile"
	"github.com/shmfs/shmfs/core/mutex"
	"github.com/shmfs/shmfs/core/registration"
	"github.com/shmfs/shmfs/internal/proc"
)

// remotePub is this process's view of one publisher (in any process, this
// one included) whose topic has local subscribers: one observer per memory
// file of the publisher.
type remotePub struct {
	node  *Node
	topic string
	id    uint64
	typ   string
	files []string
	who   proc.Identity
	// subs is the topic's subscriber list in this process (Node.subLists),
	// read per message without Node.mu.
	subs *atomic.Pointer[[]*Subscriber]

	// lastClock is the newest clock handed to the copy subscribers; it
	// orders messages across the publisher's buffers.
	lastClock atomic.Uint64
	// deliverMu serializes the observers' polls (see poll).
	deliverMu sync.Mutex
	// baselined is set after the first poll of any of the publisher's
	// files: from then on every clock skipped counts as dropped (a message
	// found on the first poll is the latest one, not a gap).
	baselined atomic.Bool

	stop chan struct{}
	wg   sync.WaitGroup
	obs  []*observer
}

// newRemotePub is called with n.mu held.
func newRemotePub(n *Node, e registration.Entity) *remotePub {
	r := &remotePub{
		node: n, topic: e.Topic, id: e.ID, typ: e.Type,
		files: append([]string(nil), e.MemFiles...),
		who:   proc.Identity{PID: e.PID, StartTime: e.StartTime},
		subs:  n.subListLocked(e.Topic),
		stop:  make(chan struct{}),
	}
	for i, f := range r.files {
		r.obs = append(r.obs, &observer{rp: r, idx: i, name: f})
	}
	return r
}

func (r *remotePub) start() {
	for _, o := range r.obs {
		r.wg.Add(1)
		go o.run()
	}
}

// close stops the observers and unmaps the files. When the publisher is gone
// (left registration, or died), its event pairs for this process are
// removed too: a pair created by an observer that was still attaching when
// the publisher closed would otherwise stay. While the publisher lives and
// registers (this process merely stopped subscribing), the pairs stay: the
// publisher keeps them for when the process subscribes again.
func (r *remotePub) close(publisherGone bool) {
	select {
	case <-r.stop:
		return
	default:
	}
	close(r.stop)
	for _, o := range r.obs {
		o.wake()
	}
	r.wg.Wait()
	destroy := publisherGone || !r.who.Alive()
	for _, o := range r.obs {
		o.release(destroy)
	}
	r.node.topicObserversChanged(r.topic)
}

// observer waits on one memory file's snd event for this process and hands
// each new message to the local subscribers of the topic.
type observer struct {
	rp   *remotePub
	idx  int
	name string

	// Set once by run before ready is stored; read-only afterwards.
	mf       *memfile.File
	mtx      *mutex.Mutex
	snd, ack *event.Event
	ready    atomic.Bool

	// latest is the newest clock seen in the file's header; zero-copy
	// subscribers compare it with what they consumed.
	latest atomic.Uint64
	// baseClock is the clock found by the first poll (0: the file was
	// empty) and baseEpoch the node's subscriber epoch at that moment: a
	// zero-copy subscriber that already existed then counts every clock
	// after baseClock it did not read as dropped.
	baseClock, baseEpoch atomic.Uint64
	// based is set once the baseline is taken; only then do subscribers
	// see the observer (Subscriber.obs).
	based atomic.Bool
	// consumed is signalled by zero-copy subscribers after they consumed a
	// message, so that the observer can acknowledge it.
	consumed chan struct{}

	// viewMu is held shared by every reader outside the observer goroutine
	// (zero-copy receives, catch-up) while it uses the mapping, and
	// exclusively by release before it unmaps: a zero-copy view is never
	// unmapped under a running callback. It guards released.
	viewMu   sync.RWMutex
	released bool
}

const (
	// observeSlice bounds one wait on the snd event, so that a stopping
	// observer never waits long.
	observeSlice = 500 * time.Millisecond
	// attachTimeout bounds retries of opening a publisher's files that a
	// registration named but that do not exist (yet).
	attachTimeout = 5 * time.Second
)

func (o *observer) wake() {
	if o.ready.Load() {
		o.snd.Set() // only this process waits on this snd event
	}
}

func (o *observer) run() {
	defer o.rp.wg.Done()
	if !o.attach() {
		return
	}
	// Take the baseline (the snd sequence, then the message already in the
	// file, if any) before telling the publisher that we are attached:
	// everything it sends after that raises the sequence and is seen.
	seq := o.snd.Seq()
	o.baseEpoch.Store(o.rp.node.epoch.Load())
	o.poll(true)
	o.baseClock.Store(o.latest.Load())
	o.rp.baselined.Store(true)
	o.based.Store(true)
	o.ack.SetAttached(proc.Self())
	o.rp.node.topicObserversChanged(o.rp.topic)
	for {
		select {
		case <-o.rp.stop:
			return
		default:
		}
		next, err := o.snd.Wait(seq, observeSlice)
		if err != nil {
			if errors.Is(err, event.ErrTimeout) {
				continue
			}
			return
		}
		seq = next
		if o.poll(false) {
			// The receiver goroutine we just readied sits in this P's run
			// queue; the futex wait below is a syscall that keeps the P for
			// up to 20 µs before the runtime hands it off. Yield so that the
			// receiver runs now.
			runtime.Gosched()
		}
	}
}

// attach opens the memory file, its mutex and this process's event pair,
// retrying briefly: registration may name a file a moment before it exists.
func (o *observer) attach() bool {
	deadline := time.Now().Add(attachTimeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		err := o.open()
		if err == nil {
			o.consumed = make(chan struct{}, 1)
			o.ready.Store(true)
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-o.rp.stop:
			return false
		case <-time.After(wait):
		}
	}
}

func (o *observer) open() error {
	inst := proc.InstanceID()
	mf, err := memfile.Open(o.name, true)
	if err != nil {
		return err
	}
	mtx, err := mutex.Open(o.name+"_mtx", mutex.Options{})
	if err != nil {
		mf.Close()
		return err
	}
	snd, created, err := event.CreateOrOpen(event.SndName(o.name, inst), event.Options{})
	if err != nil {
		mf.Close()
		mtx.Close()
		return err
	}
	ack, _, err := event.CreateOrOpen(event.AckName(o.name, inst), event.Options{})
	if err != nil {
		mf.Close()
		mtx.Close()
		if created {
			snd.Destroy()
		} else {
			snd.Close()
		}
		return err
	}
	o.mf, o.mtx, o.snd, o.ack = mf, mtx, snd, ack
	return nil
}

// release unmaps the files (and removes the event pair if destroyPair). It
// waits for zero-copy callbacks that still use the mapping; if one is
// running (it may be the caller itself, closing from inside a callback),
// the release finishes in the background once it returns.
func (o *observer) release(destroyPair bool) {
	if !o.ready.Load() {
		return
	}
	if !o.viewMu.TryLock() {
		go func() {
			o.viewMu.Lock()
			o.releaseLocked(destroyPair)
		}()
		return
	}
	o.releaseLocked(destroyPair)
}

func (o *observer) releaseLocked(destroyPair bool) {
	o.released = true
	o.viewMu.Unlock()
	if destroyPair {
		_ = o.snd.Destroy()
		_ = o.ack.Destroy()
	} else {
		_ = o.snd.Close()
		_ = o.ack.Close()
	}
	_ = o.mtx.Close()
	_ = o.mf.Close()
}

// withView calls fn with the file's current message under the shared lock
// of the file, unless the observer was released or the message cannot be
// read. It releases the locks also when fn panics.
func (o *observer) withView(fn func(h memfile.Header, view []byte)) {
	o.viewMu.RLock()
	defer o.viewMu.RUnlock()
	if o.released {
		return
	}
	if err := o.mtx.RLock(lockTimeout); err != nil {
		if errors.Is(err, mutex.ErrOwnerDied) {
			_ = o.mtx.RUnlock() // the writer died mid-message: skip it
		}
		return
	}
	defer o.mtx.RUnlock()
	if h, view, err := o.mf.Read(); err == nil && h.Clock != 0 {
		fn(h, view)
	}
}

// lockTimeout bounds a reader's wait for the memory file's mutex.
const lockTimeout = 2 * time.Second

// poll reads the file's current message and delivers it if it is new. It
// reports whether it delivered anything. The initial poll (the baseline)
// finds history: subscribers with OnlyNew skip it, and it does not wait for
// zero-copy subscribers, which cannot see this observer yet (the publisher
// does not wait for this process's ack before it is attached either).
// Zero-copy subscribers are only signalled: they read, filter and count for
// themselves (tryZeroCopy).
func (o *observer) poll(initial bool) bool {
	subs := *o.rp.subs.Load()
	// deliverMu makes "is this the publisher's newest clock?" and the
	// queueing one step, so that the observers of a publisher's buffers
	// cannot overtake each other.
	o.rp.deliverMu.Lock()
	defer o.rp.deliverMu.Unlock()
	err := o.mtx.RLock(lockTimeout)
	if err != nil {
		if errors.Is(err, mutex.ErrOwnerDied) {
			// The writer died mid-message: the payload may be torn.
			_ = o.mtx.RUnlock()
		}
		return false
	}
	h, view, err := o.mf.Read()
	if err != nil || h.Clock == 0 {
		_ = o.mtx.RUnlock()
		return false
	}
	if h.Clock > o.latest.Load() {
		o.latest.Store(h.Clock)
	}
	last := o.rp.lastClock.Load()
	fresh := h.Clock > last
	var out []*Subscriber
	var msgs []Message
	zc := 0
	if fresh {
		o.rp.lastClock.Store(h.Clock)
		hdr := o.header(h)
		if last != 0 || o.rp.baselined.Load() {
			hdr.Dropped = h.Clock - last - 1
		}
		sum := checksum{h: h, view: view}
		for _, s := range subs {
			switch {
			case s.opts.ZeroCopy:
				if s.accepts(o.rp, h.ID) {
					zc++
				}
			case !s.typeOK(o.rp):
				s.mismatched.Add(1)
			case !s.idOK(h.ID), initial && s.opts.OnlyNew:
			case s.opts.VerifyChecksum && !sum.ok():
				if s.claim(h.Publisher, h.Clock) {
					s.badChecksum(h)
				}
			default:
				m := Message{Header: hdr, Data: s.buffer(len(view))}
				copy(m.Data, view)
				out = append(out, s)
				msgs = append(msgs, m)
			}
		}
	}
	_ = o.mtx.RUnlock()

	ackMode := h.Options&memfile.OptAck != 0
	for i, s := range out {
		s.deliver(msgs[i], ackMode, o.rp.stop)
	}
	if zc > 0 {
		for _, s := range subs {
			if s.opts.ZeroCopy {
				signal(s.notify)
			}
		}
	}
	if !ackMode {
		return fresh
	}
	if zc > 0 && !initial {
		o.awaitZeroCopy(subs, h.ID, h.Clock, time.Duration(h.AckTimeoutMs)*time.Millisecond)
	}
	if o.ack.Value() < h.Clock {
		o.ack.StoreValue(h.Clock)
	}
	o.ack.Set()
	return fresh
}

// awaitZeroCopy waits until every zero-copy subscriber that takes the
// message (id) consumed clock or moved past it, bounded by the publisher's
// ack timeout.
func (o *observer) awaitZeroCopy(subs []*Subscriber, id int64, clock uint64, timeout time.Duration) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		done := true
		for _, s := range subs {
			if s.opts.ZeroCopy && s.accepts(o.rp, id) && s.consumedClock(o.rp.id) < clock && !s.isClosed() {
				done = false
			}
		}
		if done {
			return
		}
		select {
		case <-o.consumed:
		case <-t.C:
			return
		case <-o.rp.stop:
			return
		}
	}
}

func (o *observer) header(h memfile.Header) Header {
	return Header{
		Publisher: h.Publisher, ID: h.ID, Clock: h.Clock, Time: time.Unix(0, h.Time),
		Size: int(h.DataSize), Hash: h.Hash,
		AckTimeout: time.Duration(h.AckTimeoutMs) * time.Millisecond,
		Generation: o.mf.Generation(),
	}
}

// checksum verifies a message's CRC-32C at most once, for the subscribers
// that ask for it.
type checksum struct {
	h            memfile.Header
	view         []byte
	done, result bool
}

func (c *checksum) ok() bool {
	if c.h.Options&memfile.OptChecksum == 0 {
		return true // the publisher sends none
	}
	if !c.done {
		c.done, c.result = true, crc32.Checksum(c.view, castagnoli) == uint32(c.h.Hash)
	}
	return c.result
}
