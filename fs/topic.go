package fs

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shmfs/shmfs/core"
)

// topic is the mount's state for one topic that has open files or was used
// within the linger period: the shared publisher for writes, the monitor
// that remembers the latest header and produces message events, and the
// open events files.
type topic struct {
	fs   *filesystem
	name string

	// refs and lastUse are guarded by fs.mu.
	refs    int
	lastUse time.Time

	// pubMu serializes creating the publisher (which may take a while).
	pubMu sync.Mutex
	pub   publisher

	mu       sync.Mutex
	closed   bool
	mon      *monitor
	monID    uint64 // the monitor's subscriber id: hidden from header and events
	last     core.Header
	hasLast  bool
	gens     map[uint64]uint64   // publisher id -> last generation seen
	counters map[uint64]counters // entity id -> counters last seen (events diffs)
	events   map[*eventsHandle]struct{}
	reported map[string]bool // refusals already reported (report)
	refusals []string        // their event lines, shown to events files opened later
}

type counters struct{ ackTimeouts, dropped uint64 }

func newTopic(f *filesystem, name string) *topic {
	t := &topic{
		fs: f, name: name, lastUse: time.Now(),
		gens:     map[uint64]uint64{},
		counters: map[uint64]counters{},
		events:   map[*eventsHandle]struct{}{},
	}
	if ti, ok := f.be.Topic(name); ok {
		for _, e := range slices.Concat(ti.Publishers, ti.Subscribers) {
			t.counters[e.ID] = counters{e.AckTimeouts, e.Dropped}
		}
	}
	return t
}

// publisher returns the topic's shared publisher, creating it on first use.
// It is typed like the topic's existing publishers ("raw" if none).
func (t *topic) publisher() (publisher, error) {
	t.pubMu.Lock()
	defer t.pubMu.Unlock()
	if t.pub != nil {
		return t.pub, nil
	}
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return nil, core.ErrClosed
	}
	typ := ""
	if ti, ok := t.fs.be.Topic(t.name); ok {
		typ = ti.Type
	}
	p, err := t.fs.be.NewPublisher(t.name, typ)
	if err != nil {
		return nil, err
	}
	t.pub = p
	return p, nil
}

// send publishes one message. The request's own context is not used: an
// interrupt (the writer's Go runtime sends SIGURG all the time) must not
// make a published message look unpublished, which would make the writer
// retry and publish it twice. Send is bounded by core's own timeouts and
// by shutdown.
func (t *topic) send(data []byte) error {
	p, err := t.publisher()
	if err != nil {
		return err
	}
	err = p.Send(t.fs.ctx, data)
	if errors.Is(err, core.ErrAckTimeout) {
		return nil // published; a subscriber was slow to acknowledge
	}
	return err
}

// monitor is a zero-copy subscriber that looks at every message's header
// only (nothing is copied).
type monitor struct {
	sub    subscriber
	cancel context.CancelFunc
	done   chan struct{}
}

// startMonitor starts the monitor if it is not running. Failure is logged:
// header and events then lack message facts, data still works.
func (t *topic) startMonitor() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mon != nil || t.closed {
		return
	}
	sub, err := t.fs.be.NewSubscriber(t.name, subOptions{zeroCopy: true})
	if err != nil {
		t.fs.log.Printf("topic %q: monitor: %v", t.name, err)
		return
	}
	ctx, cancel := context.WithCancel(t.fs.ctx)
	m := &monitor{sub: sub, cancel: cancel, done: make(chan struct{})}
	t.mon, t.monID = m, sub.ID()
	go t.runMonitor(ctx, m)
}

func (t *topic) runMonitor(ctx context.Context, m *monitor) {
	defer close(m.done)
	observe := func(h core.Header, _ []byte) error {
		t.observe(h)
		return nil
	}
	for {
		err := m.sub.ReceiveFunc(ctx, observe)
		if err == nil {
			continue
		}
		if ctx.Err() != nil || errors.Is(err, core.ErrClosed) {
			return
		}
		if t.report(err) {
			continue
		}
		t.fs.log.Printf("topic %q: monitor: %v", t.name, err)
		select { // do not spin on a persistent error
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// refusal reports whether err is core refusing a publisher (another user's
// topic, a registration that does not match shared memory, a corrupt
// memory file or message): a reader is told once and goes on with the
// other publishers and messages.
func refusal(err error) bool {
	return errors.Is(err, core.ErrPermission) || errors.Is(err, core.ErrUnverified) || errors.Is(err, core.ErrCorrupt)
}

// report logs a refusal and shows it in the events files ("error ..."),
// once per topic and distinct message; it reports whether err was one.
func (t *topic) report(err error) bool {
	if !refusal(err) {
		return false
	}
	msg := strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, err.Error())
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reported[msg] || len(t.reported) >= maxReported {
		return true
	}
	if t.reported == nil {
		t.reported = map[string]bool{}
	}
	t.reported[msg] = true
	t.fs.log.Printf("topic %q: %s", t.name, msg)
	line := stamp(time.Now()) + " error " + msg + "\n"
	t.refusals = append(t.refusals, line)
	for h := range t.events {
		h.push(line)
	}
	return true
}

// maxReported bounds the refusals a topic remembers (and reports).
const maxReported = 64

// observe records a message header and emits its events.
func (t *topic) observe(h core.Header) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last, t.hasLast = h, true
	if len(t.events) == 0 {
		t.gens[h.Publisher] = h.Generation
		return
	}
	if h.Dropped > 0 {
		t.emitLocked(now, "drop count=%d publisher=%s", h.Dropped, hexID(h.Publisher))
	}
	if g, ok := t.gens[h.Publisher]; ok && g != h.Generation {
		t.emitLocked(now, "grow generation=%d publisher=%s", h.Generation, hexID(h.Publisher))
	}
	t.gens[h.Publisher] = h.Generation
	t.emitLocked(now, "message clock=%d size=%d id=%d publisher=%s", h.Clock, h.Size, h.ID, hexID(h.Publisher))
}

// lastHeader returns the latest message header the monitor saw.
func (t *topic) lastHeader() (core.Header, bool, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last, t.hasLast, t.monID
}

// change turns a registry change of this topic into events.
func (t *topic) change(c core.Change) {
	e := c.Entity
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.ID == t.monID && t.mon != nil {
		return
	}
	prev, known := t.counters[e.ID]
	cur := counters{e.AckTimeouts, e.Dropped}
	switch c.Kind {
	case core.Added:
		t.counters[e.ID] = cur
		t.emitLocked(now, "%s-added id=%s pid=%d process=%s host=%s type=%s", e.Kind, hexID(e.ID), e.PID, word(e.Process), word(e.Host), word(e.Type))
	case core.Removed:
		delete(t.counters, e.ID)
		delete(t.gens, e.ID)
		t.emitLocked(now, "%s-removed id=%s pid=%d", e.Kind, hexID(e.ID), e.PID)
	case core.Updated:
		t.counters[e.ID] = cur
		if !known {
			return // first sighting: a baseline, no difference to report
		}
		if cur.ackTimeouts > prev.ackTimeouts {
			t.emitLocked(now, "ack-timeout count=%d total=%d publisher=%s", cur.ackTimeouts-prev.ackTimeouts, cur.ackTimeouts, hexID(e.ID))
		}
		if cur.dropped > prev.dropped {
			t.emitLocked(now, "drop count=%d total=%d %s=%s", cur.dropped-prev.dropped, cur.dropped, e.Kind, hexID(e.ID))
		}
	}
}

// close stops the monitor and closes the publisher and every events file.
func (t *topic) close() {
	t.mu.Lock()
	t.closed = true
	m := t.mon
	t.mon = nil
	evs := make([]*eventsHandle, 0, len(t.events))
	for h := range t.events {
		evs = append(evs, h)
	}
	t.mu.Unlock()
	for _, h := range evs {
		h.shutdown()
	}
	if m != nil {
		m.cancel()
		_ = m.sub.Close()
		select {
		case <-m.done:
		case <-time.After(5 * time.Second):
			t.fs.log.Printf("topic %q: monitor did not stop", t.name)
		}
	}
	t.pubMu.Lock()
	p := t.pub
	t.pub = nil
	t.pubMu.Unlock()
	if p != nil {
		if err := p.Close(); err != nil && !errors.Is(err, core.ErrClosed) {
			t.fs.log.Printf("topic %q: close publisher: %v", t.name, err)
		}
	}
}
