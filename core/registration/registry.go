package registration

import (
	"net/netip"
	"slices"
	"time"

	"github.com/shmfs/shmfs/internal/proc"
)

// handle processes one received datagram from o.
func (a *Agent) handle(b []byte, o origin) {
	a.stats.datagramsReceived.Add(1)
	if a.isOwn(b, o) {
		a.stats.own.Add(1)
		a.syncMarker(b)
		return
	}
	d, err := decode(b)
	if err != nil {
		a.stats.countDrop(err)
		return
	}
	a.stats.ignoredKind.Add(uint64(d.skipped))
	now := a.cfg.Now()
	query := false
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	for i := range d.entities {
		e := &d.entities[i]
		if e.Domain != a.cfg.Domain {
			a.stats.ignoredDomain.Add(1)
			continue
		}
		if e.Instance == a.self.Instance && a.own[e.ID] != nil {
			continue // a forged or stale copy of an own entity: own state wins
		}
		if a.apply(e, &o, now) {
			query = true
		}
	}
	a.mu.Unlock()
	if query {
		select {
		case a.query <- struct{}{}:
		default:
		}
	}
}

// entryMeta records where an entity of another agent comes from: the
// source it is bound to (only samples of that source may change or remove
// it) and the sender id and address of the datagram that added it.
type entryMeta struct {
	src    source
	sender uint64
	addr   netip.AddrPort
}

// usage counts the entities of one source and their entrySize.
type usage struct{ entities, bytes int }

// claim is a uid speaking for a process.
type claim struct {
	uid uint32
	id  proc.Identity
}

// sourceOf returns the source of a datagram; ok is false for a datagram
// from this host whose sending socket is gone or shared by several users
// (it cannot be attributed).
func sourceOf(o *origin) (s source, ok bool) {
	if !o.local {
		return source{remote: o.addr.Addr()}, o.addr.Addr().IsValid()
	}
	uid, known := o.owner()
	return source{uid: uid}, known
}

// apply merges one received sample into the registry; mu held. It reports
// whether the sample was a new entity asking for re-announcements.
//
// What a sample may do depends on who sent it (sourceOf): an entity is
// bound to the source that added it, and only that source may update or
// remove it (a forged unregistration or update from another user is
// refused, whatever its sequence number, so a forged seq 2^64-1 poisons
// nothing); a local sample that claims a process in our PID namespace is
// believed only from that process's uid (or root); and every source but
// ours and root's is held to a quota (see fits).
//
// A sample of a known entity from the very address and agent (sender id)
// that added it needs no attribution: it comes from the socket that added
// the entity, whose port nobody else could use while it lived — and once
// it is closed its agent has unregistered what it had (Close). Only new
// entities and samples from elsewhere cost a read of the socket table.
func (a *Agent) apply(e *Entity, o *origin, now time.Time) (query bool) {
	k := entityKey(e)
	old := a.entries[k]
	unregister := e.Flags&FlagUnregister != 0
	var src source
	if old != nil {
		m := a.meta[k]
		if o.addr.IsValid() && m.addr == o.addr && m.sender == o.sender {
			src = m.src
		} else {
			s, known := sourceOf(o)
			switch {
			case !known:
				a.stats.unverified.Add(1)
				return false
			case s != m.src:
				a.stats.spoofed.Add(1)
				return false
			}
			src = s
		}
		if e.Seq <= old.Seq {
			a.stats.stale.Add(1)
			return false
		}
		if !unregister && !sameIdentity(old, e) {
			a.stats.spoofed.Add(1) // an entity's process cannot change
			return false
		}
	} else if !unregister {
		s, known := sourceOf(o)
		if !known {
			a.stats.unverified.Add(1)
			return false
		}
		src = s
	}
	a.stats.samplesReceived.Add(1)
	if unregister {
		if old != nil {
			a.stats.unregistered.Add(1) // before watchers hear of the removal
			a.remove(k, old)
		}
		return false
	}
	query = e.Flags&FlagQuery != 0
	e.Flags &^= FlagQuery
	e.Local = e.MachineID != "" && e.MachineID == a.self.MachineID
	e.LastSeen = now
	if !src.remote.IsValid() {
		e.UID = src.uid // what the kernel says, not what the sample says
	}
	if old == nil {
		if a.sameNamespace(e) && e.Instance != a.self.Instance {
			id := proc.Identity{PID: e.PID, StartTime: e.StartTime}
			// A late datagram of a process that already died must not
			// bring its entities back until the timeout.
			if !id.Alive() {
				a.stats.dead.Add(1)
				return false
			}
			if !src.remote.IsValid() && !a.mayClaim(src.uid, id) {
				a.stats.spoofed.Add(1)
				return false
			}
		}
		if !a.fits(src, entrySize(e), 1) {
			return false
		}
		p := new(Entity)
		*p = *e
		a.meta[k] = entryMeta{src: src, sender: o.sender, addr: o.addr}
		a.insert(p)
		if query {
			a.stats.queries.Add(1)
		}
		return query
	}
	if grow := entrySize(e) - entrySize(old); grow > 0 && !a.fits(src, grow, 0) {
		return false
	}
	a.resize(k, entrySize(e)-entrySize(old))
	changed := !sameState(old, e)
	if old.Topic != e.Topic {
		a.unindex(k, old.Topic)
		a.index(k, e.Topic)
	}
	*old = *e
	if changed {
		a.notify(k, Updated, old)
	}
	return false
}

// sameIdentity reports whether two samples of one entity name the same
// process.
func sameIdentity(x, y *Entity) bool {
	return x.PID == y.PID && x.StartTime == y.StartTime && x.PIDNamespace == y.PIDNamespace &&
		x.MachineID == y.MachineID && x.BootID == y.BootID
}

// mayClaim reports whether a socket of uid may announce entities of the
// live local process id: root may speak for anyone, others only for a
// process running as them. A process whose credentials cannot be read
// (gone meanwhile) may not be claimed. mu held.
func (a *Agent) mayClaim(uid uint32, id proc.Identity) bool {
	if uid == 0 {
		return true
	}
	c := claim{uid, id}
	if a.claims[c] {
		return true
	}
	cr, err := proc.ReadCreds(int(id.PID))
	if err != nil || !cr.HasUID(uid) {
		return false
	}
	// The pid could have been reused between the liveness check and the
	// read: check the start time again.
	if st, _, err := proc.Stat(int(id.PID)); err != nil || st != id.StartTime {
		return false
	}
	if len(a.claims) >= maxClaims {
		clear(a.claims)
	}
	a.claims[c] = true
	return true
}

// maxClaims bounds the claim cache.
const maxClaims = 4096

// fits makes room for n new entities (0 or 1) of src taking size more
// bytes, and reports whether there is room. A source other than a trusted
// uid is held to its quota (DroppedQuota). When the registry as a whole is
// full, entities of the untrusted source that takes the most bytes are
// evicted (Evicted) — for a trusted source always, for an untrusted one
// only while that source takes more than the newcomer's would — so that
// no user can crowd ours or root's topics out of the registry, and the
// untrusted share is split fairly; otherwise the sample is dropped
// (DroppedFull). mu held.
func (a *Agent) fits(src source, size, n int) bool {
	u := a.usage[src]
	if u == nil {
		u = &usage{}
	}
	trusted := a.isTrusted(src)
	if !trusted && (u.entities+n > a.maxSourceEntities || u.bytes+size > a.maxSourceBytes) {
		a.stats.quota.Add(1)
		return false
	}
	for len(a.entries)+n > a.maxEntities || a.bytes+size > a.maxBytes {
		var victim source
		most := -1
		for s, v := range a.usage {
			if !a.isTrusted(s) && s != src && v.bytes > most {
				victim, most = s, v.bytes
			}
		}
		if most < 0 || (!trusted && most <= u.bytes+size) {
			a.stats.full.Add(1)
			return false
		}
		for k := range a.bySource[victim] {
			a.stats.evicted.Add(1)
			a.remove(k, a.entries[k])
			break
		}
	}
	return true
}

// isTrusted reports whether s is our uid or root's.
func (a *Agent) isTrusted(s source) bool { return !s.remote.IsValid() && a.trusted[s.uid] }

// entrySize approximates the memory an entity takes in the registry.
func entrySize(e *Entity) int { return sampleSize(e) + 256 }

// sameNamespace reports whether e's PID can be checked here: same machine,
// same boot, same PID namespace.
func (a *Agent) sameNamespace(e *Entity) bool {
	s := &a.self
	return s.MachineID != "" && e.MachineID == s.MachineID && e.BootID == s.BootID &&
		s.PIDNamespace != 0 && e.PIDNamespace == s.PIDNamespace
}

// sameState compares every announced field except Seq.
func sameState(x, y *Entity) bool {
	return x.Domain == y.Domain && x.HostName == y.HostName && x.MachineID == y.MachineID &&
		x.BootID == y.BootID && x.Instance == y.Instance && x.PID == y.PID &&
		x.StartTime == y.StartTime && x.PIDNamespace == y.PIDNamespace &&
		x.ProcessName == y.ProcessName && x.UID == y.UID && x.Kind == y.Kind && x.ID == y.ID &&
		x.Topic == y.Topic && x.Type == y.Type && x.Encoding == y.Encoding &&
		slices.Equal(x.MemFiles, y.MemFiles) && x.BufferCount == y.BufferCount &&
		x.Sent == y.Sent && x.Dropped == y.Dropped && x.AckTimeouts == y.AckTimeouts &&
		x.Flags == y.Flags && x.Origin == y.Origin
}

// insert adds an entity (with its meta, if it is another agent's, set
// before); mu held.
func (a *Agent) insert(p *Entity) {
	k := entityKey(p)
	a.entries[k] = p
	a.bytes += entrySize(p)
	if m, ok := a.meta[k]; ok {
		u := a.usage[m.src]
		if u == nil {
			u = &usage{}
			a.usage[m.src] = u
			a.bySource[m.src] = map[key]struct{}{}
		}
		u.entities++
		u.bytes += entrySize(p)
		a.bySource[m.src][k] = struct{}{}
	}
	a.index(k, p.Topic)
	a.notify(k, Added, p)
}

// resize accounts for an entity whose entrySize changes by d; mu held.
func (a *Agent) resize(k key, d int) {
	a.bytes += d
	if m, ok := a.meta[k]; ok {
		a.usage[m.src].bytes += d
	}
}

// remove deletes an entity; mu held.
func (a *Agent) remove(k key, p *Entity) {
	delete(a.entries, k)
	a.bytes -= entrySize(p)
	if m, ok := a.meta[k]; ok {
		delete(a.meta, k)
		if u := a.usage[m.src]; u != nil {
			u.entities--
			u.bytes -= entrySize(p)
			delete(a.bySource[m.src], k)
			if u.entities == 0 {
				delete(a.usage, m.src)
				delete(a.bySource, m.src)
			}
		}
	}
	a.unindex(k, p.Topic)
	a.notify(k, Removed, p)
}

func (a *Agent) index(k key, topic string) {
	m := a.topics[topic]
	if m == nil {
		m = make(map[key]struct{})
		a.topics[topic] = m
	}
	m[k] = struct{}{}
}

func (a *Agent) unindex(k key, topic string) {
	if m := a.topics[topic]; m != nil {
		delete(m, k)
		if len(m) == 0 {
			delete(a.topics, topic)
		}
	}
}

func (a *Agent) notify(k key, kind ChangeKind, p *Entity) {
	for w := range a.watchers {
		w.push(k, kind, p)
	}
}

// sweep expires silent entities and removes those of dead local processes.
// The /proc reads happen without mu; a process checked dead stays dead.
func (a *Agent) sweep() {
	defer a.stats.sweeps.Add(1)
	now := a.cfg.Now()
	check := make(map[proc.Identity]bool)
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	clear(a.claims) // credentials may change; verify again from now on
	for k, p := range a.entries {
		if a.own[p.ID] == p {
			continue // own entities never expire
		}
		if now.Sub(p.LastSeen) > a.cfg.Timeout {
			a.stats.expired.Add(1)
			a.remove(k, p)
			continue
		}
		if p.Instance != a.self.Instance && a.sameNamespace(p) {
			check[proc.Identity{PID: p.PID, StartTime: p.StartTime}] = true
		}
	}
	a.mu.Unlock()
	dead := 0
	for id := range check {
		if id.Alive() {
			delete(check, id)
		} else {
			dead++
		}
	}
	if dead == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, p := range a.entries {
		if p.Instance != a.self.Instance && a.sameNamespace(p) && check[proc.Identity{PID: p.PID, StartTime: p.StartTime}] {
			a.stats.deadRemoved.Add(1)
			a.remove(k, p)
		}
	}
}
