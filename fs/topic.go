package fs

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shmfs/shmfs/core"
)

// The follow loop of a topic with open events files looks at the
// publishers' memory files this often: right after a message at the
// shortest interval, doubling while nothing happens up to the longest. A
// core.Monitor gets no wake-ups (it is not a subscriber, so no publisher
// rings it), and events are a diagnostic stream: a few milliseconds late
// is fine, a thread spinning per topic is not.
const (
	minFollow = 2 * time.Millisecond
	maxFollow = 50 * time.Millisecond
)

// topic is the mount's state for one topic that has open files or was used
// within the linger period: the shared publisher for writes, the monitor
// that reads the latest header (it is no subscriber: nothing waits for
// it), the open events files and the mount's own readers.
type topic struct {
	fs   *filesystem
	name string
	mon  monitor // nil when it could not be made (logged): no message facts

	// refs and lastUse are guarded by fs.mu.
	refs    int
	lastUse time.Time

	// pubMu serializes creating the publisher (which may take a while).
	pubMu sync.Mutex
	pub   publisher

	mu       sync.Mutex
	closed   bool
	gens     map[uint64]uint64   // publisher id -> last generation seen
	counters map[uint64]counters // entity id -> counters last seen (events diffs)
	events   map[*eventsHandle]struct{}
	readers  map[*dataHandle]readerState // this mount's data readers
	stop     chan struct{}               // closed to end the follow loop; nil when none runs
	reported map[string]bool             // refusals already reported (report)
	refusals []string                    // their event lines, shown to events files opened later
}

type counters struct{ ackTimeouts, dropped uint64 }

// readerState is what the events stream last reported of one of the
// mount's own readers.
type readerState struct {
	lagging bool
	dropped uint64
}

func newTopic(f *filesystem, name string) *topic {
	t := &topic{
		fs: f, name: name, lastUse: time.Now(),
		gens:     map[uint64]uint64{},
		counters: map[uint64]counters{},
		events:   map[*eventsHandle]struct{}{},
		readers:  map[*dataHandle]readerState{},
	}
	if m, err := f.be.NewMonitor(name); err != nil {
		f.log.Printf("topic %q: monitor: %v", name, err)
	} else {
		t.mon = m
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
	if err == nil || errors.Is(err, core.ErrAckTimeout) {
		t.fs.observePublished(t.name, len(data))
	}
	if errors.Is(err, core.ErrAckTimeout) {
		return nil // published; a subscriber was slow to acknowledge
	}
	return err
}

// wouldWait reports whether a write now would wait for a reader a window
// behind (the publisher's WouldWait; false before the first write).
func (t *topic) wouldWait() bool {
	t.pubMu.Lock()
	p := t.pub
	t.pubMu.Unlock()
	return p != nil && p.WouldWait()
}

// latest returns the header of the newest message of the topic.
func (t *topic) latest() (core.Header, bool) {
	if t.mon == nil {
		return core.Header{}, false
	}
	return t.mon.Latest()
}

// addEvents registers an open events file and starts the follow loop for
// the first one. False once the topic closed.
func (t *topic) addEvents(h *eventsHandle) bool {
	t.reportMonitor()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.events[h] = struct{}{}
	for _, l := range t.refusals { // refusals stay news: the reader may have missed them
		h.push(l)
	}
	if t.stop == nil && t.mon != nil {
		// Start after now: what happened before the file was opened is
		// not its business.
		t.mon.Follow(func(h core.Header) { t.gens[h.Publisher] = h.Generation })
		t.stop = make(chan struct{})
		go t.follow(t.stop)
	}
	return true
}

// removeEvents drops an events file; the follow loop ends with the last.
func (t *topic) removeEvents(h *eventsHandle) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.events, h)
	if len(t.events) == 0 && t.stop != nil {
		close(t.stop)
		t.stop = nil
	}
}

// follow turns new messages and the mount's readers' losses into events
// while an events file is open.
func (t *topic) follow(stop <-chan struct{}) {
	interval := minFollow
	timer := time.NewTimer(interval)
	defer timer.Stop()
	var hs []core.Header
	for {
		select {
		case <-stop:
			return
		case <-t.fs.ctx.Done():
			return
		case <-timer.C:
		}
		t.reportMonitor()
		hs = hs[:0]
		t.mon.Follow(func(h core.Header) { hs = append(hs, h) })
		t.observe(hs)
		if len(hs) > 0 {
			interval = minFollow
		} else {
			interval = min(2*interval, maxFollow)
		}
		timer.Reset(interval)
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

// reportMonitor reports the publishers the monitor refused (a topic
// nobody reads through the mount still shows them in events).
func (t *topic) reportMonitor() {
	if t.mon == nil {
		return
	}
	for _, err := range t.mon.Errors() {
		t.report(err)
	}
}

// maxReported bounds the refusals a topic remembers (and reports).
const maxReported = 64

// observe emits the events of new message headers, and of the mount's own
// readers that were set aside, caught up or lost messages.
func (t *topic) observe(hs []core.Header) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, h := range hs {
		if h.Dropped > 0 {
			t.emitLocked(now, "drop count=%d publisher=%s", h.Dropped, hexID(h.Publisher))
		}
		if g, ok := t.gens[h.Publisher]; ok && g != h.Generation {
			t.emitLocked(now, "grow generation=%d publisher=%s", h.Generation, hexID(h.Publisher))
		}
		t.gens[h.Publisher] = h.Generation
		t.emitLocked(now, "message clock=%d size=%d id=%d publisher=%s", h.Clock, h.Size, h.ID, hexID(h.Publisher))
	}
	for r, prev := range t.readers {
		st := r.sub.Stats()
		id := hexID(r.sub.ID())
		if st.Lagging && !prev.lagging {
			t.emitLocked(now, "lagging subscriber=%s", id)
		}
		if st.Dropped > prev.dropped {
			t.emitLocked(now, "drop count=%d total=%d subscriber=%s", st.Dropped-prev.dropped, st.Dropped, id)
		}
		if !st.Lagging && prev.lagging {
			t.emitLocked(now, "caught-up subscriber=%s", id)
		}
		t.readers[r] = readerState{lagging: st.Lagging, dropped: st.Dropped}
	}
}

// addReader registers one of the mount's data readers (its losses are
// reported from its own counters, at once); false once the topic closed.
func (t *topic) addReader(h *dataHandle) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.readers[h] = readerState{}
	return true
}

func (t *topic) removeReader(h *dataHandle) {
	t.mu.Lock()
	delete(t.readers, h)
	t.mu.Unlock()
}

// readerStats returns the counters of the mount's own reader with
// subscriber id, if it is one.
func (t *topic) readerStats(id uint64) (core.SubscriberStats, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for r := range t.readers {
		if r.sub.ID() == id {
			return r.sub.Stats(), true
		}
	}
	return core.SubscriberStats{}, false
}

// change turns a registry change of this topic into events. Losses of
// the mount's own readers are reported by observe, from their counters.
func (t *topic) change(c core.Change) {
	e := c.Entity
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
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
		if cur.dropped > prev.dropped && !t.ownReaderLocked(e.ID) {
			t.emitLocked(now, "drop count=%d total=%d %s=%s", cur.dropped-prev.dropped, cur.dropped, e.Kind, hexID(e.ID))
		}
	}
}

func (t *topic) ownReaderLocked(id uint64) bool {
	for r := range t.readers {
		if r.sub.ID() == id {
			return true
		}
	}
	return false
}

// close stops the follow loop and closes the monitor, the publisher and
// every events file.
func (t *topic) close() {
	t.mu.Lock()
	t.closed = true
	if t.stop != nil {
		close(t.stop)
		t.stop = nil
	}
	evs := make([]*eventsHandle, 0, len(t.events))
	for h := range t.events {
		evs = append(evs, h)
	}
	t.mu.Unlock()
	for _, h := range evs {
		h.shutdown()
	}
	if t.mon != nil {
		_ = t.mon.Close()
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
