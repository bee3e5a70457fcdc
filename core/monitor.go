package core

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/shmfs/shmfs/core/memfile"
	"github.com/shmfs/shmfs/core/registration"
	"github.com/shmfs/shmfs/internal/proc"
)

// Monitor looks at the messages of one topic without subscribing: it maps
// the memory files of the topic's local publishers read-only (verified
// exactly like a subscriber's connection) and reads message headers from
// them, never a payload. It announces nothing, creates no shared-memory
// object and acknowledges nothing, so no publisher ever waits for it and
// no process counts it as a subscriber. It gets no wake-ups (publishers do
// not know it): callers look when they want, with Latest, Heads or Follow.
// Follow may miss messages overwritten between two looks; it counts them.
//
// A Monitor is safe for concurrent use. It learns of publishers from
// registration at each call and drops the mapping of a publisher that is
// gone (closed, removed or dead) at the next call.
type Monitor struct {
	node  *Node
	topic string

	// mu guards everything below and every use of the feeds' mappings.
	mu      sync.Mutex
	feeds   map[uint64]*monitorFeed // by publisher entity id
	refused map[string]bool         // publisher id + memory file: not retried
	// reported are the refusals Errors handed out or holds (reportKey),
	// at most maxReports; pending are those not yet handed out.
	reported map[string]bool
	pending  []error
	last     Header // newest message of a publisher that went away
	hasLast  bool
	closed   bool
}

// monitorFeed is a Monitor's view of one publisher's memory file.
type monitorFeed struct {
	info  EntityInfo
	mf    *memfile.File
	peer  proc.Identity
	slots uint64
	// seen is the newest clock Follow handed out (the head when the
	// monitor connected: history is not replayed).
	seen uint64
	// dropped counts clocks Follow skipped since the header it handed out
	// last.
	dropped uint64
}

// Monitor returns a monitor of topic. Close it when done (the node's
// Close closes it too).
func (n *Node) Monitor(topic string) (*Monitor, error) {
	if err := registration.CheckTopic(topic); err != nil {
		return nil, invalidTopic(err)
	}
	m := &Monitor{node: n, topic: topic, feeds: map[uint64]*monitorFeed{}, refused: map[string]bool{}, reported: map[string]bool{}}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	n.monitors[m] = struct{}{}
	return m, nil
}

// Topic returns the topic name.
func (m *Monitor) Topic() string { return m.topic }

// Latest returns the header of the newest message (by send time) of any
// publisher of the topic that the monitor has seen, including the last
// message of a publisher that has gone since; false if none.
func (m *Monitor) Latest() (Header, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.syncLocked() != nil {
		return Header{}, false
	}
	best, ok := m.last, m.hasLast
	for _, f := range m.feeds {
		if h, hok := f.head(); hok && (!ok || newer(h, best)) {
			best, ok = h, true
		}
	}
	return best, ok
}

// Heads returns the header of the newest message of every local publisher
// of the topic that has sent one, sorted by publisher id.
func (m *Monitor) Heads() []Header {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.syncLocked() != nil {
		return nil
	}
	var out []Header
	for _, f := range m.feeds {
		if h, ok := f.head(); ok {
			out = append(out, h)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Publisher < out[j].Publisher })
	return out
}

// Follow calls fn with the header of every message committed since the
// previous Follow (for a publisher seen for the first time: since now),
// in clock order per publisher. Messages overwritten before the monitor
// looked are skipped and counted in the Dropped field of the next header
// of their publisher. It returns how many headers it handed to fn. fn
// must not call the Monitor.
func (m *Monitor) Follow(fn func(Header)) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.syncLocked() != nil {
		return 0
	}
	n := 0
	for _, f := range m.feeds {
		n += f.follow(fn)
	}
	return n
}

// Errors returns the publishers the monitor refused since the last call
// (another user's topic, an announcement that does not match shared
// memory: ErrPermission, ErrUnverified, ...), each refusal once, as a
// subscriber's Receive reports them; at most 64 over the monitor's life.
func (m *Monitor) Errors() []error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_ = m.syncLocked()
	errs := m.pending
	m.pending = nil
	return errs
}

// Close releases the monitor's mappings. Later calls find nothing.
func (m *Monitor) Close() error {
	m.mu.Lock()
	closed := m.closed
	m.closed = true
	for id, f := range m.feeds {
		_ = f.mf.Close()
		delete(m.feeds, id)
	}
	m.mu.Unlock()
	if !closed {
		m.node.mu.Lock()
		delete(m.node.monitors, m)
		m.node.mu.Unlock()
	}
	return nil
}

// syncLocked connects to the local publishers registration announces and
// drops the feeds of publishers that are gone. Caller holds m.mu.
func (m *Monitor) syncLocked() error {
	if m.closed {
		return ErrClosed
	}
	want := m.node.localPublishers(m.topic)
	for id, f := range m.feeds {
		if e, ok := want[id]; ok && e.MemFiles[0] == f.mf.Name() && !f.mf.Closed() {
			continue
		}
		if f.mf.Closed() || !f.mf.Linked() || !f.peer.Alive() {
			if h, ok := f.head(); ok && (!m.hasLast || newer(h, m.last)) {
				m.last, m.hasLast = h, true
			}
			_ = f.mf.Close()
			delete(m.feeds, id)
		}
	}
	for id, e := range want {
		key := fmt.Sprintf("%016x/%s", id, e.MemFiles[0])
		if m.feeds[id] != nil || m.refused[key] {
			continue
		}
		mf, err := openPublisherFile(e, m.topic)
		if err != nil {
			// A closed publisher's file may be retried under the same
			// name only if the error was transient; other refusals are
			// final for this file.
			if !errors.Is(err, ErrClosed) {
				m.refused[key] = true
			}
			if k, ok := reportKey(e, err); ok && !m.reported[k] && len(m.reported) < maxReports {
				m.reported[k] = true
				m.pending = append(m.pending, err)
			}
			continue
		}
		f := &monitorFeed{info: entityInfo(e), mf: mf, peer: proc.Identity{PID: e.PID, StartTime: e.StartTime}, slots: uint64(mf.Slots())}
		f.seen = mf.Head()
		m.feeds[id] = f
	}
	return nil
}

// newer orders headers by send time, then clock.
func newer(a, b Header) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.After(b.Time)
	}
	return a.Clock > b.Clock
}

// head reads the header of the feed's newest message.
func (f *monitorFeed) head() (Header, bool) {
	for range 4 { // the head can move on while it is read
		c := f.mf.Head()
		if c == 0 {
			return Header{}, false
		}
		if h, err := f.read(c); err == nil {
			return h, true
		}
	}
	return Header{}, false
}

// follow hands fn the headers after f.seen up to the head.
func (f *monitorFeed) follow(fn func(Header)) int {
	n := 0
	for head := f.mf.Head(); f.seen < head; head = f.mf.Head() {
		c := f.seen + 1
		h, err := f.read(c)
		if errors.Is(err, memfile.ErrOverwritten) {
			// Fell a window behind: skip to the oldest clock the ring
			// can still hold.
			skip := c
			if head >= f.slots {
				skip = max(c, head-f.slots+1)
			}
			if skip == c {
				skip = c + 1 // this one was overwritten right now
			}
			f.dropped += skip - c
			f.seen = skip - 1
			continue
		}
		f.seen = c
		if err != nil {
			f.dropped++ // corrupt slot: counted, never delivered
			continue
		}
		h.Dropped, f.dropped = f.dropped+h.Dropped, 0
		fn(h)
		n++
	}
	return n
}

// read returns the header of clock c, checked intact after reading.
func (f *monitorFeed) read(c uint64) (Header, error) {
	mh, _, err := f.mf.Read(c)
	if err != nil {
		return Header{}, err
	}
	h := Header{
		Publisher: f.info.ID, ID: mh.ID, Clock: mh.Clock, Time: time.Unix(0, mh.Time), Size: int(mh.Size),
		Hash: mh.Hash, AckTimeout: time.Duration(mh.AckTimeoutMs) * time.Millisecond,
		Generation: f.mf.Generation(), Dropped: mh.Lost,
	}
	if !f.mf.Intact(c) {
		return Header{}, memfile.ErrOverwritten
	}
	return h, nil
}
