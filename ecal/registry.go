package ecal

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/shmfs/shmfs/internal/proc"
)

// Entity is an eCAL publisher or subscriber that registration announced.
type Entity struct {
	Kind     Cmd // CmdRegPub or CmdRegSub
	Topic    Topic
	LastSeen time.Time
}

// Key identifies an entity: eCAL's topic id is unique within a process.
type Key struct {
	Pub bool
	PID int32
	TID string
}

func (e *Entity) key() Key { return Key{Pub: e.Kind == CmdRegPub, PID: e.Topic.PID, TID: e.Topic.ID} }

// gatewayAttr marks the topics the gateway registers in eCAL, so that a
// gateway never imports what a gateway exported.
const gatewayAttr = "shmfs.gateway"

// registry holds the eCAL entities of this host group, except the
// gateway's own, as registration announces them. Entities leave on
// unregistration, when their process is gone (checked every sweep by PID
// and executable), or after the registration timeout.
type registry struct {
	hostGroup string
	selfPID   int32
	timeout   time.Duration
	changed   func()
	// acceptGateways: see Config.acceptGateways.
	acceptGateways bool

	mu       sync.Mutex
	entities map[Key]*Entity
	stats    RegistryStats
}

// RegistryStats counts what registration received.
type RegistryStats struct {
	Samples, Invalid, Foreign, Own, Gateway uint64
	Added, Removed, Dead, Expired           uint64
}

func newRegistry(hostGroup string, timeout time.Duration, changed func()) *registry {
	return &registry{hostGroup: hostGroup, selfPID: int32(os.Getpid()), timeout: timeout,
		changed: changed, entities: map[Key]*Entity{}}
}

// apply takes one received sample.
func (r *registry) apply(s *Sample, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Samples++
	switch s.Cmd {
	case CmdRegPub, CmdRegSub, CmdUnregPub, CmdUnregSub:
	case CmdUnregProc:
		if s.Process != nil && r.local(s.Process.HostGroup, s.Process.HostName) {
			r.removePID(s.Process.PID)
		}
		return
	default:
		return
	}
	t := s.Topic
	if t == nil || t.Name == "" || t.PID <= 0 || t.ID == "" {
		r.stats.Invalid++
		return
	}
	if !r.local(t.HostGroup, t.HostName) {
		r.stats.Foreign++
		return
	}
	if t.PID == r.selfPID {
		r.stats.Own++
		return
	}
	if _, ok := t.Attr[gatewayAttr]; ok && !r.acceptGateways {
		r.stats.Gateway++
		return
	}
	kind := CmdRegPub
	if s.Cmd == CmdRegSub || s.Cmd == CmdUnregSub {
		kind = CmdRegSub
	}
	k := Key{Pub: kind == CmdRegPub, PID: t.PID, TID: t.ID}
	if s.Cmd == CmdUnregPub || s.Cmd == CmdUnregSub {
		if _, ok := r.entities[k]; ok {
			delete(r.entities, k)
			r.stats.Removed++
			r.changed()
		}
		return
	}
	old := r.entities[k]
	e := &Entity{Kind: kind, Topic: *t, LastSeen: now}
	r.entities[k] = e
	if old == nil {
		r.stats.Added++
		r.changed()
	} else if !sameEntity(&old.Topic, t) {
		r.changed()
	}
}

// local: eCAL connects through shared memory only within its host group
// (the host name unless [network] host_group_name says otherwise).
func (r *registry) local(group, host string) bool {
	if group == "" {
		group = host
	}
	return group != "" && group == r.hostGroup
}

func (r *registry) removePID(pid int32) {
	for k := range r.entities {
		if k.PID == pid {
			delete(r.entities, k)
			r.stats.Removed++
			r.changed()
		}
	}
}

// sameEntity compares what the gateway acts on.
func sameEntity(a, b *Topic) bool {
	if a.Name != b.Name || a.ConnLocal != b.ConnLocal || ShmfsType(a.Type()) != ShmfsType(b.Type()) {
		return false
	}
	fa, fb := a.SHMFiles(), b.SHMFiles()
	if len(fa) != len(fb) {
		return false
	}
	for i := range fa {
		if fa[i] != fb[i] {
			return false
		}
	}
	return true
}

// sweep removes entities of dead processes and silent ones.
func (r *registry) sweep(now time.Time) {
	r.mu.Lock()
	pids := map[int32]string{}
	for k, e := range r.entities {
		if now.Sub(e.LastSeen) > r.timeout {
			delete(r.entities, k)
			r.stats.Expired++
			r.changed()
			continue
		}
		pids[k.PID] = e.Topic.ProcessName
	}
	r.mu.Unlock()
	for pid, exe := range pids {
		if processAlive(pid, exe) {
			continue
		}
		r.mu.Lock()
		for k := range r.entities {
			if k.PID == pid {
				delete(r.entities, k)
				r.stats.Dead++
				r.changed()
			}
		}
		r.mu.Unlock()
	}
}

// snapshot returns copies of all entities.
func (r *registry) snapshot() []Entity {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Entity, 0, len(r.entities))
	for _, e := range r.entities {
		out = append(out, *e)
	}
	return out
}

func (r *registry) statsCopy() RegistryStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// processAlive reports whether pid runs (not a zombie) and, when exe is an
// absolute path (eCAL registers the executable's path as pname), runs that
// executable: a reused PID of another program is dead. Unknown counts as
// alive, as in internal/proc.
func processAlive(pid int32, exe string) bool {
	_, state, err := proc.Stat(int(pid))
	if err != nil {
		return !errors.Is(err, proc.ErrNoProcess)
	}
	if state == 'Z' || state == 'X' || state == 'x' {
		return false
	}
	if !strings.HasPrefix(exe, "/") {
		return true
	}
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return true
	}
	return strings.TrimSuffix(link, " (deleted)") == exe
}
