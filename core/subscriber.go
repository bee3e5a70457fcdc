package core

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmfs/shmfs/core/memfile"
	"github.com/shmfs/shmfs/core/registration"
	"github.com/shmfs/shmfs/internal/proc"
)

// Subscriber receives the messages of every publisher of one topic. It is
// safe for concurrent use; each message goes to one Receive call.
type Subscriber struct {
	node    *Node
	ownNode bool
	topic   string
	id      uint64
	opts    SubscriberOptions
	epoch   uint64 // Node.epoch at creation

	q      *queue        // copy mode
	free   chan []byte   // copy mode: payload buffers to reuse (Release)
	notify chan struct{} // zero-copy mode: an observer saw a new message
	errs   chan error    // problems to report from the next Receive
	closed chan struct{}
	once   sync.Once

	// obs are the observers of the topic's publishers (zero-copy mode reads
	// through them); replaced as a whole, read without locks.
	obs atomic.Pointer[[]*observer]

	// recvMu serializes zero-copy consumption; it guards consumed.
	recvMu   sync.Mutex
	consumed map[uint64]uint64 // publisher id -> last clock consumed
	// deliveredMu guards delivered: publisher id -> newest clock queued
	// (copy mode).
	deliveredMu sync.Mutex
	delivered   map[uint64]uint64
	// consumedShared mirrors consumed for the observers' ack wait.
	consumedMu     sync.Mutex
	consumedShared map[uint64]uint64

	received, dropped, mismatched, checksumErrors atomic.Uint64
}

// SubscriberStats are a subscriber's counters.
type SubscriberStats struct {
	// Received counts messages handed to the application.
	Received uint64
	// Dropped counts messages missed (clock gaps, queue overflow).
	Dropped uint64
	// TypeMismatches counts messages ignored because their publisher's type
	// differs from SubscriberOptions.Type.
	TypeMismatches uint64
	// ChecksumErrors counts messages dropped because their CRC-32C did not
	// match (SubscriberOptions.VerifyChecksum).
	ChecksumErrors uint64
	// Publishers counts publishers this subscriber is connected to.
	Publishers int
}

// NewSubscriber creates a subscriber on topic in the domain of o.Config.
func NewSubscriber(topic string, o *SubscriberOptions) (*Subscriber, error) {
	var cfg Config
	if o != nil {
		cfg = o.Config
	}
	return withOwnNode(cfg, func(n *Node) (*Subscriber, error) { return n.NewSubscriber(topic, o) },
		func(s *Subscriber) { s.ownNode = true })
}

// NewSubscriber creates a subscriber on topic in the node's domain. It
// connects to every publisher of the topic as it appears; a publisher that
// already published gives it its latest message at once.
func (n *Node) NewSubscriber(topic string, o *SubscriberOptions) (*Subscriber, error) {
	if err := registration.CheckTopic(topic); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidTopic, err)
	}
	opts, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if opts.Type != "" {
		for _, e := range n.agent.Topic(topic) {
			if e.Kind == registration.KindPublisher && e.Type != opts.Type {
				return nil, fmt.Errorf("%w: topic %q has type %q (publisher pid %d), subscriber wants %q",
					ErrTypeMismatch, topic, e.Type, e.PID, opts.Type)
			}
		}
	}
	s := &Subscriber{
		node: n, topic: topic, id: proc.RandomID(), opts: opts, epoch: n.epoch.Add(1),
		notify: make(chan struct{}, 1), closed: make(chan struct{}), errs: make(chan error, 8),
		consumed: map[uint64]uint64{}, consumedShared: map[uint64]uint64{}, delivered: map[uint64]uint64{},
	}
	if !opts.ZeroCopy {
		s.q = newQueue(opts.QueueSize)
		s.free = make(chan []byte, freeBuffers)
	}
	obs := n.observerList(topic)
	s.obs.Store(&obs)
	if opts.OnlyNew {
		s.startAfterLatest()
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, ErrClosed
	}
	m := n.subs[topic]
	if m == nil {
		m = map[*Subscriber]struct{}{}
		n.subs[topic] = m
	}
	m[s] = struct{}{}
	n.subscribersChanged(topic)
	n.mu.Unlock()
	if err := n.agent.Register(registration.Entity{
		Kind: registration.KindSubscriber, ID: s.id, Topic: topic, Type: opts.Type,
		Flags: registration.FlagQuery, // running publishers answer at once
	}); err != nil {
		s.close(true)
		return nil, fmt.Errorf("shmfs: subscriber %q: register: %w", topic, err)
	}
	n.reconcile(topic)
	n.topicObserversChanged(topic)
	s.catchUp()
	return s, nil
}

// observerList returns the observers of topic's publishers that have taken
// their baseline.
func (n *Node) observerList(topic string) []*observer {
	var list []*observer
	for _, r := range n.remotesOf(topic) {
		select {
		case <-r.stop:
			continue
		default:
		}
		for _, o := range r.obs {
			if o.based.Load() {
				list = append(list, o)
			}
		}
	}
	return list
}

// topicObserversChanged refreshes the observer list of topic's subscribers.
func (n *Node) topicObserversChanged(topic string) {
	list := n.observerList(topic)
	for _, s := range n.subscribersOf(topic) {
		l := slices.Clone(list)
		s.obs.Store(&l)
		signal(s.notify)
	}
}

// startAfterLatest makes an OnlyNew subscriber start after the newest
// message of every publisher observed now. It runs before the subscriber
// is visible to the observers.
func (s *Subscriber) startAfterLatest() {
	for _, o := range *s.obs.Load() {
		c := o.latest.Load()
		s.consumed[o.rp.id] = max(s.consumed[o.rp.id], c)
		s.consumedShared[o.rp.id] = max(s.consumedShared[o.rp.id], c)
		s.delivered[o.rp.id] = max(s.delivered[o.rp.id], c)
	}
}

// catchUp gives a new copy subscriber the latest message of every publisher
// already observed (a late subscriber gets at least the latest message).
func (s *Subscriber) catchUp() {
	if s.opts.OnlyNew {
		return
	}
	if s.opts.ZeroCopy {
		return // zero-copy reads the latest message by itself
	}
	for _, o := range *s.obs.Load() {
		var m Message
		found := false
		o.withView(func(h memfile.Header, view []byte) {
			// Only the message the observer already handled: newer ones
			// are its to deliver, in order.
			if h.Clock != o.rp.lastClock.Load() || !s.accepts(o.rp, h.ID) {
				return
			}
			if s.opts.VerifyChecksum && !(&checksum{h: h, view: view}).ok() {
				if s.claim(h.Publisher, h.Clock) {
					s.badChecksum(h)
				}
				return
			}
			m = Message{Header: o.header(h), Data: append([]byte{}, view...)}
			found = true
		})
		if found {
			s.deliver(m, false, s.closed)
		}
	}
}

// accepts reports whether messages of publisher r with id are for s. It
// has no side effects; callers count type mismatches where they drop.
func (s *Subscriber) accepts(r *remotePub, id int64) bool {
	return s.typeOK(r) && s.idOK(id)
}

// typeOK reports whether publisher r has the type s asked for (if any).
func (s *Subscriber) typeOK(r *remotePub) bool {
	return s.opts.Type == "" || r.typ == s.opts.Type
}

// idOK applies the id filter.
func (s *Subscriber) idOK(id int64) bool {
	return len(s.opts.IDs) == 0 || slices.Contains(s.opts.IDs, id)
}

// claim records clock as handled for publisher pub (copy mode) and reports
// whether it was new: each message is queued, or counted as bad, once.
func (s *Subscriber) claim(pub, clock uint64) bool {
	s.deliveredMu.Lock()
	defer s.deliveredMu.Unlock()
	if clock <= s.delivered[pub] {
		return false
	}
	s.delivered[pub] = clock
	return true
}

// deliver queues a copied message (copy mode). A message is queued at most
// once, and never after a newer one of the same publisher: the catch-up of
// a new subscriber and the observers' polls may race for the same message,
// so the check and the push are one step under deliveredMu (a push that
// waits for room holds up only deliveries to this same, full, queue).
func (s *Subscriber) deliver(m Message, block bool, stop <-chan struct{}) {
	if s.isClosed() {
		return
	}
	s.deliveredMu.Lock()
	defer s.deliveredMu.Unlock()
	if m.Clock <= s.delivered[m.Publisher] {
		return
	}
	s.delivered[m.Publisher] = m.Clock
	if m.Size > s.opts.MaxMessageSize {
		s.dropped.Add(1)
		return
	}
	s.q.push(m, block, stop, s.closed)
}

// badChecksum counts and reports a message dropped for its checksum.
func (s *Subscriber) badChecksum(h memfile.Header) {
	s.dropped.Add(1)
	s.checksumErrors.Add(1)
	s.report(fmt.Errorf("%w: topic %q publisher %016x clock %d (%d bytes)", ErrChecksum, s.topic, h.Publisher, h.Clock, h.DataSize))
}

// report queues an error for the next Receive call (dropped if 8 are
// already waiting: the first ones name the problem).
func (s *Subscriber) report(err error) {
	select {
	case s.errs <- err:
	default:
	}
}

// pending returns a queued error, if any.
func (s *Subscriber) pending() error {
	select {
	case err := <-s.errs:
		return err
	default:
		return nil
	}
}

func (s *Subscriber) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// Topic returns the topic name.
func (s *Subscriber) Topic() string { return s.topic }

// ID returns the subscriber's entity id.
func (s *Subscriber) ID() uint64 { return s.id }

// Stats returns the subscriber's counters.
func (s *Subscriber) Stats() SubscriberStats {
	st := SubscriberStats{Received: s.received.Load(), Dropped: s.dropped.Load(),
		TypeMismatches: s.mismatched.Load(), ChecksumErrors: s.checksumErrors.Load()}
	st.Publishers = len(s.node.remotesOf(s.topic))
	return st
}

// Receive returns the next message with a private copy of its payload. It
// blocks until a message arrives, ctx is done, or the subscriber is closed
// (ErrClosed). A call cancelled by ctx consumes nothing. When a publisher of
// another type than SubscriberOptions.Type appears, one call returns an
// error wrapping ErrTypeMismatch that names it; later calls go on receiving.
func (s *Subscriber) Receive(ctx context.Context) (Message, error) {
	if s.isClosed() {
		return Message{}, ErrClosed
	}
	if err := s.pending(); err != nil {
		return Message{}, err
	}
	if s.opts.ZeroCopy {
		var m Message
		err := s.ReceiveFunc(ctx, func(h Header, view []byte) error {
			m = Message{Header: h, Data: append([]byte{}, view...)}
			return nil
		})
		return m, err
	}
	m, err := s.pop(ctx)
	if err != nil {
		return Message{}, err
	}
	s.account(m.Header)
	return m, nil
}

// pop takes the next queued message (copy mode), spinning first if
// SubscriberOptions.Spin asks for it.
func (s *Subscriber) pop(ctx context.Context) (Message, error) {
	if s.opts.Spin > 0 {
		for until := time.Now().Add(s.opts.Spin); time.Now().Before(until); {
			if m, ok := s.q.tryPop(); ok {
				return m, nil
			}
			runtime.Gosched()
		}
	}
	return s.q.pop(ctx, s.closed, s.errs)
}

// TryReceive is Receive without blocking: ok is false when nothing is
// pending.
func (s *Subscriber) TryReceive() (m Message, ok bool, err error) {
	if s.isClosed() {
		return Message{}, false, ErrClosed
	}
	if s.opts.ZeroCopy {
		ok, err = s.tryZeroCopy(func(h Header, view []byte) error {
			m = Message{Header: h, Data: append([]byte{}, view...)}
			return nil
		})
		return m, ok, err
	}
	m, ok = s.q.tryPop()
	if ok {
		s.account(m.Header)
	}
	return m, ok, nil
}

func (s *Subscriber) account(h Header) {
	s.received.Add(1)
	if h.Dropped > 0 {
		s.dropped.Add(h.Dropped)
	}
}

// ReceiveFunc waits for the next message and calls fn with its header and
// payload. With SubscriberOptions.ZeroCopy the view points into shared
// memory and is valid only until fn returns; the memory file stays
// read-locked (shared) during fn, so keep fn short. fn's error is returned.
func (s *Subscriber) ReceiveFunc(ctx context.Context, fn func(h Header, view []byte) error) error {
	if err := s.pending(); err != nil {
		return err
	}
	if !s.opts.ZeroCopy {
		m, err := s.pop(ctx)
		if err != nil {
			return err
		}
		s.account(m.Header)
		err = fn(m.Header, m.Data)
		s.Release(m) // the view was valid only inside fn
		return err
	}
	spinUntil := time.Time{}
	if s.opts.Spin > 0 {
		spinUntil = time.Now().Add(s.opts.Spin)
	}
	var fnErr error
	call := func(h Header, view []byte) error { fnErr = fn(h, view); return nil }
	for {
		ok, err := s.tryZeroCopy(call)
		if err != nil {
			return err
		}
		if ok {
			return fnErr
		}
		if !spinUntil.IsZero() && time.Now().Before(spinUntil) {
			runtime.Gosched()
			continue
		}
		select {
		case <-s.notify:
		case err := <-s.errs:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closed:
			return ErrClosed
		}
	}
}

// tryZeroCopy reads the newest unconsumed message of any publisher in place.
// Zero-copy subscribers filter and count for themselves: the observer only
// signals them.
func (s *Subscriber) tryZeroCopy(fn func(Header, []byte) error) (bool, error) {
	if s.isClosed() {
		return false, ErrClosed
	}
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	for _, o := range *s.obs.Load() {
		last := s.consumed[o.rp.id]
		if o.latest.Load() <= last && last != 0 {
			continue
		}
		got := false
		var ferr error
		o.withView(func(h memfile.Header, view []byte) {
			if h.Clock <= last {
				return
			}
			// Consumed whatever happens below, also if fn panics.
			defer s.markConsumed(o, h.Clock)
			switch {
			case !s.typeOK(o.rp):
				s.mismatched.Add(1)
			case !s.idOK(h.ID):
			case int(h.DataSize) > s.opts.MaxMessageSize:
				s.dropped.Add(1)
			case s.opts.VerifyChecksum && !(&checksum{h: h, view: view}).ok():
				s.badChecksum(h)
			case last == 0 && s.opts.OnlyNew && h.Clock <= o.baseClock.Load():
				// History found when the observer attached: not for OnlyNew.
			default:
				hdr := o.header(h)
				hdr.ZeroCopy = true
				switch {
				case last != 0:
					hdr.Dropped = h.Clock - last - 1
				case s.epoch <= o.baseEpoch.Load() && h.Clock > o.baseClock.Load():
					// s was there when the observer attached: what it
					// missed since is a loss, not history.
					hdr.Dropped = h.Clock - o.baseClock.Load() - 1
				}
				got = true
				s.account(hdr)
				ferr = fn(hdr, view)
			}
		})
		if got {
			return true, ferr
		}
	}
	return false, nil
}

// markConsumed records that s consumed clock of o's publisher and tells the
// observer, which may be holding back an acknowledgement. Caller holds recvMu.
func (s *Subscriber) markConsumed(o *observer, clock uint64) {
	s.consumed[o.rp.id] = clock
	s.consumedMu.Lock()
	s.consumedShared[o.rp.id] = clock
	s.consumedMu.Unlock()
	signal(o.consumed)
}

func (s *Subscriber) consumedClock(pub uint64) uint64 {
	s.consumedMu.Lock()
	defer s.consumedMu.Unlock()
	return s.consumedShared[pub]
}

// freeBuffers bounds how many released payload buffers a subscriber keeps.
const freeBuffers = 4

// minRecycle is the smallest buffer worth keeping: below it, allocation is
// cheaper than the bookkeeping.
const minRecycle = 4 << 10

// Release hands a message's payload buffer back to the subscriber, which
// reuses it for a later message instead of allocating (a fresh large buffer
// costs several times the copy itself). Call it only when neither m.Data
// nor any slice of it is used any more. Optional; ReceiveFunc does it by
// itself in copy mode.
func (s *Subscriber) Release(m Message) {
	if s.free == nil || cap(m.Data) < minRecycle {
		return
	}
	select {
	case s.free <- m.Data[:0]:
	default:
	}
}

// buffer returns a payload buffer of n bytes, reused when one is free.
func (s *Subscriber) buffer(n int) []byte {
	for i := 0; i < freeBuffers; i++ {
		select {
		case b := <-s.free:
			if cap(b) >= n {
				return b[:n]
			}
			// Too small for this message: let it go; a bigger one replaces it.
		default:
			return make([]byte, n)
		}
	}
	return make([]byte, n)
}

// Messages returns a channel that receives every message until ctx is done
// or the subscriber is closed; then the channel is closed. Use either
// Messages or Receive on one subscriber, not both.
func (s *Subscriber) Messages(ctx context.Context) <-chan Message {
	ch := make(chan Message)
	go func() {
		defer close(ch)
		for {
			m, err := s.Receive(ctx)
			if err != nil {
				return
			}
			select {
			case ch <- m:
			case <-ctx.Done():
				return
			case <-s.closed:
				return
			}
		}
	}()
	return ch
}

// Close unregisters the subscriber and wakes blocked Receive calls with
// ErrClosed.
func (s *Subscriber) Close() error { return s.close(true) }

func (s *Subscriber) close(releaseNode bool) error {
	first := false
	s.once.Do(func() { first = true; close(s.closed) })
	if !first {
		return nil
	}
	if s.opts.ZeroCopy {
		// An observer may hold back an ack until s consumes: it need not.
		for _, o := range *s.obs.Load() {
			signal(o.consumed)
		}
	}
	n := s.node
	_ = n.agent.Unregister(s.id)
	n.mu.Lock()
	if m := n.subs[s.topic]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(n.subs, s.topic)
		}
		n.subscribersChanged(s.topic)
	}
	closedNode := n.closed
	n.mu.Unlock()
	if !closedNode {
		n.reconcile(s.topic)
	}
	if releaseNode && s.ownNode {
		return n.Close()
	}
	return nil
}
