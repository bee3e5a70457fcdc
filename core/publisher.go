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
	"github.com/shmfs/shmfs/core/registration"
	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
)

// Publisher sends messages on one topic. It is safe for concurrent use;
// concurrent sends are serialized.
type Publisher struct {
	node    *Node
	topic   string
	id      uint64
	opts    PublisherOptions
	created time.Time
	mf      *memfile.File

	// sendMu serializes sends and guards w and ready, and the lagging state
	// of every subscriber process (subProc.lagging, .catchUp).
	sendMu sync.Mutex
	w      *memfile.Writer
	ready  bool

	// procsMu guards procs and denied; the active list is rebuilt under
	// it whenever procs changes and read by Send without locks.
	procsMu sync.Mutex
	procs   map[uint64]*subProc // by subscriber process instance
	// denied are the subscriber processes known from registration that
	// may not read the memory file (another user, not in its group): not
	// linked, not waited for. By instance.
	denied map[uint64]*PermissionError
	active atomic.Pointer[[]*subProc]

	sent, ackTimeouts, grows, lost atomic.Uint64
	closed                         atomic.Bool
}

// subProc is the publisher's side of one subscriber process.
type subProc struct {
	inst     uint64
	bellName string
	*link
	// lagging: the process held the window full past the ack timeout; it
	// is not waited for until it acknowledges catchUp. Guarded by sendMu.
	lagging bool
	catchUp uint64
	// known is the last acknowledgement read from the ack event: while it
	// suffices, Send does not read the event's cache line, which the
	// subscriber process writes for every message. Guarded by sendMu.
	known uint64
}

// PublisherStats are a publisher's counters.
type PublisherStats struct {
	// Sent counts messages published.
	Sent uint64
	// AckTimeouts counts the times a subscriber process held the window full
	// past the ack timeout.
	AckTimeouts uint64
	// Grows counts memory-file growths.
	Grows uint64
	// Subscribers counts subscriber processes currently connected.
	Subscribers int
	// Lost sums SendOptions.Lost: messages a forwarder (bridge, gateway)
	// lost upstream before publishing here. Registration announces it as
	// the publisher's Dropped count ('shmfs info', 'ls --json', header).
	Lost uint64
}

// SendOptions carry the optional fields of one message (Publisher.SendWith).
type SendOptions struct {
	// ID is the application's message id (Header.ID); default 0.
	ID int64
	// Lost tells subscribers that this many messages were lost upstream
	// right before this one (a bridge or gateway that missed them): they
	// add it to Header.Dropped.
	Lost uint64
}

// NewPublisher creates a publisher on topic in the node's domain. It creates
// its memory file at once and announces itself. When the node is young (it
// has listened for less than a refresh period) it first waits up to
// DiscoveryWait for the running processes to answer its query, so that a
// publisher of another type is reported (ErrTypeMismatch) whenever one runs.
// Its first Send waits (boundedly, see ConnectTimeout) until the subscribers
// that already run are connected.
func (n *Node) NewPublisher(topic string, o *PublisherOptions) (*Publisher, error) {
	if err := registration.CheckTopic(topic); err != nil {
		return nil, invalidTopic(err)
	}
	opts, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Publisher{
		node: n, topic: topic, id: proc.RandomID(), opts: opts,
		created: time.Now(), procs: map[uint64]*subProc{}, denied: map[uint64]*PermissionError{},
	}
	mo := memfile.Options{
		Mode: opts.Mode, Slots: opts.Window, MinSize: opts.MinSize, Reserve: opts.Reserve,
		MaxMessage: opts.MaxMessageSize, MaxBuffer: opts.MaxBuffer, Publisher: p.id, Topic: topic,
		Checksummed: opts.Checksum,
	}
	name := shmname.Object(n.cfg.Domain, proc.RandomID())
	if p.mf, err = memfile.Create(name, mo); err != nil {
		return nil, shmError(fmt.Sprintf("publisher %q: create memory file", topic), err)
	}
	if p.w, err = memfile.NewWriter(p.mf, mo); err != nil {
		p.mf.Destroy()
		return nil, shmError(fmt.Sprintf("publisher %q", topic), err)
	}
	if err := n.addPublisher(p); err != nil {
		p.mf.Destroy()
		return nil, err
	}
	e := p.entity()
	e.Flags |= registration.FlagQuery // ask running processes to answer at once
	if err := n.agent.Register(e); err != nil {
		p.close()
		return nil, fmt.Errorf("%w: publisher %q: %w", ErrRegistration, topic, err)
	}
	if err := n.discover(context.Background(), p.created, opts.DiscoveryWait); err != nil {
		p.close()
		return nil, err
	}
	for _, e := range n.agent.Topic(topic) {
		if e.Kind == registration.KindPublisher && e.ID != p.id && e.Type != opts.Type {
			p.close()
			return nil, fmt.Errorf("%w: topic %q already has type %q (publisher pid %d), cannot publish %q",
				ErrTypeMismatch, topic, e.Type, e.PID, opts.Type)
		}
	}
	n.reconcile(topic)
	return p, nil
}

func (p *Publisher) entity() registration.Entity {
	return registration.Entity{
		Kind: registration.KindPublisher, ID: p.id, Topic: p.topic, Type: p.opts.Type,
		MemFiles: []string{p.mf.Name()}, BufferCount: 1, Origin: p.opts.Origin,
		Sent: p.sent.Load(), AckTimeouts: p.ackTimeouts.Load(), Dropped: p.lost.Load(),
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
	s := PublisherStats{Sent: p.sent.Load(), AckTimeouts: p.ackTimeouts.Load(), Grows: p.grows.Load(), Lost: p.lost.Load()}
	for _, sp := range p.activeProcs() {
		if sp.attached() {
			s.Subscribers++
		}
	}
	return s
}

// Send publishes data as one message.
func (p *Publisher) Send(ctx context.Context, data []byte) error {
	return p.send(ctx, SendOptions{}, len(data), data, nil)
}

// SendWith publishes data as one message with the fields of o.
func (p *Publisher) SendWith(ctx context.Context, data []byte, o SendOptions) error {
	return p.send(ctx, o, len(data), data, nil)
}

// SendFunc publishes one message of size bytes that fill writes in place,
// straight into shared memory (zero copy). buf is valid only during fill; if
// fill returns an error nothing is published.
func (p *Publisher) SendFunc(ctx context.Context, size int, fill func(buf []byte) error) error {
	if fill == nil {
		return fmt.Errorf("%w: nil fill function", ErrInvalidOption)
	}
	return p.send(ctx, SendOptions{}, size, nil, fill)
}

// Write publishes b as one message (io.Writer). In ack mode it blocks at
// most for the ack timeout.
func (p *Publisher) Write(b []byte) (int, error) {
	if err := p.Send(context.Background(), b); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (p *Publisher) send(ctx context.Context, o SendOptions, size int, data []byte, fill func([]byte) error) (err error) {
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
	gen := p.mf.Generation()
	overwrites, err := p.w.Prepare(size)
	if err != nil {
		if errors.Is(err, memfile.ErrTooLarge) {
			return fmt.Errorf("%w: %w", ErrTooLarge, err)
		}
		return shmError(fmt.Sprintf("publisher %q: make room for %d bytes", p.topic, size), err)
	}
	if g := p.mf.Generation(); g != gen {
		p.grows.Add(g - gen)
	}
	procs := p.activeProcs()
	var ackErr error
	if p.opts.AckTimeout > 0 && overwrites != 0 {
		// Never overwrite what a subscriber process has not taken. One
		// that has to be waited for is waited for until it took half of
		// what is outstanding, as for the window below: once the data
		// area, not the slot count, limits the window (large messages),
		// a subscriber as fast as the publisher then wakes it once per
		// half backlog, not for every message.
		target := overwrites + (p.w.Clock()-overwrites)/2
		if ackErr = p.awaitAcks(ctx, overwrites, target, procs); ackErr != nil && !errors.Is(ackErr, ErrAckTimeout) {
			return ackErr
		}
	}
	clock, err := p.write(o, size, data, fill)
	if err != nil {
		return err
	}
	p.sent.Add(1)
	p.lost.Add(o.Lost)
	for _, sp := range procs {
		sp.ring()
	}
	if p.opts.AckTimeout > 0 && ackErr == nil {
		// The window: at most W messages unacknowledged (W = 1: this one
		// must be acknowledged, eCAL's handshake). A publisher that has
		// to wait waits until half the window is free, so that a subscriber
		// just as fast wakes it once per W/2 messages, not for every one.
		if w := uint64(p.opts.Window); clock >= w {
			ackErr = p.awaitAcks(ctx, clock-w+1, clock-w/2, procs)
		}
	}
	return ackErr
}

// write puts the message into the memory file. A fill function that fails
// or panics publishes nothing.
func (p *Publisher) write(o SendOptions, size int, data []byte, fill func([]byte) error) (uint64, error) {
	payload, err := p.w.Begin(size)
	if err != nil {
		return 0, shmError(fmt.Sprintf("publisher %q", p.topic), err)
	}
	if fill != nil {
		committed := false
		defer func() {
			if !committed {
				p.w.Abort()
			}
		}()
		if err := fill(payload); err != nil {
			return 0, err
		}
		committed = true
	} else {
		copy(payload, data)
	}
	h := memfile.Header{
		Size: uint64(size), ID: o.ID, Time: time.Now().UnixNano(), Lost: o.Lost,
		AckTimeoutMs: uint32(min(p.opts.AckTimeout/time.Millisecond, 1<<31)),
	}
	if p.opts.Checksum {
		// Over the caller's bytes when there are some (Send): then bytes
		// that change in shared memory while they are copied in are
		// caught too. SendFunc's payload exists only in shared memory.
		sum := payload
		if fill == nil {
			sum = data
		}
		h.Hash = uint64(crc32.Checksum(sum, castagnoli))
		h.Options |= memfile.OptChecksum
	}
	if p.opts.AckTimeout > 0 {
		h.Options |= memfile.OptAck
		h.AckTimeoutMs = max(h.AckTimeoutMs, 1)
	}
	clock, err := p.w.Commit(h)
	if err != nil {
		return 0, shmError(fmt.Sprintf("publisher %q", p.topic), err)
	}
	return clock, nil
}

// castagnoli is the CRC-32C table (SSE4.2/ARMv8 instructions where present).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// awaitAcks waits, under one deadline (the ack timeout), until every
// attached subscriber process that is not lagging and has not acknowledged
// need acknowledged target (>= need). The
// wait is posted in the memory file (and the bells rung), so that a
// subscriber process whose other subscribers keep up can set a stalled one
// aside in time (see topicReader.checkHeld). A process that times out is
// marked lagging and skipped until it acknowledges target; the error then
// wraps ErrAckTimeout.
func (p *Publisher) awaitAcks(ctx context.Context, need, target uint64, procs []*subProc) error {
	var deadline time.Time
	var late []string
	limit := p.w.Clock() // no acknowledgement can go beyond what was sent
	for _, sp := range procs {
		if sp.lagging {
			if sp.acked(limit) < sp.catchUp {
				continue
			}
			sp.lagging = false
		}
		if sp.known >= need {
			continue
		}
		if sp.known = sp.acked(limit); sp.known >= need || !sp.attached() {
			continue
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(p.opts.AckTimeout)
			p.mf.SetWaiting(target)
			defer p.mf.SetWaiting(0)
			for _, q := range procs {
				q.ring()
			}
		}
		err := sp.awaitAck(ctx, target, limit, deadline, p.closed.Load)
		sp.known = sp.acked(limit)
		switch {
		case err == nil, errors.Is(err, errLinkGone):
		case errors.Is(err, ErrAckTimeout):
			sp.lagging, sp.catchUp = true, need
			p.ackTimeouts.Add(1)
			late = append(late, sp.peer.String())
		default:
			return err
		}
	}
	if len(late) > 0 {
		return fmt.Errorf("%w: topic %q clock %d: subscriber process %v lagging", ErrAckTimeout, p.topic, target, late)
	}
	return nil
}

// Flush waits until every subscriber process acknowledged every message
// sent, at most the ack timeout (ErrAckTimeout) or until ctx is done. It
// returns at once without ack mode.
func (p *Publisher) Flush(ctx context.Context) error {
	if p.opts.AckTimeout <= 0 {
		return nil
	}
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	if p.closed.Load() {
		return ErrClosed
	}
	if c := p.w.Clock(); c > 0 {
		return p.awaitAcks(ctx, c, c, p.activeProcs())
	}
	return nil
}

// WouldWait reports whether a Send now would wait (ack mode): some
// subscriber process that is neither lagging nor detached has not yet
// acknowledged what the window needs before the next message, or another
// Send is in progress. It assumes a message small enough for the window
// (a large one may also wait for data-area space). False without ack mode
// and after Close (Send then fails at once). Event loops use it to tell
// writable from not (the mount's poll).
func (p *Publisher) WouldWait() bool {
	if p.opts.AckTimeout <= 0 || p.closed.Load() {
		return false
	}
	if !p.sendMu.TryLock() {
		return true
	}
	defer p.sendMu.Unlock()
	next, w := p.w.Clock()+1, uint64(p.opts.Window)
	if next < w {
		return false
	}
	need := next - w + 1 // what Send must see acknowledged after writing next
	limit := next - 1    // no acknowledgement can go beyond what was sent
	for _, sp := range p.activeProcs() {
		if sp.lagging && sp.acked(limit) < sp.catchUp {
			continue
		}
		if sp.attached() && sp.acked(limit) < need {
			return true
		}
	}
	return false
}

func (p *Publisher) activeProcs() []*subProc {
	if l := p.active.Load(); l != nil {
		return *l
	}
	return nil
}

// procsChanged rebuilds the active list. Caller holds procsMu.
func (p *Publisher) procsChanged() {
	list := make([]*subProc, 0, len(p.procs))
	for _, sp := range p.procs {
		list = append(list, sp)
	}
	p.active.Store(&list)
}

// awaitSubscribers runs before the first Send: it gives registration time to
// learn of the subscribers that already run, then waits until each of them
// has attached, so that none misses the first message.
func (p *Publisher) awaitSubscribers(ctx context.Context) error {
	if err := p.node.discover(ctx, p.created, p.opts.DiscoveryWait); err != nil {
		return err
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

// allAttached reports whether every local subscriber process that
// registration knows for the topic is linked: it made its ack event, so it
// reads this publisher from a cursor that predates any message sent now
// (or it takes none of them: the event is not attached). Processes that
// may not read the topic are not waited for.
func (p *Publisher) allAttached() bool {
	return len(p.unattached(p.node.subscriberProcs(p.topic), false)) == 0
}

// UnattachedSubscriber is a subscriber process that registration announces
// for a publisher's topic but that is not attached to the publisher.
type UnattachedSubscriber struct {
	PID int32
	UID uint32 // the process's uid, from /proc
	// Err is a *PermissionError when the process may not read the topic
	// (another user, not in the memory file's group); nil when it could
	// but did not attach (yet).
	Err error
}

// Unattached returns the live local subscriber processes of the topic that
// registration knows but that are not attached to this publisher: those
// that may not read it, and those that did not attach (a process that
// never managed to open the memory file, or that is just starting).
func (p *Publisher) Unattached() []UnattachedSubscriber {
	p.node.reconcile(p.topic)
	return p.unattached(p.node.subscriberProcs(p.topic), true)
}

// unattached lists the processes of want (subscriberProcs) that are alive
// and not linked; with denied, also those that may not read the topic.
func (p *Publisher) unattached(want map[uint64]registration.Entity, denied bool) []UnattachedSubscriber {
	p.procsMu.Lock()
	defer p.procsMu.Unlock()
	var out []UnattachedSubscriber
	for inst, e := range want {
		if p.procs[inst] != nil || !(proc.Identity{PID: e.PID, StartTime: e.StartTime}).Alive() {
			continue
		}
		u := UnattachedSubscriber{PID: e.PID, UID: e.UID}
		if pe := p.denied[inst]; pe != nil {
			if !denied {
				continue
			}
			u.Err = pe
		}
		out = append(out, u)
	}
	return out
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

// syncProcs links the publisher to the subscriber processes in want (one
// entity per process: its bell is the entity's first memory-file name) and
// drops the links of processes that are gone: dead, or their bell removed
// (they stopped subscribing). A process that merely vanished from
// registration keeps its link while its bell exists and it lives: a forged
// unregistration cannot cut a subscriber off.
func (p *Publisher) syncProcs(want map[uint64]registration.Entity) {
	p.procsMu.Lock()
	defer p.procsMu.Unlock()
	// Checked under procsMu: close sets closed before it takes procsMu to
	// close the links, so none is created after that.
	if p.closed.Load() {
		return
	}
	changed := false
	for inst, sp := range p.procs {
		e, ok := want[inst]
		if ok && len(e.MemFiles) > 0 && e.MemFiles[0] == sp.bellName {
			continue
		}
		if !ok && sp.peer.Alive() && sp.bell.Linked() {
			continue // registration lost it (or was forged); shared memory says it is there
		}
		sp.close()
		delete(p.procs, inst)
		changed = true
	}
	for inst, e := range want {
		if p.procs[inst] != nil || len(e.MemFiles) == 0 {
			continue
		}
		who := proc.Identity{PID: e.PID, StartTime: e.StartTime}
		owner, err := p.mayLink(inst, e)
		if err != nil {
			continue
		}
		l, err := openLink(e.MemFiles[0], event.AckName(p.mf.Name(), inst), inst, who, owner)
		if err != nil {
			// The ack event appears once the process attached to this
			// publisher: retried on the next change or refresh, and while
			// the first Send waits for subscribers.
			continue
		}
		p.procs[inst] = &subProc{inst: inst, bellName: e.MemFiles[0], link: l}
		changed = true
	}
	for inst := range p.denied {
		if _, ok := want[inst]; !ok {
			delete(p.denied, inst)
		}
	}
	if changed || p.active.Load() == nil {
		p.procsChanged()
	}
}

// mayLink decides whether subscriber process e (instance inst) may read
// the memory file, by its credentials in /proc: it returns the uid its
// objects may be owned by, or the refusal (also recorded in p.denied, for
// Unattached). procsMu held.
func (p *Publisher) mayLink(inst uint64, e registration.Entity) (uint32, error) {
	c, err := proc.ReadCreds(int(e.PID))
	if err != nil {
		return 0, err
	}
	perm := p.mf.Perm()
	if !mayRead(c, perm) {
		pe := &PermissionError{Topic: p.topic, Owner: perm.UID, Mode: perm.Mode, PID: e.PID,
			Why: fmt.Sprintf("subscriber pid %d (uid %d) may not read it", e.PID, c.UIDs[0])}
		p.denied[inst] = pe
		return 0, pe
	}
	delete(p.denied, inst)
	return c.UIDs[3], nil
}

// Close unregisters the publisher and removes its memory file. In ack mode
// it first waits (at most the ack timeout) until every subscriber process
// took every message. Subscribers that still map the file read what is
// left in it.
func (p *Publisher) Close() error {
	if p.closed.Load() {
		return nil
	}
	flushErr := p.Flush(context.Background())
	if err := p.close(); err != nil {
		return err
	}
	if errors.Is(flushErr, ErrAckTimeout) {
		return flushErr
	}
	return nil
}

func (p *Publisher) close() error {
	if p.closed.Swap(true) {
		return nil
	}
	_ = p.node.agent.Unregister(p.id)
	p.node.removePublisher(p)
	p.sendMu.Lock() // wait for a Send in progress
	p.procsMu.Lock()
	for inst, sp := range p.procs {
		sp.close()
		delete(p.procs, inst)
	}
	p.procsChanged()
	p.procsMu.Unlock()
	// Marks the file closed before removing it: subscribers learn from
	// the file itself that the publisher is gone.
	err := p.mf.Destroy()
	p.sendMu.Unlock()
	if err != nil {
		return shmError(fmt.Sprintf("publisher %q: remove memory file", p.topic), err)
	}
	return nil
}
