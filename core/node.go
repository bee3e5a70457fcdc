package core

import (
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmfs/shmfs/core/registration"
	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shm"
)

// Node is one process's membership in a domain: the registration agent, and
// the publishers, subscribers and memory-file observers of this process.
// OpenNode returns the same Node (reference counted) for the same domain and
// port, so that all users in a process share mappings and observers.
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
	// subs are this process's subscribers, by topic.
	subs map[string]map[*Subscriber]struct{}
	// subLists mirror subs as slices that observers read without locks or
	// allocation; replaced whenever subs changes.
	subLists map[string]*atomic.Pointer[[]*Subscriber]
	// epoch counts subscribers created; see observer.baseEpoch.
	epoch atomic.Uint64
	// remotes are the publishers (of any process, this one included) that
	// local subscribers read from, by entity id.
	remotes map[uint64]*remotePub
	closed  bool
}

var (
	nodesMu sync.Mutex
	nodes   = map[string]*Node{}
)

// OpenNode joins the domain of cfg. Close it when done; the last Close of a
// domain's Node stops its registration and releases its shared memory.
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
		n.refs++
		return n, nil
	}
	n := &Node{
		key: key, refs: 1,
		stop:     make(chan struct{}),
		pubs:     map[uint64]*Publisher{},
		subs:     map[string]map[*Subscriber]struct{}{},
		subLists: map[string]*atomic.Pointer[[]*Subscriber]{},
		remotes:  map[uint64]*remotePub{},
	}
	rc.BeforeAnnounce = n.announceCounters
	agent, err := registration.NewAgent(rc)
	if err != nil {
		return nil, fmt.Errorf("shmfs: start registration for domain %q: %w", cfg.Domain, err)
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

// withOwnNode opens a Node for cfg and creates an entity on it that closes
// the node when it closes itself (own marks it so); the package-level
// NewPublisher and NewSubscriber use it.
func withOwnNode[T any](cfg Config, create func(*Node) (T, error), own func(T)) (T, error) {
	var zero T
	n, err := OpenNode(cfg)
	if err != nil {
		return zero, err
	}
	v, err := create(n)
	if err != nil {
		n.Close()
		return zero, err
	}
	own(v)
	return v, nil
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
	for _, m := range n.subs {
		for s := range m {
			subs = append(subs, s)
		}
	}
	n.mu.Unlock()
	for _, p := range pubs {
		p.close(false)
	}
	for _, s := range subs {
		s.close(false)
	}
	close(n.stop)
	n.wg.Wait()
	n.mu.Lock()
	remotes := make([]*remotePub, 0, len(n.remotes))
	for id, r := range n.remotes {
		remotes = append(remotes, r)
		delete(n.remotes, id)
	}
	n.mu.Unlock()
	// Outside n.mu: observers that are stopping take it.
	for _, r := range remotes {
		r.close(false)
	}
	return n.agent.Close()
}

// run follows registration: it connects publishers to new subscriber
// processes and attaches observers to new publishers' memory files. A
// periodic pass repairs anything a dropped change notification missed.
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
	for t := range n.subs {
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

// announceCounters copies the publishers' counters into their registration
// entities; registration calls it right before each periodic announcement.
func (n *Node) announceCounters() {
	n.mu.Lock()
	pubs := make([]*Publisher, 0, len(n.pubs))
	for _, p := range n.pubs {
		pubs = append(pubs, p)
	}
	n.mu.Unlock()
	for _, p := range pubs {
		p.announceCounters()
	}
}

// reconcile brings this process's connections for topic in line with what
// registration knows. It is idempotent.
func (n *Node) reconcile(topic string) {
	entities := n.agent.Topic(topic)
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
	hasSubs := len(n.subs[topic]) > 0
	n.mu.Unlock()

	// Publisher side: one connection per subscriber process.
	if len(pubs) > 0 {
		want := map[uint64]registration.Entity{}
		for _, e := range entities {
			if e.Kind == registration.KindSubscriber && e.Local {
				want[e.Instance] = e
			}
		}
		for _, p := range pubs {
			p.syncConnections(want)
		}
	}

	// Subscriber side: one remotePub (observers of its memory files) per
	// local publisher of the topic, while this process has subscribers.
	live := map[uint64]registration.Entity{}
	if hasSubs {
		for _, e := range entities {
			if e.Kind == registration.KindPublisher && e.Local && len(e.MemFiles) > 0 {
				live[e.ID] = e
			}
		}
	}
	registered := map[uint64]bool{}
	for _, e := range entities {
		if e.Kind == registration.KindPublisher {
			registered[e.ID] = true
		}
	}
	n.mu.Lock()
	if n.closed { // Close ran meanwhile: start nothing
		n.mu.Unlock()
		return
	}
	var closing []*remotePub
	for id, r := range n.remotes {
		if r.topic != topic {
			continue
		}
		if e, ok := live[id]; !ok || !sameFiles(e.MemFiles, r.files) {
			closing = append(closing, r)
			delete(n.remotes, id)
		}
	}
	var added []*remotePub
	for id, e := range live {
		if _, ok := n.remotes[id]; ok {
			continue
		}
		r := newRemotePub(n, e)
		n.remotes[id] = r
		added = append(added, r)
	}
	n.mu.Unlock()
	for _, r := range closing {
		r.close(!registered[r.id])
	}
	for _, r := range added {
		r.start()
		for _, s := range n.subscribersOf(topic) {
			if s.opts.Type != "" && s.opts.Type != r.typ {
				s.report(fmt.Errorf("%w: publisher of topic %q (pid %d) has type %q, subscriber wants %q; its messages are ignored",
					ErrTypeMismatch, topic, r.who.PID, r.typ, s.opts.Type))
			}
		}
	}
}

func sameFiles(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// subscribersOf returns the local subscribers of topic. The slice is shared:
// do not modify it.
func (n *Node) subscribersOf(topic string) []*Subscriber {
	n.mu.Lock()
	l := n.subListLocked(topic)
	n.mu.Unlock()
	return *l.Load()
}

// subListLocked returns topic's lock-free subscriber list, creating it
// empty. Lists are never removed, so an observer keeps its topic's pointer
// and reads it per message without n.mu. Caller holds n.mu.
func (n *Node) subListLocked(topic string) *atomic.Pointer[[]*Subscriber] {
	l := n.subLists[topic]
	if l == nil {
		l = new(atomic.Pointer[[]*Subscriber])
		l.Store(&[]*Subscriber{})
		n.subLists[topic] = l
	}
	return l
}

// subscribersChanged rebuilds the lock-free list of topic's subscribers.
// Caller holds n.mu.
func (n *Node) subscribersChanged(topic string) {
	list := make([]*Subscriber, 0, len(n.subs[topic]))
	for s := range n.subs[topic] {
		list = append(list, s)
	}
	n.subListLocked(topic).Store(&list)
}

// remotesOf returns the remote publishers of topic currently observed.
func (n *Node) remotesOf(topic string) []*remotePub {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []*remotePub
	for _, r := range n.remotes {
		if r.topic == topic {
			out = append(out, r)
		}
	}
	return out
}

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

// live replaces the counters of this process's own publishers, which
// registration announces once per refresh period, with their current values.
func (n *Node) live(e registration.Entity) registration.Entity {
	if e.Kind != registration.KindPublisher || e.Instance != proc.InstanceID() {
		return e
	}
	n.mu.Lock()
	p := n.pubs[e.ID]
	n.mu.Unlock()
	if p != nil {
		e.Sent, e.AckTimeouts = p.sent.Load(), p.ackTimeouts.Load()
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
		BufferCount: int(e.BufferCount), Sent: e.Sent, Dropped: e.Dropped,
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
