package core

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
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
//
// A subscriber reads the publishers' memory files itself, at its own pace:
// in ack mode the publishers wait for it (up to a window of messages and
// their ack timeout); one that stops reading for longer is set aside
// (Stats.Lagging) and loses what is overwritten meanwhile, counted in
// Header.Dropped and Stats.Dropped, while the other subscribers go on.
type Subscriber struct {
	node  *Node
	t     *topicReader
	topic string
	id    uint64
	opts  SubscriberOptions

	// curs are s's cursors, one per feed; copy-on-write under t.mu.
	curs atomic.Pointer[[]*cursor]

	errs   chan error // problems to report from the next Receive
	closed chan struct{}
	once   sync.Once

	// recvMu serializes taking messages; it guards rr, buf and the
	// cursors' dropped counts.
	recvMu sync.Mutex
	rr     int    // round-robin start among the cursors
	buf    []byte // ReceiveFunc's copy buffer (copy mode)
	free   chan []byte

	received, dropped, mismatched, checksumErrors, laggings atomic.Uint64
}

// SubscriberStats are a subscriber's counters.
type SubscriberStats struct {
	// Received counts messages handed to the application.
	Received uint64
	// Dropped counts messages missed: overwritten before this subscriber
	// read them (it fell a window behind), lost upstream (Header.Dropped
	// from a bridge), too large, or failing their checksum.
	Dropped uint64
	// TypeMismatches counts messages ignored because their publisher's type
	// differs from SubscriberOptions.Type.
	TypeMismatches uint64
	// ChecksumErrors counts messages dropped because their CRC-32C did not
	// match (SubscriberOptions.VerifyChecksum).
	ChecksumErrors uint64
	// Laggings counts the times this subscriber was set aside for holding
	// a publisher back while other subscribers of its process kept up.
	Laggings uint64
	// Lagging: set aside now (until it catches up).
	Lagging bool
	// Publishers counts publishers this subscriber takes messages from.
	Publishers int
}

// NewSubscriber creates a subscriber on topic in the node's domain. It
// connects to every publisher of the topic as it appears; a publisher that
// already published gives it its latest message at once (unless OnlyNew).
// With a Type, a young node first waits up to DefaultDiscoveryWait for the
// running processes to answer its query, so that a publisher of another
// type is reported (ErrTypeMismatch) whenever one runs.
func (n *Node) NewSubscriber(topic string, o *SubscriberOptions) (*Subscriber, error) {
	if err := registration.CheckTopic(topic); err != nil {
		return nil, invalidTopic(err)
	}
	opts, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Subscriber{
		node: n, topic: topic, id: proc.RandomID(), opts: opts,
		closed: make(chan struct{}), errs: make(chan error, 8), free: make(chan []byte, freeBuffers),
	}
	s.curs.Store(&[]*cursor{})
	created := time.Now()
	t, err := n.addSubscriber(s)
	if err != nil {
		return nil, err
	}
	s.t = t
	t.mu.Lock()
	e := s.entity(t.filesLocked())
	t.mu.Unlock()
	e.Flags = registration.FlagQuery // running publishers answer at once
	if err := n.agent.Register(e); err != nil {
		s.close()
		return nil, fmt.Errorf("%w: subscriber %q: %w", ErrRegistration, topic, err)
	}
	if opts.Type != "" {
		if err := n.discover(context.Background(), created, DefaultDiscoveryWait); err != nil {
			s.close()
			return nil, err
		}
		for _, e := range n.agent.Topic(topic) {
			if e.Kind == registration.KindPublisher && e.Type != opts.Type {
				s.close()
				return nil, fmt.Errorf("%w: topic %q has type %q (publisher pid %d), subscriber wants %q",
					ErrTypeMismatch, topic, e.Type, e.PID, opts.Type)
			}
		}
	}
	n.reconcile(topic)
	return s, nil
}

// entity is the subscriber's registration entity announcing files (see
// topicReader.filesLocked).
func (s *Subscriber) entity(files []string) registration.Entity {
	return registration.Entity{
		Kind: registration.KindSubscriber, ID: s.id, Topic: s.topic, Type: s.opts.Type, MemFiles: files,
		Dropped: s.dropped.Load(),
	}
}

// report queues an error for the next Receive call (dropped if 8 are
// already waiting: the first ones name the problem).
func (s *Subscriber) report(err error) {
	select {
	case s.errs <- err:
	default:
	}
	if s.t != nil {
		s.t.poke()
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
		TypeMismatches: s.mismatched.Load(), ChecksumErrors: s.checksumErrors.Load(),
		Laggings: s.laggings.Load()}
	for _, c := range *s.curs.Load() {
		if c.accepts {
			st.Publishers++
			st.Lagging = st.Lagging || c.lagging.Load()
		}
	}
	return st
}

// Receive returns the next message with a private copy of its payload. It
// blocks until a message arrives, ctx is done, or the subscriber is closed
// (ErrClosed). A call cancelled by ctx consumes nothing. When a publisher of
// another type than SubscriberOptions.Type appears, one call returns an
// error wrapping ErrTypeMismatch that names it; later calls go on receiving.
func (s *Subscriber) Receive(ctx context.Context) (Message, error) {
	var m Message
	err := s.receive(ctx, true, func(h Header, data []byte) error {
		m = Message{Header: h, Data: data}
		return nil
	})
	return m, err
}

// ReceiveFunc waits for the next message and calls fn with its header and
// payload; fn's error is returned. Without ZeroCopy the payload is a copy
// that ReceiveFunc reuses after fn returns; with ZeroCopy it is a view into
// shared memory, valid only until fn returns (see SubscriberOptions.ZeroCopy).
func (s *Subscriber) ReceiveFunc(ctx context.Context, fn func(h Header, view []byte) error) error {
	return s.receive(ctx, false, fn)
}

// TryReceive is Receive without blocking: ok is false when nothing is
// pending.
func (s *Subscriber) TryReceive() (m Message, ok bool, err error) {
	if s.isClosed() {
		return Message{}, false, ErrClosed
	}
	if err := s.pending(); err != nil {
		return Message{}, false, err
	}
	ok, err = s.take(true, func(h Header, data []byte) error {
		m = Message{Header: h, Data: data}
		return nil
	})
	return m, ok, err
}

// Ready reports whether a message is waiting for this subscriber (or an
// error to report, or the subscriber is closed): whether Receive would
// return without sleeping. It consumes nothing. A message that the
// subscriber's filters (IDs, MaxMessageSize) then skip also counts, so
// Receive may still sleep after Ready said true. It is what event loops
// need to tell readable from not (the mount's poll).
func (s *Subscriber) Ready() bool {
	if s.isClosed() || len(s.errs) > 0 {
		return true
	}
	for _, c := range *s.curs.Load() {
		if c.accepts && c.pending() {
			return true
		}
	}
	return false
}

// pending reports whether c's publisher has a message c has not taken.
func (c *cursor) pending() bool {
	f := c.f
	f.views.RLock() // the mapping stays while we look
	defer f.views.RUnlock()
	return !f.released && c.next.Load() <= f.mf.Head()
}

// Wait blocks until Ready, ctx is done (its error) or the subscriber is
// closed (ErrClosed); it consumes nothing. Several goroutines may Wait and
// Receive at once.
func (s *Subscriber) Wait(ctx context.Context) error {
	for {
		if s.isClosed() {
			return ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		seq := s.t.bell.Seq()
		if s.Ready() {
			return nil
		}
		if err := s.t.wait(ctx, s, seq); err != nil {
			return err
		}
	}
}

// receive takes the next message, sleeping on the topic's bell while there
// is none. own: fn keeps the payload (Receive), so it gets a fresh copy.
func (s *Subscriber) receive(ctx context.Context, own bool, fn func(Header, []byte) error) error {
	var spinUntil time.Time
	for {
		if s.isClosed() {
			return ErrClosed
		}
		if err := s.pending(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		seq := s.t.bell.Seq()
		ok, err := s.take(own, fn)
		if ok || err != nil {
			return err
		}
		if s.opts.Spin > 0 {
			if spinUntil.IsZero() {
				spinUntil = time.Now().Add(s.opts.Spin)
			}
			if time.Now().Before(spinUntil) {
				runtime.Gosched()
				continue
			}
		}
		if err := s.t.wait(ctx, s, seq); err != nil {
			return err
		}
	}
}

// take hands the next message of any publisher to fn and reports whether it
// did. Publishers take turns; each one's messages come in order.
func (s *Subscriber) take(own bool, fn func(Header, []byte) error) (bool, error) {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	curs := *s.curs.Load()
	for i := range curs {
		c := curs[(s.rr+i)%len(curs)]
		ok, err := s.takeFrom(c, own, fn)
		if ok {
			s.rr = (s.rr + i + 1) % len(curs)
			return true, err
		}
		if err != nil {
			return false, err
		}
	}
	return false, nil
}

// takeFrom hands c's next message to fn, skipping (and counting) what was
// overwritten or is filtered out. The message counts as consumed, and may be
// acknowledged, only after fn returned. Caller holds recvMu.
func (s *Subscriber) takeFrom(c *cursor, own bool, fn func(Header, []byte) error) (bool, error) {
	f := c.f
	f.views.RLock()
	defer f.views.RUnlock()
	if f.released {
		return false, nil
	}
	for {
		head := f.mf.Head()
		next := c.next.Load()
		if next > head {
			return false, nil
		}
		if !c.accepts {
			if c.mismatch {
				s.mismatched.Add(head - next + 1)
			}
			c.next.Store(head + 1)
			return false, nil
		}
		h, view, err := f.mf.Read(next)
		if err != nil {
			if errors.Is(err, memfile.ErrOverwritten) {
				if !f.mf.Plausible(head) {
					// The head word is corrupt: skipping towards it would
					// lose what follows. Wait for the publisher's next
					// commit, which rewrites it (a dead publisher's feed
					// goes).
					if f.badHead.CompareAndSwap(false, true) {
						return false, fmt.Errorf("%w: topic %q publisher pid %d: head %d is not a message of the file", ErrCorrupt, s.topic, f.info.PID, head)
					}
					return false, nil
				}
				f.badHead.Store(false)
				// Fell a window behind: skip to the oldest message the
				// ring can still hold.
				skip := next + 1
				if head >= f.slots {
					skip = max(skip, head-f.slots+1)
				}
				s.miss(c, skip-next)
				c.consumed(skip - 1)
				continue
			}
			s.miss(c, 1)
			c.consumed(next)
			return false, fmt.Errorf("%w: topic %q publisher pid %d clock %d: %w", ErrCorrupt, s.topic, f.info.PID, next, err)
		}
		if !s.idOK(h.ID) {
			c.consumed(next)
			continue
		}
		if int(h.Size) > s.opts.MaxMessageSize {
			s.miss(c, 1)
			c.consumed(next)
			continue
		}
		hdr := Header{
			Publisher: f.info.ID, ID: h.ID, Clock: h.Clock, Time: time.Unix(0, h.Time), Size: int(h.Size),
			Hash: h.Hash, AckTimeout: time.Duration(h.AckTimeoutMs) * time.Millisecond,
			Generation: f.mf.Generation(), Dropped: c.dropped + h.Lost, ZeroCopy: s.opts.ZeroCopy && !own,
		}
		var data []byte
		if hdr.ZeroCopy {
			data = view
		} else {
			data = s.copyBuffer(len(view), own)
			copy(data, view)
			if !f.mf.Intact(next) {
				continue // overwritten while copying: counted on the next Read
			}
		}
		// A file whose publisher checksums every message (it says so
		// since its creation) and a message without its checksum: the
		// options word is corrupt, so the payload cannot be trusted.
		unsummed := h.Options&memfile.OptChecksum == 0 && f.mf.Checksummed()
		if s.opts.VerifyChecksum && (unsummed || h.Options&memfile.OptChecksum != 0 && crc32.Checksum(data, castagnoli) != uint32(h.Hash)) {
			if hdr.ZeroCopy && !f.mf.Intact(next) {
				continue // overwritten while checked
			}
			s.miss(c, 1)
			s.checksumErrors.Add(1)
			c.consumed(next)
			why := ""
			if unsummed {
				why = ": no checksum in a file whose publisher checksums every message"
			}
			return false, fmt.Errorf("%w: topic %q publisher %016x clock %d (%d bytes)%s", ErrChecksum, s.topic, f.info.ID, h.Clock, h.Size, why)
		}
		c.dropped = 0
		s.dropped.Add(h.Lost)
		recheck := hdr.ZeroCopy && s.opts.VerifyChecksum && h.Options&memfile.OptChecksum != 0
		err = s.call(c, next, hdr, data, fn, recheck)
		return true, err
	}
}

// call runs fn and consumes the message afterwards, also when fn panics. A
// zero-copy view overwritten meanwhile is reported (ErrOverrun).
//
// With recheck (a zero-copy view of a checksummed message, VerifyChecksum)
// the checksum is verified again after the callback: a view is shared
// memory, which a process that may write the file can change at any time;
// a view that changed under the callback is reported (ErrChecksum).
func (s *Subscriber) call(c *cursor, clock uint64, h Header, data []byte, fn func(Header, []byte) error, recheck bool) (err error) {
	defer c.consumed(clock)
	err = fn(h, data)
	if h.ZeroCopy && !c.f.mf.Intact(clock) {
		s.dropped.Add(1)
		return errors.Join(fmt.Errorf("%w: topic %q clock %d", ErrOverrun, s.topic, clock), err)
	}
	if recheck && crc32.Checksum(data, castagnoli) != uint32(h.Hash) {
		s.dropped.Add(1)
		s.checksumErrors.Add(1)
		return errors.Join(fmt.Errorf("%w: topic %q clock %d: the zero-copy view changed during the callback", ErrChecksum, s.topic, clock), err)
	}
	s.received.Add(1)
	return err
}

// miss counts n messages of c that s will never see.
func (s *Subscriber) miss(c *cursor, n uint64) {
	c.dropped += n
	s.dropped.Add(n)
}

// idOK applies the id filter.
func (s *Subscriber) idOK(id int64) bool {
	return len(s.opts.IDs) == 0 || slices.Contains(s.opts.IDs, id)
}

// freeBuffers bounds how many released payload buffers a subscriber keeps.
const freeBuffers = 4

// minRecycle is the smallest buffer worth keeping: below it, allocation is
// cheaper than the bookkeeping.
const minRecycle = 4 << 10

// copyBuffer returns a buffer of n bytes for a copy: a fresh or recycled
// one that the caller keeps (own), else ReceiveFunc's reused buffer.
func (s *Subscriber) copyBuffer(n int, own bool) []byte {
	if !own {
		if cap(s.buf) < n {
			s.buf = make([]byte, n)
		}
		return s.buf[:n]
	}
	if n >= minRecycle {
		for i := 0; i < freeBuffers; i++ {
			select {
			case b := <-s.free:
				if cap(b) >= n {
					return b[:n]
				}
			default:
				return make([]byte, n)
			}
		}
	}
	return make([]byte, n)
}

// Release hands a message's payload buffer back to the subscriber, which
// reuses it for a later message instead of allocating (a fresh large buffer
// costs several times the copy itself). Call it only when neither m.Data
// nor any slice of it is used any more. Optional.
func (s *Subscriber) Release(m Message) {
	if cap(m.Data) < minRecycle {
		return
	}
	select {
	case s.free <- m.Data[:0]:
	default:
	}
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
				if errors.Is(err, ErrClosed) || ctx.Err() != nil {
					return
				}
				continue // reported problems (type mismatch, ...): go on
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
// ErrClosed. The acknowledgements it held back move on.
func (s *Subscriber) Close() error {
	s.close()
	return nil
}

func (s *Subscriber) close() {
	first := false
	s.once.Do(func() { first = true; close(s.closed) })
	if !first {
		return
	}
	_ = s.node.agent.Unregister(s.id)
	s.node.removeSubscriber(s)
}
