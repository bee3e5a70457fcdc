package registration

import (
	"slices"
	"time"

	"github.com/shmfs/shmfs/internal/proc"
)

// handle processes one received datagram.
func (a *Agent) handle(b []byte) {
	a.stats.datagramsReceived.Add(1)
	if len(b) >= HeaderSize && le.Uint32(b) == Magic && le.Uint64(b[8:]) == a.sender {
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
		if a.apply(e, now) {
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

// apply merges one received sample into the registry; mu held. It reports
// whether the sample was a new entity asking for re-announcements.
func (a *Agent) apply(e *Entity, now time.Time) (query bool) {
	k := entityKey(e)
	old := a.entries[k]
	if old != nil && e.Seq <= old.Seq {
		a.stats.stale.Add(1)
		return false
	}
	a.stats.samplesReceived.Add(1)
	if e.Flags&FlagUnregister != 0 {
		if old != nil {
			a.remove(k, old)
			a.stats.unregistered.Add(1)
		}
		return false
	}
	query = e.Flags&FlagQuery != 0
	e.Flags &^= FlagQuery
	e.Local = e.MachineID != "" && e.MachineID == a.self.MachineID
	e.LastSeen = now
	if old == nil {
		// A late datagram of a process that already died must not bring
		// its entities back until the timeout.
		if a.sameNamespace(e) && e.Instance != a.self.Instance &&
			!(proc.Identity{PID: e.PID, StartTime: e.StartTime}).Alive() {
			a.stats.dead.Add(1)
			return false
		}
		if len(a.entries) >= a.maxEntities || a.bytes+entrySize(e) > a.maxBytes {
			a.stats.full.Add(1)
			return false
		}
		p := new(Entity)
		*p = *e
		a.insert(p)
		if query {
			a.stats.queries.Add(1)
		}
		return query
	}
	if grow := entrySize(e) - entrySize(old); grow > 0 && a.bytes+grow > a.maxBytes {
		a.stats.full.Add(1)
		return false
	}
	a.bytes += entrySize(e) - entrySize(old)
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

// insert adds an entity; mu held.
func (a *Agent) insert(p *Entity) {
	k := entityKey(p)
	a.entries[k] = p
	a.bytes += entrySize(p)
	a.index(k, p.Topic)
	a.notify(k, Added, p)
}

// remove deletes an entity; mu held.
func (a *Agent) remove(k key, p *Entity) {
	delete(a.entries, k)
	a.bytes -= entrySize(p)
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
	for k, p := range a.entries {
		if a.own[p.ID] == p {
			continue // own entities never expire
		}
		if now.Sub(p.LastSeen) > a.cfg.Timeout {
			a.remove(k, p)
			a.stats.expired.Add(1)
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
			a.remove(k, p)
			a.stats.deadRemoved.Add(1)
		}
	}
}
