package core

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/shmfs/shmfs/core/registration"
	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shm"
)

// Node is one process's membership in a domain: the registration agent, and
// the publishers and subscribers of this process. It is the one way to
// create them: open a node, then call its NewPublisher and NewSubscriber.
// OpenNode returns the same Node (reference counted) for the same domain and
// port, so that all users in a process share one agent and one mapping per
// memory file.
type Node struct {
	cfg   Config
	agent *registration.Agent
	key   string
	refs  int // guarded by nodesMu

	stop chan struct{}
	wg   sync.WaitGroup

	mu sync.Mutex
	// pubs are this process's publishers, by entity id.
	pubs map[uint64]*Publisher
	// readers are this process's subscriber sides, by topic: one per topic
	// with subscribers.
	readers map[string]*topicReader
	// monitors are the open Monitors, closed with the node.
	monitors map[*Monitor]struct{}
	closed   bool
}

var (
	nodesMu sync.Mutex
	nodes   = map[string]*Node{}
)

// OpenNode joins the domain of cfg. Close it when done; the last Close of a
// domain's Node stops its registration and closes what is still open on it.
// A node of the same domain and port already open in this process is
// shared; if cfg asks for other settings (refresh, timeout, network) than
// it has, OpenNode fails with ErrInvalidOption.
func OpenNode(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rc := cfg.registration()
	key := cfg.Domain + "/" + strconv.Itoa(rc.Port)
	nodesMu.Lock()
	defer nodesMu.Unlock()
	if n := nodes[key]; n != nil {
		if err := n.compatible(cfg); err != nil {
			return nil, err
		}
		n.refs++
		return n, nil
	}
	n := &Node{
		key: key, refs: 1,
		stop:     make(chan struct{}),
		pubs:     map[uint64]*Publisher{},
		readers:  map[string]*topicReader{},
		monitors: map[*Monitor]struct{}{},
	}
	rc.BeforeAnnounce = n.announceCounters
	agent, err := registration.NewAgent(rc)
	if err != nil {
		return nil, fmt.Errorf("%w: domain %q port %d: %w", ErrRegistration, cfg.Domain, rc.Port, err)
	}
	cfg.Port, cfg.Refresh, cfg.Timeout = rc.Port, rc.Refresh, rc.Timeout
	n.cfg, n.agent = cfg, agent
	// Remove what crashed processes of this domain left behind. Only objects
	// whose creator is dead are touched.
	_, _ = shm.Sweep(cfg.Domain, false)
	changes, cancel := agent.Watch(1024)
	n.wg.Add(1)
	go n.run(changes, cancel)
	nodes[key] = n
	return n, nil
}

// compatible checks that the shared node n serves cfg (defaults applied).
func (n *Node) compatible(cfg Config) error {
	h := n.cfg
	if (cfg.Refresh != 0 && cfg.Refresh != h.Refresh) || (cfg.Timeout != 0 && cfg.Timeout != h.Timeout) ||
		cfg.Network != h.Network || cfg.Group != h.Group || (cfg.TTL != 0 && cfg.TTL != h.TTL) || cfg.Interface != h.Interface {
		return fmt.Errorf("%w: domain %q port %d is already open in this process with other settings (%+v, asked for %+v)",
			ErrInvalidOption, h.Domain, h.Port, h, cfg)
	}
	return nil
}

func (c Config) registration() registration.Config {
	r := registration.DefaultConfig()
	r.Domain = c.Domain
	if c.Port != 0 {
		r.Port = c.Port
	}
	if c.Refresh > 0 {
		r.Refresh = c.Refresh
	}
	if c.Timeout > 0 {
		r.Timeout = c.Timeout
	}
	if c.Network {
		r.Mode = registration.ModeNetwork
		if c.Group != "" {
			r.Group = c.Group
		}
		if c.TTL > 0 {
			r.TTL = c.TTL
		}
		r.Interface = c.Interface
	}
	return r
}

// Config returns the node's configuration with defaults filled in.
func (n *Node) Config() Config { return n.cfg }

// Close drops one reference; the last one closes every publisher and
// subscriber still open on the node and stops registration.
func (n *Node) Close() error {
	nodesMu.Lock()
	n.refs--
	last := n.refs == 0
	if last {
		delete(nodes, n.key)
	}
	nodesMu.Unlock()
	if !last {
		return nil
	}
	n.mu.Lock()
	n.closed = true
	var pubs []*Publisher
	for _, p := range n.pubs {
		pubs = append(pubs, p)
	}
	var subs []*Subscriber
	for _, t := range n.readers {
		subs = append(subs, *t.subList.Load()...)
	}
	mons := make([]*Monitor, 0, len(n.monitors))
	for m := range n.monitors {
		mons = append(mons, m)
	}
	n.mu.Unlock()
	for _, p := range pubs {
		_ = p.close()
	}
	for _, s := range subs {
		s.close()
	}
	for _, m := range mons {
		_ = m.Close()
	}
	close(n.stop)
	n.wg.Wait()
	return n.agent.Close()
}

// run follows registration: it links publishers to new subscriber
// processes and connects subscribers to new publishers. A periodic pass
// repairs anything a dropped change notification missed.
func (n *Node) run(changes <-chan registration.Change, cancel func()) {
	defer n.wg.Done()
	defer cancel()
	tick := time.NewTicker(n.cfg.Refresh)
	defer tick.Stop()
	for {
		select {
		case <-n.stop:
			return
		case c, ok := <-changes:
			if !ok {
				return
			}
			n.reconcile(c.Entity.Topic)
		case <-tick.C:
			n.reconcileAll()
		}
	}
}

func (n *Node) reconcileAll() {
	n.mu.Lock()
	topics := map[string]bool{}
	for t := range n.readers {
		topics[t] = true
	}
	for _, p := range n.pubs {
		topics[p.topic] = true
	}
	n.mu.Unlock()
	for t := range topics {
		n.reconcile(t)
	}
}

// announceCounters copies the publishers' and subscribers' counters into
// their registration entities; registration calls it right before each
// periodic announcement.
func (n *Node) announceCounters() {
	n.mu.Lock()
	pubs := make([]*Publisher, 0, len(n.pubs))
	for _, p := range n.pubs {
		pubs = append(pubs, p)
	}
	readers := make([]*topicReader, 0, len(n.readers))
	for _, t := range n.readers {
		readers = append(readers, t)
	}
	n.mu.Unlock()
	for _, p := range pubs {
		p.announceCounters()
	}
	for _, t := range readers {
		t.mu.Lock()
		t.announceLocked()
		t.mu.Unlock()
	}
}

// discover makes the registry as complete as it can be now: it handles
// every announcement that already reached this process (Agent.Sync), and
// when the node is young it also waits until since+wait, long enough for
// the running processes to answer a registration query sent at since. A
// node that has listened for a whole refresh period knows them already.
func (n *Node) discover(ctx context.Context, since time.Time, wait time.Duration) error {
	n.agent.Sync(ctx)
	if wait <= 0 || since.Sub(n.agent.Started()) >= n.cfg.Refresh {
		return ctx.Err()
	}
	return sleepCtx(ctx, time.Until(since.Add(wait)))
}

// subscriberProcs returns the local subscriber processes of topic, one
// entity per process instance.
func (n *Node) subscriberProcs(topic string) map[uint64]registration.Entity {
	want := map[uint64]registration.Entity{}
	for _, e := range n.agent.Topic(topic) {
		if e.Kind == registration.KindSubscriber && e.Local && len(e.MemFiles) > 0 {
			if _, ok := want[e.Instance]; !ok {
				want[e.Instance] = e
			}
		}
	}
	return want
}

// reconcile brings this process's links for topic in line with what
// registration knows and shared memory confirms. It is idempotent.
func (n *Node) reconcile(topic string) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	var pubs []*Publisher
	for _, p := range n.pubs {
		if p.topic == topic {
			pubs = append(pubs, p)
		}
	}
	t := n.readers[topic]
	n.mu.Unlock()

	if len(pubs) > 0 {
		want := n.subscriberProcs(topic)
		for _, p := range pubs {
			p.syncProcs(want)
		}
	}
	if t != nil {
		t.sync(n.localPublishers(topic))
	}
}

// localPublishers returns the publishers of topic on this machine with a
// memory file, by entity id, as registration knows them.
func (n *Node) localPublishers(topic string) map[uint64]registration.Entity {
	want := map[uint64]registration.Entity{}
	for _, e := range n.agent.Topic(topic) {
		if e.Kind == registration.KindPublisher && e.Local && len(e.MemFiles) > 0 {
			want[e.ID] = e
		}
	}
	return want
}

func (n *Node) addPublisher(p *Publisher) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	n.pubs[p.id] = p
	return nil
}

func (n *Node) removePublisher(p *Publisher) {
	n.mu.Lock()
	delete(n.pubs, p.id)
	n.mu.Unlock()
}

// addSubscriber registers s with its topic's reader (created for a first
// subscriber).
func (n *Node) addSubscriber(s *Subscriber) (*topicReader, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	t, err := n.readerLocked(s.topic)
	if err != nil {
		return nil, err
	}
	t.addSubscriber(s)
	return t, nil
}

// removeSubscriber takes s out of its topic's reader; the reader of a topic
// without subscribers closes (its feeds, acks and bell go).
func (n *Node) removeSubscriber(s *Subscriber) {
	n.mu.Lock()
	t := n.readers[s.topic]
	if t == nil || t != s.t {
		n.mu.Unlock()
		return
	}
	empty := t.removeSubscriber(s)
	if empty {
		delete(n.readers, s.topic)
	}
	n.mu.Unlock()
	if empty {
		t.close()
	}
}

// RegistryStats returns the counters of the node's registration agent:
// what it received, and what it refused and why (DroppedQuota,
// DroppedFull, Evicted, DroppedSpoofed, DroppedUnverified; see
// docs/protocol.md, "Registration").
func (n *Node) RegistryStats() registration.Stats { return n.agent.Stats() }

// Topics returns every topic known in the domain, local and discovered,
// sorted by name.
func (n *Node) Topics() []TopicInfo {
	byName := map[string]*TopicInfo{}
	for _, e := range n.agent.Snapshot() {
		e = n.live(e)
		ti := byName[e.Topic]
		if ti == nil {
			ti = &TopicInfo{Name: e.Topic}
			byName[e.Topic] = ti
		}
		addEntity(ti, e)
	}
	out := make([]TopicInfo, 0, len(byName))
	for _, ti := range byName {
		out = append(out, *ti)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Topic returns what is known of one topic.
func (n *Node) Topic(name string) (TopicInfo, bool) {
	es := n.agent.Topic(name)
	ti := TopicInfo{Name: name}
	for _, e := range es {
		addEntity(&ti, n.live(e))
	}
	return ti, len(es) > 0
}

// live replaces the counters of this process's own publishers and
// subscribers, which registration announces once per refresh period, with
// their current values.
func (n *Node) live(e registration.Entity) registration.Entity {
	if e.Instance != proc.InstanceID() {
		return e
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch e.Kind {
	case registration.KindPublisher:
		if p := n.pubs[e.ID]; p != nil {
			e.Sent, e.AckTimeouts, e.Dropped = p.sent.Load(), p.ackTimeouts.Load(), p.lost.Load()
		}
	case registration.KindSubscriber:
		if t := n.readers[e.Topic]; t != nil {
			for _, s := range *t.subList.Load() {
				if s.id == e.ID {
					e.Dropped = s.dropped.Load()
				}
			}
		}
	}
	return e
}

func addEntity(ti *TopicInfo, e registration.Entity) {
	info := entityInfo(e)
	if info.Kind == KindPublisher {
		ti.Publishers = append(ti.Publishers, info)
		if ti.Type == "" {
			ti.Type = e.Type
		}
	} else {
		ti.Subscribers = append(ti.Subscribers, info)
	}
}

func entityInfo(e registration.Entity) EntityInfo {
	return EntityInfo{
		ID: e.ID, Kind: e.Kind, Topic: e.Topic, Type: e.Type, Encoding: e.Encoding,
		PID: e.PID, Instance: e.Instance, Process: e.ProcessName, Host: e.HostName,
		Local: e.Local, MemFiles: append([]string(nil), e.MemFiles...),
		Origin: e.Origin, Sent: e.Sent, Dropped: e.Dropped,
		AckTimeouts: e.AckTimeouts, LastSeen: e.LastSeen,
	}
}

// Watch returns a stream of registration changes in the domain. The stream
// is bounded: a reader that falls behind loses changes (it never blocks the
// node); call Topics to resynchronise. The returned func ends the stream.
func (n *Node) Watch(buffer int) (<-chan Change, func()) {
	in, cancel := n.agent.Watch(buffer)
	out := make(chan Change, buffer)
	done := make(chan struct{})
	var once sync.Once
	go func() {
		defer close(out)
		for {
			select {
			case <-done:
				return
			case c, ok := <-in:
				if !ok {
					return
				}
				ch := Change{Kind: c.Kind, Entity: entityInfo(c.Entity)}
				select {
				case out <- ch:
				default: // reader too slow: drop, as documented
				}
			}
		}
	}()
	return out, func() { once.Do(func() { cancel(); close(done) }) }
}
