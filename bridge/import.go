package bridge

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/core/registration"
)

// Import: every remote publisher (announced by another host's bridge, or
// first seen in a message) gets one local publisher, Origin
// "nats:<host>", of the same topic and type: a stream. Messages are
// deduplicated and checked for gaps by the remote publisher's clock in the
// data subscription's goroutine, then queued to the stream's goroutine,
// which publishes them locally (SendWith: the message id, and as Lost the
// messages lost on the way), so a slow local subscriber holds back only its
// own topic. Only one bridge per host imports (the one with the smallest
// id among the bridges of its Name), or local subscribers would get every
// message once per bridge.

// streamKey names a remote publisher: its host and entity id.
type streamKey struct {
	host string
	pub  uint64
}

// tomb remembers the last clock of a closed stream for Timeout, so that a
// late message of a publisher that went away is not delivered twice.
type tomb struct {
	clock uint64
	at    time.Time
}

type stream struct {
	b     *Bridge
	key   streamKey
	topic string
	typ   string
	tc    *topicCounters
	q     chan inMsg
	quit  chan struct{} // closed by close: run stops, enqueue gives up
	end   chan struct{} // closed by finish: run delivers what is queued, then stops
	done  chan struct{} // closed when run returned
	// sendMu is held shared by enqueue and exclusively by close, so that
	// nothing is queued after close drained the queue.
	sendMu sync.RWMutex
	// announced: some bridge listed this publisher (else it was created
	// by a message and lives while messages come).
	announced bool      // guarded by b.mu
	lastData  time.Time // guarded by b.mu
	// last is the newest clock accepted; carry is what was lost and not
	// yet reported (queue drops). Only the data goroutine writes them;
	// last is read at close for the tomb.
	last  atomic.Uint64
	carry uint64
	pub   *core.Publisher // the stream goroutine only
}

type inMsg struct {
	data []byte
	id   int64
	lost uint64
}

// queueLen bounds the messages waiting in one stream (QueueBytes bounds
// their bytes over all streams); a full queue holds back the NATS
// subscription for at most queueWait before messages are dropped.
const (
	queueLen  = 4096
	queueWait = 2 * time.Second
)

// reconcileImportsLocked starts streams for announced remote publishers and
// closes those no bridge announces any more (b.mu held).
func (b *Bridge) reconcileImportsLocked(leader bool) []func() {
	var work []func()
	if leader != b.importing {
		b.importing = leader
		if !leader {
			b.cfg.Logf("another bridge of %q imports: this one only exports", b.cfg.Name)
		}
	}
	want := map[streamKey]remotePub{}
	if leader {
		for _, r := range b.remotes {
			if r.host == b.cfg.Name {
				continue
			}
			for id, p := range r.pubs {
				if b.cfg.Import.Match(p.topic) {
					want[streamKey{r.host, id}] = p
				}
			}
		}
	}
	now := time.Now()
	for k, s := range b.streams {
		if _, ok := want[k]; ok {
			s.announced = true
			continue
		}
		if leader && !s.announced && now.Sub(s.lastData) < b.cfg.Timeout {
			continue // seen in a message before any announcement: wait
		}
		work = append(work, b.closeStreamLocked(s))
	}
	for k, p := range want {
		if b.streams[k] == nil {
			s := b.newStreamLocked(k, p.topic, p.typ)
			s.announced = true
		}
	}
	return work
}

// closeStreamLocked removes a stream whose publisher went away: it
// delivers what it has queued (the publisher's last messages came before
// its removal), then closes, in the background.
func (b *Bridge) closeStreamLocked(s *stream) func() {
	delete(b.streams, s.key)
	b.tombs[s.key] = tomb{clock: s.last.Load(), at: time.Now()}
	b.finishing.Add(1)
	return func() {
		go func() {
			defer b.finishing.Done()
			s.finish()
		}()
	}
}

func (b *Bridge) newStreamLocked(k streamKey, topic, typ string) *stream {
	s := &stream{b: b, key: k, topic: topic, typ: typ, tc: b.stats.of(topic),
		q: make(chan inMsg, queueLen), quit: make(chan struct{}), end: make(chan struct{}), done: make(chan struct{}), lastData: time.Now()}
	if t, ok := b.tombs[k]; ok {
		s.last.Store(t.clock)
		delete(b.tombs, k)
	}
	b.streams[k] = s
	go s.run()
	return s
}

// close stops the stream: queued messages are dropped, the local
// publisher closes (flushing, bounded by the ack timeout).
func (s *stream) close() { s.stop(s.quit) }

// finish stops the stream after delivering what is queued.
func (s *stream) finish() { s.stop(s.end) }

func (s *stream) stop(how chan struct{}) {
	close(how)
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	<-s.done
	for {
		select {
		case m := <-s.q:
			s.b.queued.Add(-int64(len(m.data)))
		default:
			return
		}
	}
}

// run publishes the stream's messages locally.
func (s *stream) run() {
	defer close(s.done)
	b := s.b
	var lost uint64 // lost while no local publisher could be made
	var retry time.Time
	open := func() bool {
		if s.pub != nil {
			return true
		}
		if time.Now().Before(retry) {
			return false
		}
		p, err := b.node.NewPublisher(s.topic, &core.PublisherOptions{
			Type: s.typ, AckTimeout: b.cfg.AckTimeout, MaxMessageSize: MaxMessage,
			Origin: OriginPrefix + s.key.host,
		})
		if err != nil {
			retry = time.Now().Add(b.cfg.Refresh)
			b.logOnce("import:"+s.topic+":"+s.key.host, "not importing topic %q from %q: %v", s.topic, s.key.host, err)
			return false
		}
		s.pub = p
		return true
	}
	open()
	for {
		var m inMsg
		select {
		case m = <-s.q:
		case <-s.quit:
			s.closePub()
			return
		case <-s.end:
			select {
			case m = <-s.q:
			default:
				s.closePub()
				return
			}
		}
		b.queued.Add(-int64(len(m.data)))
		if !open() {
			s.tc.errs.Add(1)
			lost += m.lost + 1
			continue
		}
		err := s.pub.SendWith(b.ctx, m.data, core.SendOptions{ID: m.id, Lost: m.lost + lost})
		switch {
		case err == nil, errors.Is(err, core.ErrAckTimeout): // published
			lost = 0
			s.tc.msgsIn.Add(1)
			s.tc.bytesIn.Add(uint64(len(m.data)))
		default:
			lost += m.lost + 1
			s.tc.errs.Add(1)
			if b.ctx.Err() == nil {
				b.logOnce("send:"+s.topic, "publishing imported topic %q: %v", s.topic, err)
			}
		}
	}
}

func (s *stream) closePub() {
	if s.pub != nil {
		_ = s.pub.Close()
	}
}

// onData handles one message from NATS (the data subscription's
// goroutine: messages arrive here in the order NATS delivers them).
func (b *Bridge) onData(nm *nats.Msg) {
	topic, err := b.subj.Topic(nm.Subject)
	if err == nil {
		err = registration.CheckTopic(topic)
	}
	if err != nil {
		b.invalid.Add(1)
		b.logOnce("subj", "dropping message: %v", err)
		return
	}
	m, err := parseMeta(nm.Header, len(nm.Data))
	if err != nil {
		b.invalid.Add(1)
		b.logOnce("hdr", "dropping message on %s: %v", nm.Subject, err)
		return
	}
	if m.bridge == b.id || m.origin == b.cfg.Name {
		b.own.Add(1) // exported from this host: never imported back
		return
	}
	if !b.cfg.Import.Match(topic) {
		return
	}
	data := nm.Data
	if m.of > 0 {
		var ok bool
		if data, ok = b.reassemble(&m, nm.Data); !ok {
			return
		}
	}
	b.deliver(topic, &m, data)
}

// deliver deduplicates, counts gaps and queues one whole message.
func (b *Bridge) deliver(topic string, m *meta, data []byte) {
	k := streamKey{m.origin, m.publisher}
	b.mu.Lock()
	if b.closed || !b.importing {
		b.mu.Unlock()
		return
	}
	s := b.streams[k]
	if s == nil {
		s = b.newStreamLocked(k, topic, m.typ)
	}
	s.lastData = time.Now()
	b.mu.Unlock()
	if s.topic != topic {
		b.invalid.Add(1)
		b.logOnce("topic:"+hex16(m.publisher), "dropping message: publisher %s of %q sends on %q too", hex16(m.publisher), s.topic, topic)
		return
	}
	last := s.last.Load()
	if m.clock <= last {
		s.tc.dups.Add(1)
		return
	}
	var gap uint64
	if last != 0 {
		gap = m.clock - last - 1
	}
	s.last.Store(m.clock)
	s.tc.gaps.Add(gap)
	lost := gap + m.lost + s.carry
	s.carry = 0
	if !b.enqueue(s, inMsg{data: data, id: m.id, lost: lost}) {
		s.tc.queueDrops.Add(1)
		s.carry = lost + 1
	}
}

// enqueue queues a message for local delivery. When the stream's queue or
// the byte budget is full it waits (holding back the NATS subscription:
// nats.go buffers meanwhile) at most queueWait, then gives up: the message
// is dropped and counted.
func (b *Bridge) enqueue(s *stream, m inMsg) bool {
	s.sendMu.RLock()
	defer s.sendMu.RUnlock()
	if isClosed(s.quit) || isClosed(s.end) {
		return false
	}
	n := int64(len(m.data))
	var deadline time.Time
	for b.queued.Add(n) > b.cfg.QueueBytes {
		b.queued.Add(-n)
		if deadline.IsZero() {
			deadline = time.Now().Add(queueWait)
		}
		if time.Now().After(deadline) || b.ctx.Err() != nil || isClosed(s.quit) || isClosed(s.end) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case s.q <- m:
		return true
	default:
	}
	if deadline.IsZero() {
		deadline = time.Now().Add(queueWait)
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case s.q <- m:
		return true
	case <-t.C:
	case <-s.quit:
	case <-s.end:
	}
	b.queued.Add(-n)
	return false
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Reassembly of split messages: parts of one message come in order from
// one bridge (NATS keeps the order of one connection's messages to one
// subscriber); a part out of order or a new message before the last was
// complete discards the incomplete one (its clock never arrives: the next
// message counts it as a gap).

type partKey struct {
	bridge, pub uint64
}

type partial struct {
	clock uint64
	next  int
	buf   []byte
}

// maxPartial bounds the messages being reassembled at once.
const maxPartial = 16

func (b *Bridge) reassemble(m *meta, data []byte) ([]byte, bool) {
	k := partKey{m.bridge, m.publisher}
	p := b.parts[k]
	if m.part == 0 {
		if p == nil && len(b.parts) >= maxPartial {
			for old := range b.parts { // drop one incomplete message
				delete(b.parts, old)
				break
			}
		}
		p = &partial{clock: m.clock, buf: make([]byte, 0, m.size)}
		b.parts[k] = p
	}
	if p == nil || p.clock != m.clock || p.next != m.part || len(p.buf)+len(data) > m.size || cap(p.buf) != m.size {
		if p != nil {
			delete(b.parts, k)
		}
		b.logOnce("part", "dropping an incomplete split message (%s)", fmt.Sprintf("publisher %s clock %d part %d/%d", hex16(m.publisher), m.clock, m.part, m.of))
		return nil, false
	}
	p.buf = append(p.buf, data...)
	p.next++
	if p.next < m.of {
		return nil, false
	}
	delete(b.parts, k)
	if len(p.buf) != m.size {
		b.invalid.Add(1)
		return nil, false
	}
	return p.buf, true
}

// Imported returns the number of remote publishers the bridge imports
// into topic now.
func (b *Bridge) Imported(topic string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, s := range b.streams {
		if s.topic == topic {
			n++
		}
	}
	return n
}
