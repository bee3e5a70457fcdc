package fs

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/shmfs/shmfs/core"
)

// fakeBroker is an in-memory backend for unit tests of the FUSE layer: one
// process, no shared memory, no registration delay.
type fakeBroker struct {
	mu       sync.Mutex
	nextID   uint64
	pubs     map[uint64]*fakePub
	subs     map[uint64]*fakeSub
	mons     map[*fakeMonitor]struct{}
	watchers map[chan core.Change]struct{}
}

var _ backend = (*fakeBroker)(nil)

func newFakeBroker() *fakeBroker {
	return &fakeBroker{pubs: map[uint64]*fakePub{}, subs: map[uint64]*fakeSub{}, mons: map[*fakeMonitor]struct{}{}, watchers: map[chan core.Change]struct{}{}}
}

func (b *fakeBroker) config() core.Config { return core.Config{Domain: "fake"} }
func (b *fakeBroker) Close() error        { return nil }

func (b *fakeBroker) Topics() []core.TopicInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := map[string]*core.TopicInfo{}
	get := func(n string) *core.TopicInfo {
		if m[n] == nil {
			m[n] = &core.TopicInfo{Name: n}
		}
		return m[n]
	}
	for _, p := range b.pubs {
		ti := get(p.topic)
		ti.Type = p.typ
		ti.Publishers = append(ti.Publishers, p.info())
	}
	for _, s := range b.subs {
		ti := get(s.topic)
		ti.Subscribers = append(ti.Subscribers, s.info())
	}
	out := make([]core.TopicInfo, 0, len(m))
	for _, ti := range m {
		out = append(out, *ti)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (b *fakeBroker) Topic(name string) (core.TopicInfo, bool) {
	for _, ti := range b.Topics() {
		if ti.Name == name {
			return ti, true
		}
	}
	return core.TopicInfo{}, false
}

func (b *fakeBroker) Watch(buffer int) (<-chan core.Change, func()) {
	ch := make(chan core.Change, buffer)
	b.mu.Lock()
	b.watchers[ch] = struct{}{}
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		delete(b.watchers, ch)
		b.mu.Unlock()
	}
}

func (b *fakeBroker) notifyLocked(k core.ChangeKind, e core.EntityInfo) {
	for ch := range b.watchers {
		select {
		case ch <- core.Change{Kind: k, Entity: e}:
		default:
		}
	}
}

func (b *fakeBroker) NewPublisher(topic, typ string) (publisher, error) {
	if topic == "" {
		return nil, core.ErrInvalidTopic
	}
	if typ == "" {
		typ = "raw"
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextID++
	p := &fakePub{b: b, id: b.nextID, topic: topic, typ: typ}
	b.pubs[p.id] = p
	b.notifyLocked(core.Added, p.info())
	return p, nil
}

// fakeQueueSize bounds a fake subscriber's queue (the real ones read the
// publisher's window).
const fakeQueueSize = 256

func (b *fakeBroker) NewSubscriber(topic string, o subOptions) (subscriber, error) {
	if topic == "" {
		return nil, core.ErrInvalidTopic
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextID++
	s := &fakeSub{b: b, id: b.nextID, topic: topic, max: fakeQueueSize,
		wake: make(chan struct{}, 1), space: make(chan struct{}, 1), closed: make(chan struct{})}
	b.subs[s.id] = s
	b.notifyLocked(core.Added, s.info())
	return s, nil
}

// NewMonitor returns a monitor that sees every message sent from now on
// (up to a window of them between two looks) and is no subscriber.
func (b *fakeBroker) NewMonitor(topic string) (monitor, error) {
	if topic == "" {
		return nil, core.ErrInvalidTopic
	}
	m := &fakeMonitor{b: b, topic: topic}
	b.mu.Lock()
	b.mons[m] = struct{}{}
	b.mu.Unlock()
	return m, nil
}

type fakeMonitor struct {
	b     *fakeBroker
	topic string

	mu      sync.Mutex
	queue   []core.Header // since the last Follow, at most fakeQueueSize
	dropped uint64
	last    core.Header
	hasLast bool
}

func (m *fakeMonitor) observe(h core.Header) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.last, m.hasLast = h, true
	if len(m.queue) == fakeQueueSize {
		m.queue = m.queue[1:]
		m.dropped++
	}
	m.queue = append(m.queue, h)
}

func (m *fakeMonitor) Latest() (core.Header, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last, m.hasLast
}

func (m *fakeMonitor) Follow(fn func(core.Header)) int {
	m.mu.Lock()
	q, dropped := m.queue, m.dropped
	m.queue, m.dropped = nil, 0
	m.mu.Unlock()
	for i, h := range q {
		if i == 0 {
			h.Dropped += dropped
		}
		fn(h)
	}
	return len(q)
}

func (m *fakeMonitor) Errors() []error { return nil } // the fake refuses no publisher

func (m *fakeMonitor) Close() error {
	m.b.mu.Lock()
	delete(m.b.mons, m)
	m.b.mu.Unlock()
	return nil
}

// subscriber returns a subscriber for tests to read what the mount published.
func (b *fakeBroker) subscriber(topic string) *fakeSub {
	s, _ := b.NewSubscriber(topic, subOptions{})
	fs := s.(*fakeSub)
	b.mu.Lock()
	fs.max = 1 << 20 // keeps everything
	b.mu.Unlock()
	return fs
}

type fakePub struct {
	b     *fakeBroker
	id    uint64
	topic string
	typ   string
	clock uint64
}

func (p *fakePub) info() core.EntityInfo {
	return core.EntityInfo{ID: p.id, Kind: core.KindPublisher, Topic: p.topic, Type: p.typ, Process: "fake", Local: true, Sent: p.clock}
}

func (p *fakePub) ID() uint64 { return p.id }

func (p *fakePub) Stats() core.PublisherStats {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	return core.PublisherStats{Sent: p.clock}
}

// Send delivers to every subscriber of the topic. Like core's ack mode it
// waits (up to a second) for room in a full copy queue.
func (p *fakePub) Send(ctx context.Context, data []byte) error {
	p.b.mu.Lock()
	if p.b.pubs[p.id] == nil {
		p.b.mu.Unlock()
		return core.ErrClosed
	}
	p.clock++
	h := core.Header{Publisher: p.id, Clock: p.clock, Time: time.Now(), Size: len(data), Generation: 1}
	var subs []*fakeSub
	for _, s := range p.b.subs {
		if s.topic == p.topic {
			subs = append(subs, s)
		}
	}
	var mons []*fakeMonitor
	for m := range p.b.mons {
		if m.topic == p.topic {
			mons = append(mons, m)
		}
	}
	p.b.mu.Unlock()
	for _, m := range mons {
		m.observe(h)
	}
	for _, s := range subs {
		s.push(ctx, core.Message{Header: h, Data: append([]byte(nil), data...)})
	}
	return nil
}

// WouldWait: the fake's Send waits only for a full copy queue.
func (p *fakePub) WouldWait() bool {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	for _, s := range p.b.subs {
		if s.topic == p.topic && s.full() {
			return true
		}
	}
	return false
}

func (p *fakePub) Close() error {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	if p.b.pubs[p.id] == nil {
		return core.ErrClosed
	}
	delete(p.b.pubs, p.id)
	p.b.notifyLocked(core.Removed, p.info())
	return nil
}

type fakeSub struct {
	b      *fakeBroker
	id     uint64
	topic  string
	max    int
	wake   chan struct{} // a message arrived (or it closed); one waiter
	space  chan struct{}
	closed chan struct{}

	mu      sync.Mutex
	q       []core.Message
	dropped uint64
	once    sync.Once
}

func (s *fakeSub) info() core.EntityInfo {
	return core.EntityInfo{ID: s.id, Kind: core.KindSubscriber, Topic: s.topic, Process: "fake", Local: true}
}

func (s *fakeSub) push(ctx context.Context, m core.Message) {
	deadline := time.After(time.Second)
	s.mu.Lock()
	for len(s.q) >= s.max {
		s.mu.Unlock()
		timedOut := false
		select {
		case <-s.space:
		case <-s.closed:
			return
		case <-ctx.Done():
			return
		case <-deadline:
			timedOut = true
		}
		s.mu.Lock()
		if timedOut {
			break
		}
	}
	if len(s.q) >= s.max {
		s.q = s.q[1:]
		s.dropped++
	}
	s.q = append(s.q, m)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *fakeSub) ID() uint64 { return s.id }

func (s *fakeSub) full() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.q) >= s.max
}

// Ready: a message is queued, or it closed.
func (s *fakeSub) Ready() bool {
	select {
	case <-s.closed:
		return true
	default:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.q) > 0
}

// Wait polls: the fake's wake channel has one consumer (Receive).
func (s *fakeSub) Wait(ctx context.Context) error {
	for !s.Ready() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	select {
	case <-s.closed:
		return core.ErrClosed
	default:
		return nil
	}
}

func (s *fakeSub) Release(core.Message) {}

func (s *fakeSub) Stats() core.SubscriberStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return core.SubscriberStats{Dropped: s.dropped}
}

func (s *fakeSub) TryReceive() (core.Message, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.q) > 0 {
		m := s.q[0]
		s.q = s.q[1:]
		select {
		case s.space <- struct{}{}:
		default:
		}
		return m, true, nil
	}
	select {
	case <-s.closed:
		return core.Message{}, false, core.ErrClosed
	default:
	}
	return core.Message{}, false, nil
}

func (s *fakeSub) Receive(ctx context.Context) (core.Message, error) {
	for {
		m, ok, err := s.TryReceive()
		if ok || err != nil {
			return m, err
		}
		select {
		case <-s.wake:
		case <-s.closed:
		case <-ctx.Done():
			return core.Message{}, fmt.Errorf("fake receive: %w", ctx.Err())
		}
	}
}

func (s *fakeSub) ReceiveFunc(ctx context.Context, fn func(core.Header, []byte) error) error {
	m, err := s.Receive(ctx)
	if err != nil {
		return err
	}
	return fn(m.Header, m.Data)
}

func (s *fakeSub) Close() error {
	first := false
	s.once.Do(func() {
		first = true
		close(s.closed)
		s.b.mu.Lock()
		delete(s.b.subs, s.id)
		s.b.notifyLocked(core.Removed, s.info())
		s.b.mu.Unlock()
	})
	if !first {
		return core.ErrClosed
	}
	return nil
}
