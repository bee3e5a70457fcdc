package registration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmfs/shmfs/internal/proc"
)

const (
	// networkDatagram is the packing target in network mode, below a
	// 1500-byte Ethernet MTU so datagrams are not fragmented; a single
	// larger sample still goes out alone.
	networkDatagram = 1400
	readTimeout     = time.Second            // receiver wakes to check for Close
	sendTimeout     = 100 * time.Millisecond // per datagram
	syncTimeout     = 100 * time.Millisecond // a Sync marker that did not come back
	// syncHeaderSize: a Sync marker is a datagram header of this size with
	// no samples; bytes 16..23 hold the marker number (peers ignore them).
	syncHeaderSize = HeaderSize + 8
	closeTimeout   = 5 * time.Second
	maxTombstones  = 1024 // unregistrations repeated at the next refresh
)

// key names an entity across all hosts: owner process instance and entity id.
type key struct{ instance, id uint64 }

func entityKey(e *Entity) key { return key{e.Instance, e.ID} }

// Agent announces this process's entities and keeps the registry of all
// entities of its domain. All methods are safe for concurrent use.
type Agent struct {
	cfg         Config
	self        Entity // process fields copied into every own entity
	sender      uint64 // random id of this agent in datagram headers
	maxDatagram int
	recv, send  *net.UDPConn
	sendPort    uint16 // local port of send: own datagrams come from it
	dst         *net.UDPAddr
	started     time.Time
	stats       counters
	locals      localAddrs

	query chan struct{} // capacity 1: the receiver asks the loop to re-announce

	// syncMu guards the markers Sync sent and the receiver saw.
	syncMu             sync.Mutex
	syncSent, syncSeen uint64
	syncCh             chan struct{} // closed (and replaced) when a marker is seen

	stop chan struct{} // closed by Close
	wg   sync.WaitGroup

	// sendMu serialises building and sending datagrams so that sequence
	// numbers leave in increasing order (a refresh can never overtake an
	// unregistration). Lock order: sendMu, then mu.
	sendMu     sync.Mutex
	seq        uint64
	tombstones []Entity // unregistrations, repeated once at the next refresh
	buf        []byte

	// mu guards the fields below.
	mu                    sync.Mutex
	closed                bool
	own                   map[uint64]*Entity // own entities by id; the same pointers are in entries
	entries               map[key]*Entity
	bytes                 int // sum of entrySize over entries
	maxEntities, maxBytes int // MaxEntities, MaxRegistryBytes (tests lower them)
	topics                map[string]map[key]struct{}
	watchers              map[*watcher]struct{}
	// meta says where each entity of another agent comes from; usage and
	// bySource count and index entities per source (quotas, eviction).
	meta     map[key]entryMeta
	usage    map[source]*usage
	bySource map[source]map[key]struct{}
	// trusted are the uids whose entities are never evicted nor held to a
	// source quota: ours and root's (they can do anything to our shared
	// memory anyway). Tests change it.
	trusted map[uint32]bool
	// maxSourceEntities, maxSourceBytes: MaxSourceEntities,
	// MaxSourceBytes (tests lower them).
	maxSourceEntities, maxSourceBytes int
	// claims caches verified claims (a uid speaking for a live process);
	// the sweep clears it.
	claims map[claim]bool
}

// NewAgent validates cfg (zero fields take defaults), opens the sockets and
// starts the receiver and the refresh loop.
func NewAgent(cfg Config) (*Agent, error) {
	cfg, err := cfg.complete()
	if err != nil {
		return nil, err
	}
	recv, send, dst, err := openSockets(cfg)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	me := proc.Self()
	a := &Agent{
		cfg: cfg,
		self: Entity{
			Domain:       cfg.Domain,
			HostName:     sanitize(host, MaxHostName),
			MachineID:    sanitize(proc.MachineID(), MaxMachineID),
			BootID:       sanitize(proc.BootID(), MaxMachineID),
			Instance:     proc.InstanceID(),
			PID:          me.PID,
			StartTime:    me.StartTime,
			PIDNamespace: proc.PIDNamespace(),
			ProcessName:  sanitize(proc.Name(), MaxProcessName),
			UID:          uint32(os.Getuid()),
		},
		sender:      proc.RandomID(),
		maxDatagram: MaxDatagram,
		recv:        recv,
		send:        send,
		dst:         dst,
		started:     cfg.Now(),
		query:       make(chan struct{}, 1),
		syncCh:      make(chan struct{}),
		stop:        make(chan struct{}),
		// Sequence numbers start at the wall clock so that a new agent in
		// the same process (same instance) outranks an old one's samples.
		seq:         uint64(time.Now().UnixNano()),
		own:         make(map[uint64]*Entity),
		entries:     make(map[key]*Entity),
		maxEntities: MaxEntities,
		maxBytes:    MaxRegistryBytes,
		topics:      make(map[string]map[key]struct{}),
		watchers:    make(map[*watcher]struct{}),
		meta:        make(map[key]entryMeta),
		usage:       make(map[source]*usage),
		bySource:    make(map[source]map[key]struct{}),
		trusted:     map[uint32]bool{0: true, uint32(os.Geteuid()): true},
		claims:      make(map[claim]bool),

		maxSourceEntities: MaxSourceEntities,
		maxSourceBytes:    MaxSourceBytes,
	}
	if la, ok := send.LocalAddr().(*net.UDPAddr); ok {
		a.sendPort = uint16(la.Port)
	}
	if cfg.Mode == ModeNetwork {
		a.maxDatagram = networkDatagram
	}
	a.wg.Add(2)
	go a.receive()
	go a.loop()
	return a, nil
}

// Started returns when the receiver started (by Config.Now). A new agent
// knows every live peer about one refresh period after it.
func (a *Agent) Started() time.Time { return a.started }

// Stats returns the agent's counters.
func (a *Agent) Stats() Stats {
	s := a.stats.snapshot()
	a.mu.Lock()
	s.Entities = len(a.entries)
	a.mu.Unlock()
	return s
}

// Register adds an own entity and announces it at once, with FlagQuery if
// e.Flags has it. It fills the process fields (domain, host, instance, pid,
// start time, process name, uid) itself; e.ID must be non-zero and unique in
// this agent. A failed send is counted (Stats.SendErrors), not returned: the
// next refresh repeats the announcement.
func (a *Agent) Register(e Entity) error {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	query := e.Flags & FlagQuery
	e = a.fill(e)
	if err := validate(&e); err != nil {
		a.mu.Unlock()
		return fmt.Errorf("registration: register %v: %w", e, err)
	}
	if _, dup := a.own[e.ID]; dup {
		a.mu.Unlock()
		return fmt.Errorf("%w: registration: entity id %016x already registered", ErrInvalid, e.ID)
	}
	e.Seq = a.nextSeq()
	p := &e
	a.own[e.ID] = p
	if old := a.entries[entityKey(p)]; old != nil { // a stale copy from a previous agent of this process
		a.remove(entityKey(old), old)
	}
	a.insert(p)
	out := *p
	out.Flags |= query
	a.mu.Unlock()
	a.sendLocked([]Entity{out})
	return nil
}

// fill copies the process fields into e and resets receiver-side fields.
func (a *Agent) fill(e Entity) Entity {
	s := &a.self
	e.Domain, e.HostName, e.MachineID, e.BootID = s.Domain, s.HostName, s.MachineID, s.BootID
	e.Instance, e.PID, e.StartTime, e.PIDNamespace = s.Instance, s.PID, s.StartTime, s.PIDNamespace
	e.ProcessName, e.UID = s.ProcessName, s.UID
	e.Flags &^= FlagQuery | FlagUnregister
	e.MemFiles = slices.Clone(e.MemFiles)
	e.Local, e.LastSeen = true, a.cfg.Now()
	return e
}

// Update changes an own entity's type, encoding, memory files, buffer count,
// counters and flags (topic and kind cannot change; zero values there mean
// "unchanged"). A change of memory files, buffer count, type, encoding or
// flags is announced at once; counters go out with the next refresh.
func (a *Agent) Update(e Entity) error {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	p := a.own[e.ID]
	if p == nil {
		a.mu.Unlock()
		return fmt.Errorf("registration: update %016x: %w", e.ID, ErrNotFound)
	}
	if (e.Topic != "" && e.Topic != p.Topic) || (e.Kind != 0 && e.Kind != p.Kind) {
		a.mu.Unlock()
		return fmt.Errorf("%w: registration: update %016x: topic and kind cannot change", ErrBadValue, e.ID)
	}
	n := *p
	n.Type, n.Encoding, n.BufferCount, n.Origin = e.Type, e.Encoding, e.BufferCount, e.Origin
	n.MemFiles = slices.Clone(e.MemFiles)
	n.Sent, n.Dropped, n.AckTimeouts = e.Sent, e.Dropped, e.AckTimeouts
	n.Flags = e.Flags &^ (FlagQuery | FlagUnregister)
	if err := validate(&n); err != nil {
		a.mu.Unlock()
		return fmt.Errorf("registration: update %v: %w", n, err)
	}
	urgent := !slices.Equal(n.MemFiles, p.MemFiles) || n.BufferCount != p.BufferCount ||
		n.Type != p.Type || n.Encoding != p.Encoding || n.Flags != p.Flags || n.Origin != p.Origin
	if !urgent && sameState(p, &n) {
		a.mu.Unlock()
		return nil
	}
	if urgent {
		n.Seq, n.LastSeen = a.nextSeq(), a.cfg.Now()
	}
	a.resize(entityKey(p), entrySize(&n)-entrySize(p))
	*p = n
	a.notify(entityKey(p), Updated, p)
	a.mu.Unlock()
	if urgent {
		a.sendLocked([]Entity{n})
	}
	return nil
}

// Unregister forgets an own entity and announces FlagUnregister at once
// (repeated once with the next refresh in case the first datagram is lost).
func (a *Agent) Unregister(id uint64) error {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	p := a.own[id]
	if p == nil {
		a.mu.Unlock()
		return fmt.Errorf("registration: unregister %016x: %w", id, ErrNotFound)
	}
	delete(a.own, id)
	a.remove(entityKey(p), p)
	out := *p
	out.Seq = a.nextSeq()
	out.Flags |= FlagUnregister
	a.mu.Unlock()
	if len(a.tombstones) < maxTombstones {
		a.tombstones = append(a.tombstones, out)
	}
	a.sendLocked([]Entity{out})
	return nil
}

// Snapshot returns every known entity, own included, sorted by topic, kind,
// instance and id.
func (a *Agent) Snapshot() []Entity {
	a.mu.Lock()
	defer a.mu.Unlock()
	es := make([]Entity, 0, len(a.entries))
	for _, p := range a.entries {
		es = append(es, p.clone())
	}
	sortEntities(es)
	return es
}

// Topic returns the known entities of one topic, sorted like Snapshot.
func (a *Agent) Topic(topic string) []Entity {
	a.mu.Lock()
	defer a.mu.Unlock()
	ks := a.topics[topic]
	es := make([]Entity, 0, len(ks))
	for k := range ks {
		es = append(es, a.entries[k].clone())
	}
	sortEntities(es)
	return es
}

func sortEntities(es []Entity) {
	slices.SortFunc(es, func(x, y Entity) int {
		switch {
		case x.Topic != y.Topic:
			return cmpOrder(x.Topic < y.Topic)
		case x.Kind != y.Kind:
			return cmpOrder(x.Kind < y.Kind)
		case x.Instance != y.Instance:
			return cmpOrder(x.Instance < y.Instance)
		case x.ID != y.ID:
			return cmpOrder(x.ID < y.ID)
		}
		return 0
	})
}

func cmpOrder(less bool) int {
	if less {
		return -1
	}
	return 1
}

// Watch returns a stream of changes. It starts with an Added change for
// every entity known at the call, then follows every change. The receiver
// never waits for a slow consumer: pending changes of one entity merge into
// their net effect (see watcher; Stats.WatchCoalesced counts merges), so
// the consumer may miss intermediate states but never the latest one.
// buffer is the channel capacity. The returned func stops the stream and
// closes the channel (Close does too); the channel must be drained or the
// stream stopped, else its goroutine lives until Close.
func (a *Agent) Watch(buffer int) (<-chan Change, func()) {
	w := newWatcher(buffer, &a.stats)
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		close(w.out)
		return w.out, func() {}
	}
	for _, e := range a.snapshotLocked() {
		w.push(entityKey(&e), Added, &e)
	}
	a.watchers[w] = struct{}{}
	a.wg.Add(1)
	a.mu.Unlock()
	go func() {
		defer a.wg.Done()
		w.run()
	}()
	return w.out, func() {
		a.mu.Lock()
		delete(a.watchers, w)
		a.mu.Unlock()
		w.stop()
	}
}

func (a *Agent) snapshotLocked() []Entity {
	es := make([]Entity, 0, len(a.entries))
	for _, p := range a.entries {
		es = append(es, *p)
	}
	sortEntities(es)
	return es
}

// Close unregisters all own entities (one announcement), stops the
// goroutines and watch streams and closes the sockets. It returns within
// about closeTimeout; a second Close returns ErrClosed.
func (a *Agent) Close() error {
	a.sendMu.Lock()
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		a.sendMu.Unlock()
		return ErrClosed
	}
	a.closed = true
	var es []Entity
	for id, p := range a.own {
		out := *p
		out.Seq = a.nextSeq()
		out.Flags |= FlagUnregister
		es = append(es, out)
		delete(a.own, id)
		a.remove(entityKey(p), p)
	}
	ws := a.watchers
	a.watchers = nil
	a.mu.Unlock()
	a.sendLocked(es)
	a.sendMu.Unlock()

	close(a.stop)
	a.recv.Close() // wakes the receiver
	for w := range ws {
		w.stop()
	}
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-time.After(closeTimeout):
		err = fmt.Errorf("registration: close: goroutines did not stop within %v", closeTimeout)
	}
	a.send.Close()
	return err
}

// nextSeq returns the next sequence number; sendMu held.
func (a *Agent) nextSeq() uint64 {
	a.seq++
	return a.seq
}

// sendLocked packs es into as few datagrams as fit and sends them; sendMu
// held. Errors are counted, not returned.
func (a *Agent) sendLocked(es []Entity) {
	for len(es) > 0 {
		n, size := 0, HeaderSize
		for n < len(es) && n < 0xffff {
			s := sampleSize(&es[n])
			if n > 0 && size+s > a.maxDatagram {
				break
			}
			size += s
			n++
		}
		b, err := encode(a.buf[:0], a.sender, es[:n])
		if err == nil {
			a.buf = b
			_ = a.send.SetWriteDeadline(time.Now().Add(sendTimeout))
			_, err = a.send.WriteToUDP(b, a.dst)
		}
		if err != nil {
			a.stats.sendErrors.Add(1)
		} else {
			a.stats.datagramsSent.Add(1)
			a.stats.samplesSent.Add(uint64(n))
		}
		es = es[n:]
	}
}

// announceAll sends every own entity (and pending unregistrations) and
// returns how many samples it sent.
func (a *Agent) announceAll() int {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return 0
	}
	now := a.cfg.Now()
	es := make([]Entity, 0, len(a.own)+len(a.tombstones))
	for _, p := range a.own {
		p.Seq, p.LastSeen = a.nextSeq(), now
		es = append(es, *p)
	}
	a.mu.Unlock()
	es = append(es, a.tombstones...)
	a.tombstones = nil
	a.sendLocked(es)
	return len(es)
}

// loop announces every refresh period, runs the sweep, and answers queries
// (debounced to one re-announcement per QueryDebounce).
func (a *Agent) loop() {
	defer a.wg.Done()
	tick := time.NewTicker(a.cfg.Refresh)
	defer tick.Stop()
	var last time.Time
	var debounce *time.Timer
	var debounceC <-chan time.Time
	defer func() {
		if debounce != nil {
			debounce.Stop()
		}
	}()
	for {
		select {
		case <-a.stop:
			return
		case <-tick.C:
			if a.cfg.BeforeAnnounce != nil {
				a.cfg.BeforeAnnounce()
			}
			a.announceAll()
			last = time.Now()
			a.sweep()
		case <-a.query:
			if debounceC != nil {
				continue // already scheduled
			}
			if wait := QueryDebounce - time.Since(last); wait > 0 {
				debounce = time.NewTimer(wait)
				debounceC = debounce.C
				continue
			}
			if a.announceAll() > 0 {
				a.stats.reannounces.Add(1)
			}
			last = time.Now()
		case <-debounceC:
			debounceC = nil
			if a.announceAll() > 0 {
				a.stats.reannounces.Add(1)
			}
			last = time.Now()
		}
	}
}

// Sync returns once the receiver has handled every datagram that reached
// this agent's socket before the call: it sends a marker datagram to the
// registration address (which every agent, this one included, receives)
// and waits until the receiver sees it. The kernel queues datagrams in
// order, so a peer's announcement sent before Sync was called (a process
// that printed "ready" after registering, say) is in the registry when Sync
// returns. Bounded by ctx and by syncTimeout (a lost marker); it reports
// whether the marker came back.
func (a *Agent) Sync(ctx context.Context) bool {
	a.syncMu.Lock()
	a.syncSent++
	n := a.syncSent
	a.syncMu.Unlock()
	b := le.AppendUint32(nil, Magic)
	b = append(b, Version, syncHeaderSize)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint64(b, a.sender)
	b = le.AppendUint64(b, n)
	a.sendMu.Lock()
	_ = a.send.SetWriteDeadline(time.Now().Add(sendTimeout))
	_, err := a.send.WriteToUDP(b, a.dst)
	a.sendMu.Unlock()
	if err != nil {
		a.stats.sendErrors.Add(1)
		return false
	}
	timer := time.NewTimer(syncTimeout)
	defer timer.Stop()
	for {
		a.syncMu.Lock()
		seen, ch := a.syncSeen, a.syncCh
		a.syncMu.Unlock()
		if seen >= n {
			return true
		}
		select {
		case <-ch:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		case <-a.stop:
			return false
		}
	}
}

// syncMarker handles an own datagram: a marker of Sync wakes its waiters.
func (a *Agent) syncMarker(b []byte) {
	if len(b) < syncHeaderSize || int(b[5]) < syncHeaderSize {
		return
	}
	n := le.Uint64(b[HeaderSize:])
	a.syncMu.Lock()
	if n > a.syncSeen && n <= a.syncSent {
		a.syncSeen = n
		close(a.syncCh)
		a.syncCh = make(chan struct{})
	}
	a.syncMu.Unlock()
}

// Receiving in batches: after the first datagram the receiver takes what
// else is queued (up to batchCount datagrams, batchBytes bytes) without
// waiting, so that one read of the socket table (sender.go) serves them all.
const (
	maxUDP     = 1 << 16 // larger than any UDP payload: never truncates
	batchCount = 256
	batchBytes = 1 << 20
)

// received is one datagram of a batch: arena[start:end], from.
type received struct {
	start, end int
	from       netip.AddrPort
}

// receive reads datagrams until Close.
func (a *Agent) receive() {
	defer a.wg.Done()
	rc, err := a.recv.SyscallConn()
	if err != nil {
		a.stats.receiveErrors.Add(1)
		return
	}
	scratch := make([]byte, maxUDP)
	var arena []byte
	var batch []received
	for {
		_ = a.recv.SetReadDeadline(time.Now().Add(readTimeout))
		arena, batch = arena[:0], batch[:0]
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			for len(batch) < batchCount && len(arena) < batchBytes {
				n, from, err := unix.Recvfrom(int(fd), scratch, unix.MSG_DONTWAIT)
				switch {
				case err == unix.EINTR:
					continue
				case err == unix.EAGAIN:
					return len(batch) > 0 // nothing (more) queued: wait, or handle the batch
				case err != nil:
					rerr = err
					return true
				}
				var addr netip.AddrPort
				if sa, ok := from.(*unix.SockaddrInet4); ok {
					addr = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
				}
				arena = append(arena, scratch[:n]...)
				batch = append(batch, received{start: len(arena) - n, end: len(arena), from: addr})
			}
			return true
		})
		if err == nil {
			err = rerr
		}
		if len(batch) > 0 {
			a.handleBatch(arena, batch)
		}
		if cap(arena) > 4*maxUDP {
			arena = nil // a burst's room goes back to the heap
		}
		if err != nil {
			select {
			case <-a.stop:
				return
			default:
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			a.stats.receiveErrors.Add(1)
			select { // do not spin on a persistent error
			case <-a.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

// handleBatch handles the datagrams of a batch; those that need to be
// attributed to a uid (see apply) share one read of the socket table.
func (a *Agent) handleBatch(arena []byte, batch []received) {
	var owners *socketOwners
	lookup := func(port uint16) (uint32, bool) {
		if owners == nil {
			so := readSocketOwners()
			owners = &so
		}
		return owners.owner(port)
	}
	for _, r := range batch {
		b := arena[r.start:r.end]
		o := origin{addr: r.from, local: r.from.Addr().IsValid() && a.locals.contains(r.from.Addr())}
		if len(b) >= HeaderSize {
			o.sender = le.Uint64(b[8:])
		}
		if o.local {
			o.lookup = lookup
		}
		a.handle(b, o)
	}
}

// isOwn reports whether a datagram is one of this agent's own, looped back:
// its sender id, from this agent's send socket (nobody else can send from
// that port, so a datagram that merely copies the sender id is not own).
func (a *Agent) isOwn(b []byte, o origin) bool {
	return len(b) >= HeaderSize && le.Uint32(b) == Magic && o.sender == a.sender &&
		o.local && o.addr.Port() == a.sendPort
}
