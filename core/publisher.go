package core

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmfs/shmfs/core/event"
	"github.com/shmfs/shmfs/core/memfile"
	"github.com/shmfs/shmfs/core/mutex"
	"github.com/shmfs/shmfs/core/registration"
	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
)

// Publisher sends messages on one topic. It is safe for concurrent use;
// concurrent sends are serialized.
type Publisher struct {
	node    *Node
	ownNode bool
	topic   string
	id      uint64
	opts    PublisherOptions
	created time.Time
	bufs    []*buffer

	// sendMu serializes sends; it guards next, clock and ready.
	sendMu sync.Mutex
	next   int
	clock  uint64
	ready  bool

	// connMu guards conns and the flags of each subConn.
	connMu sync.Mutex
	conns  map[uint64]*subConn // by subscriber process instance
	// active lists the connections that are active and not dead; rebuilt
	// under connMu whenever they change, read by Send without locks.
	active atomic.Pointer[[]*subConn]

	sent, ackTimeouts, grows atomic.Uint64
	closed                   atomic.Bool
}

// buffer is one memory file of a publisher with its mutex.
type buffer struct {
	name string
	mf   *memfile.File
	mtx  *mutex.Mutex
	gen  uint64 // last generation seen; guarded by Publisher.sendMu
}

// subConn is the publisher's side of one subscriber process: a snd/ack
// event pair per buffer.
type subConn struct {
	inst    uint64
	who     proc.Identity
	snd     []*event.Event
	ack     []*event.Event
	active  bool // the process currently subscribes to the topic
	lagging bool // timed out on an ack; not waited for until it catches up
	dead    bool // process died: never waited for again
}

// PublisherStats are a publisher's counters.
type PublisherStats struct {
	// Sent counts messages published.
	Sent uint64
	// AckTimeouts counts subscriber acknowledgements that timed out.
	AckTimeouts uint64
	// Grows counts memory-file growths.
	Grows uint64
	// Subscribers counts subscriber processes currently connected.
	Subscribers int
}

// NewPublisher creates a publisher on topic in the domain of o.Config.
func NewPublisher(topic string, o *PublisherOptions) (*Publisher, error) {
	var cfg Config
	if o != nil {
		cfg = o.Config
	}
	return withOwnNode(cfg, func(n *Node) (*Publisher, error) { return n.NewPublisher(topic, o) },
		func(p *Publisher) { p.ownNode = true })
}

// NewPublisher creates a publisher on topic in the node's domain. It creates
// its memory files at once and announces itself; its first Send waits
// (boundedly, see PublisherOptions.DiscoveryWait and ConnectTimeout) until
// the subscribers that already run are connected.
func (n *Node) NewPublisher(topic string, o *PublisherOptions) (*Publisher, error) {
	if err := registration.CheckTopic(topic); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidTopic, err)
	}
	opts, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	for _, e := range n.agent.Topic(topic) {
		if e.Kind == registration.KindPublisher && e.Type != opts.Type {
			return nil, fmt.Errorf("%w: topic %q already has type %q (publisher pid %d), cannot publish %q",
				ErrTypeMismatch, topic, e.Type, e.PID, opts.Type)
		}
	}
	p := &Publisher{
		node: n, topic: topic, id: proc.RandomID(), opts: opts,
		created: time.Now(), conns: map[uint64]*subConn{},
	}
	mo := memfile.Options{Mode: opts.Mode, MinSize: opts.MinSize, Reserve: opts.Reserve, MaxSize: opts.MaxMessageSize}
	for i := 0; i < opts.BufferCount; i++ {
		name := shmname.Object(n.cfg.Domain, proc.RandomID())
		mf, err := memfile.Create(name, 0, mo)
		if err != nil {
			p.destroyBuffers()
			return nil, fmt.Errorf("shmfs: publisher %q: %w", topic, err)
		}
		mtx, err := mutex.Create(name+"_mtx", mutex.Options{Mode: opts.Mode})
		if err != nil {
			mf.Destroy()
			p.destroyBuffers()
			return nil, fmt.Errorf("shmfs: publisher %q: %w", topic, err)
		}
		p.bufs = append(p.bufs, &buffer{name: name, mf: mf, mtx: mtx, gen: mf.Generation()})
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		p.destroyBuffers()
		return nil, ErrClosed
	}
	n.pubs[p.id] = p
	n.mu.Unlock()
	e := p.entity()
	e.Flags |= registration.FlagQuery // ask running subscribers to answer at once
	if err := n.agent.Register(e); err != nil {
		p.close(true)
		return nil, fmt.Errorf("shmfs: publisher %q: register: %w", topic, err)
	}
	n.reconcile(topic)
	return p, nil
}

func (p *Publisher) entity() registration.Entity {
	files := make([]string, len(p.bufs))
	for i, b := range p.bufs {
		files[i] = b.name
	}
	return registration.Entity{
		Kind: registration.KindPublisher, ID: p.id, Topic: p.topic, Type: p.opts.Type,
		MemFiles: files, BufferCount: uint32(len(p.bufs)),
		Sent: p.sent.Load(), AckTimeouts: p.ackTimeouts.Load(),
	}
}

func (p *Publisher) announceCounters() {
	if !p.closed.Load() {
		_ = p.node.agent.Update(p.entity())
	}
}

// Topic returns the topic name.
func (p *Publisher) Topic() string { return p.topic }

// ID returns the publisher's entity id (Header.Publisher at subscribers).
func (p *Publisher) ID() uint64 { return p.id }

// Stats returns the publisher's counters.
func (p *Publisher) Stats() PublisherStats {
	s := PublisherStats{Sent: p.sent.Load(), AckTimeouts: p.ackTimeouts.Load(), Grows: p.grows.Load()}
	p.connMu.Lock()
	for _, c := range p.conns {
		if c.active && !c.dead && c.attached(0) {
			s.Subscribers++
		}
	}
	p.connMu.Unlock()
	return s
}

// Send publishes data as one message.
func (p *Publisher) Send(ctx context.Context, data []byte) error {
	return p.send(ctx, 0, len(data), data, nil)
}

// SendID publishes data as one message carrying the application id.
func (p *Publisher) SendID(ctx context.Context, id int64, data []byte) error {
	return p.send(ctx, id, len(data), data, nil)
}

// SendFunc publishes one message of size bytes that fill writes in place,
// straight into shared memory (zero copy). buf is valid only during fill; if
// fill returns an error nothing is published.
func (p *Publisher) SendFunc(ctx context.Context, size int, fill func(buf []byte) error) error {
	if fill == nil {
		return fmt.Errorf("%w: nil fill function", ErrInvalidOption)
	}
	return p.send(ctx, 0, size, nil, fill)
}

// Write publishes b as one message (io.Writer). It blocks at most for the
// lock and ack timeouts.
func (p *Publisher) Write(b []byte) (int, error) {
	if err := p.Send(context.Background(), b); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (p *Publisher) send(ctx context.Context, id int64, size int, data []byte, fill func([]byte) error) error {
	if p.closed.Load() {
		return ErrClosed
	}
	if size < 0 || size > p.opts.MaxMessageSize {
		return fmt.Errorf("%w: %d bytes (maximum %d)", ErrTooLarge, size, p.opts.MaxMessageSize)
	}
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	if p.closed.Load() { // closed while this Send waited for sendMu
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !p.ready {
		if err := p.awaitSubscribers(ctx); err != nil {
			return err
		}
		p.ready = true
	}
	idx := p.next
	p.next = (p.next + 1) % len(p.bufs)
	b := p.bufs[idx]

	timeout := p.opts.LockTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	clock, err := p.writeLocked(b, timeout, id, size, data, fill)
	if err != nil {
		return err
	}
	p.sent.Add(1)

	conns := p.activeConns()
	for _, c := range conns {
		c.snd[idx].Set()
	}
	if p.opts.AckTimeout > 0 {
		return p.awaitAcks(ctx, idx, clock, conns)
	}
	return nil
}

// writeLocked takes buffer b's mutex, writes the message and unlocks, also
// when fill panics: a cross-process lock left held by a live process would
// stall every reader and the next Send until their timeouts.
func (p *Publisher) writeLocked(b *buffer, timeout time.Duration, id int64, size int, data []byte, fill func([]byte) error) (clock uint64, err error) {
	// ErrOwnerDied (the last writer died mid-message: we rewrite it whole)
	// and ErrReaderDied (a reader died holding it) leave the lock held.
	if err := b.mtx.Lock(timeout); err != nil && !errors.Is(err, mutex.ErrOwnerDied) && !errors.Is(err, mutex.ErrReaderDied) {
		if errors.Is(err, mutex.ErrTimeout) {
			return 0, fmt.Errorf("%w: %s: %w", ErrLockTimeout, b.name, err)
		}
		return 0, fmt.Errorf("shmfs: lock %s: %w", b.name, err)
	}
	defer func() {
		if uerr := b.mtx.Unlock(); err == nil && uerr != nil {
			err = fmt.Errorf("shmfs: unlock %s: %w", b.name, uerr)
		}
	}()
	return p.write(b, id, size, data, fill)
}

// write fills buffer b under its lock and commits the header.
func (p *Publisher) write(b *buffer, id int64, size int, data []byte, fill func([]byte) error) (uint64, error) {
	payload, err := b.mf.Reserve(size)
	if err != nil {
		if errors.Is(err, memfile.ErrTooLarge) {
			return 0, fmt.Errorf("%w: %w", ErrTooLarge, err)
		}
		return 0, fmt.Errorf("shmfs: reserve %d bytes in %s: %w", size, b.name, err)
	}
	if g := b.mf.Generation(); g != b.gen {
		b.gen = g
		p.grows.Add(1)
	}
	if fill != nil {
		if err := fill(payload); err != nil {
			// The old message's payload may be overwritten: commit an empty
			// header (clock 0) so that no reader takes it for a message.
			_ = b.mf.Commit(memfile.Header{Publisher: p.id})
			return 0, err
		}
	} else {
		copy(payload, data)
	}
	p.clock++
	h := memfile.Header{
		DataSize: uint64(size), ID: id, Clock: p.clock, Time: time.Now().UnixNano(),
		Publisher: p.id, AckTimeoutMs: uint32(p.opts.AckTimeout / time.Millisecond),
	}
	if p.opts.Checksum {
		h.Hash = uint64(crc32.Checksum(payload, castagnoli))
		h.Options |= memfile.OptChecksum
	}
	if p.opts.AckTimeout > 0 {
		h.Options |= memfile.OptAck
		if h.AckTimeoutMs == 0 {
			h.AckTimeoutMs = 1
		}
	}
	if err := b.mf.Commit(h); err != nil {
		return 0, fmt.Errorf("shmfs: commit to %s: %w", b.name, err)
	}
	return p.clock, nil
}

func (p *Publisher) activeConns() []*subConn {
	if l := p.active.Load(); l != nil {
		return *l
	}
	return nil
}

// connsChanged rebuilds the active list. Caller holds connMu.
func (p *Publisher) connsChanged() {
	list := make([]*subConn, 0, len(p.conns))
	for _, c := range p.conns {
		if c.active && !c.dead {
			list = append(list, c)
		}
	}
	p.active.Store(&list)
}

// castagnoli is the CRC-32C table (SSE4.2/ARMv8 instructions where present).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ackSlice is how often an ack wait checks that the subscriber still lives:
// a subscriber that dies leaves the wait within this time, not after the
// ack timeout.
const ackSlice = 10 * time.Millisecond

// awaitAcks waits, under one shared deadline, until every connected
// subscriber process acknowledged clock on buffer idx.
func (p *Publisher) awaitAcks(ctx context.Context, idx int, clock uint64, conns []*subConn) error {
	deadline := time.Now().Add(p.opts.AckTimeout)
	var late []string
	for _, c := range conns {
		ack := c.ack[idx]
		if !c.attached(idx) {
			continue // not yet reading; it gets the latest message on attach
		}
		if c.lagging {
			if c.acked() < clock-1 {
				continue // still behind from an earlier timeout: skipped
			}
			c.lagging = false
		}
		for ack.Value() < clock {
			if err := ctx.Err(); err != nil {
				return err
			}
			if p.closed.Load() {
				return ErrClosed
			}
			if !c.who.Alive() {
				p.markDead(c)
				break
			}
			rem := time.Until(deadline)
			if rem <= 0 {
				c.lagging = true
				p.ackTimeouts.Add(1)
				late = append(late, fmt.Sprintf("pid %d", c.who.PID))
				break
			}
			seq := ack.Seq()
			if ack.Value() >= clock {
				break
			}
			_, _ = ack.Wait(seq, min(rem, ackSlice))
		}
	}
	if len(late) > 0 {
		return fmt.Errorf("%w: topic %q clock %d: subscriber %v", ErrAckTimeout, p.topic, clock, late)
	}
	return nil
}

// acked returns the newest clock the subscriber process acknowledged on any
// buffer (each buffer's ack event holds the clocks sent through it).
func (c *subConn) acked() uint64 {
	var m uint64
	for _, a := range c.ack {
		m = max(m, a.Value())
	}
	return m
}

// attached reports whether the subscriber process has opened the event pair
// of buffer idx and waits on it.
func (c *subConn) attached(idx int) bool {
	pid, _ := c.ack[idx].Attached()
	return pid != 0
}

func (p *Publisher) markDead(c *subConn) {
	p.connMu.Lock()
	c.dead = true
	p.connsChanged()
	p.connMu.Unlock()
}

// awaitSubscribers runs before the first Send: it gives registration time to
// learn of the subscribers that already run, then waits until each of them
// has attached to every buffer, so that none misses the first message.
func (p *Publisher) awaitSubscribers(ctx context.Context) error {
	if w := p.opts.DiscoveryWait; w > 0 {
		// An agent that has listened for a full refresh period before this
		// publisher was created has heard every peer already.
		if p.created.Sub(p.node.agent.Started()) < p.node.cfg.Refresh {
			if err := sleepCtx(ctx, time.Until(p.created.Add(w))); err != nil {
				return err
			}
		}
	}
	p.node.reconcile(p.topic)
	if p.opts.ConnectTimeout <= 0 {
		return nil
	}
	deadline := time.Now().Add(p.opts.ConnectTimeout)
	for wait := 500 * time.Microsecond; ; wait = min(2*wait, 10*time.Millisecond) {
		if p.allAttached() || time.Now().After(deadline) {
			return nil
		}
		if err := sleepCtx(ctx, wait); err != nil {
			return err
		}
		if p.closed.Load() {
			return ErrClosed
		}
		p.node.reconcile(p.topic)
	}
}

func (p *Publisher) allAttached() bool {
	for _, c := range p.activeConns() {
		for i := range c.ack {
			if !c.attached(i) && c.who.Alive() {
				return false
			}
		}
	}
	return true
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// syncConnections makes the set of active connections equal to the
// subscriber processes in want. Event pairs of a process that stopped
// subscribing are kept (it may subscribe again and reuse them) until the
// process dies or the publisher closes.
func (p *Publisher) syncConnections(want map[uint64]registration.Entity) {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	// Checked under connMu: close sets closed before it takes connMu to
	// destroy the connections, so none is created after that.
	if p.closed.Load() {
		return
	}
	for inst, c := range p.conns {
		_, ok := want[inst]
		c.active = ok
		if !ok && !c.who.Alive() {
			c.destroy()
			delete(p.conns, inst)
		}
	}
	for inst, e := range want {
		if p.conns[inst] != nil {
			continue
		}
		c, err := p.connect(inst, proc.Identity{PID: e.PID, StartTime: e.StartTime})
		if err != nil {
			continue // retried on the next change or refresh
		}
		c.active = true
		p.conns[inst] = c
	}
	p.connsChanged()
}

// connect creates (or opens, if the subscriber was first) the event pairs
// of subscriber process inst for every buffer.
func (p *Publisher) connect(inst uint64, who proc.Identity) (*subConn, error) {
	c := &subConn{inst: inst, who: who}
	eo := event.Options{Mode: p.opts.Mode}
	for _, b := range p.bufs {
		snd, _, err := event.CreateOrOpen(event.SndName(b.name, inst), eo)
		if err != nil {
			c.destroy()
			return nil, err
		}
		c.snd = append(c.snd, snd)
		ack, _, err := event.CreateOrOpen(event.AckName(b.name, inst), eo)
		if err != nil {
			c.destroy()
			return nil, err
		}
		c.ack = append(c.ack, ack)
	}
	return c, nil
}

func (c *subConn) destroy() {
	for _, e := range c.snd {
		_ = e.Destroy()
	}
	for _, e := range c.ack {
		_ = e.Destroy()
	}
	// The slices stay: a Send may still hold c. Calls on a destroyed event
	// are harmless no-ops (it reports not attached, value 0, ErrClosed).
}

// Close unregisters the publisher and removes its shared memory. Subscribers
// that still map a memory file keep reading what is there.
func (p *Publisher) Close() error { return p.close(true) }

func (p *Publisher) close(releaseNode bool) error {
	if p.closed.Swap(true) {
		return nil
	}
	_ = p.node.agent.Unregister(p.id)
	p.node.mu.Lock()
	delete(p.node.pubs, p.id)
	p.node.mu.Unlock()
	p.sendMu.Lock() // wait for a Send in progress
	p.connMu.Lock()
	for inst, c := range p.conns {
		c.destroy()
		delete(p.conns, inst)
	}
	p.connsChanged()
	p.connMu.Unlock()
	p.destroyBuffers()
	p.sendMu.Unlock()
	if releaseNode && p.ownNode {
		return p.node.Close()
	}
	return nil
}

func (p *Publisher) destroyBuffers() {
	// p.bufs itself stays: it never changes after NewPublisher, so the
	// registration goroutine may read the names without a lock.
	for _, b := range p.bufs {
		_ = b.mtx.Destroy()
		_ = b.mf.Destroy()
	}
}
