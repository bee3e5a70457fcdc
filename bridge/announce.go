package bridge

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/shmfs/shmfs/core/registration"
)

// Announcements. Every bridge publishes on <prefix>.<domain>.%bridge, at
// once when what it announces changes, when it hears of a bridge it did
// not know, and every Refresh period: which local publishers it can export
// (so that remote hosts show the topics before any message) and which
// topics have local subscribers (interest: the other bridges export only
// those). A bridge that closes says "bye"; one that is silent for Timeout
// is forgotten. docs/bridge.md has the JSON.

type announcement struct {
	Bridge     string   `json:"bridge"`   // 16 hex digits, random per bridge run
	Host       string   `json:"host"`     // the bridge's Name
	Instance   string   `json:"instance"` // 16 hex digits: its process's shmfs instance id
	Sent       int64    `json:"sent"`     // unix ns
	Bye        bool     `json:"bye,omitempty"`
	Publishers []annPub `json:"publishers"`
	Interest   []string `json:"interest"`
}

type annPub struct {
	ID    string `json:"id"` // 16 hex digits: the shmfs publisher's entity id
	Topic string `json:"topic"`
	Type  string `json:"type"`
}

// Bounds of a decoded announcement (it comes from the network).
const (
	maxAnnounce      = 16 << 20
	maxAnnouncedPubs = 1 << 16
)

// remote is what a bridge knows of another bridge.
type remote struct {
	id       uint64
	host     string
	instance uint64
	seen     time.Time // local time of its last announcement
	sent     int64     // its clock at its last announcement
	pubs     map[uint64]remotePub
	interest map[string]bool
}

type remotePub struct {
	topic, typ string
}

// decodeAnnouncement validates an announcement.
func decodeAnnouncement(b []byte) (*remote, bool, error) {
	if len(b) > maxAnnounce {
		return nil, false, fmt.Errorf("%w: announcement of %d bytes", ErrInvalidMessage, len(b))
	}
	var a announcement
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, false, fmt.Errorf("%w: announcement: %w", ErrInvalidMessage, err)
	}
	r := &remote{host: a.Host, sent: a.Sent, pubs: map[uint64]remotePub{}, interest: map[string]bool{}}
	var err error
	if r.id, err = strconv.ParseUint(a.Bridge, 16, 64); err != nil || r.id == 0 {
		return nil, false, fmt.Errorf("%w: announcement: bridge id %q", ErrInvalidMessage, a.Bridge)
	}
	if r.instance, err = strconv.ParseUint(a.Instance, 16, 64); err != nil {
		return nil, false, fmt.Errorf("%w: announcement: instance %q", ErrInvalidMessage, a.Instance)
	}
	if a.Host == "" || len(a.Host) > 200 || !utf8.ValidString(a.Host) {
		return nil, false, fmt.Errorf("%w: announcement: host %q", ErrInvalidMessage, a.Host)
	}
	if len(a.Publishers) > maxAnnouncedPubs || len(a.Interest) > maxAnnouncedPubs {
		return nil, false, fmt.Errorf("%w: announcement: %d publishers, %d topics", ErrInvalidMessage, len(a.Publishers), len(a.Interest))
	}
	for _, p := range a.Publishers {
		id, err := strconv.ParseUint(p.ID, 16, 64)
		if err != nil || id == 0 {
			return nil, false, fmt.Errorf("%w: announcement: publisher id %q", ErrInvalidMessage, p.ID)
		}
		if err := registration.CheckTopic(p.Topic); err != nil {
			return nil, false, fmt.Errorf("%w: announcement: %w", ErrInvalidMessage, err)
		}
		if len(p.Type) > 1024 || !utf8.ValidString(p.Type) {
			return nil, false, fmt.Errorf("%w: announcement: type of %d bytes", ErrInvalidMessage, len(p.Type))
		}
		if p.Type == "" {
			p.Type = "raw"
		}
		r.pubs[id] = remotePub{topic: p.Topic, typ: p.Type}
	}
	for _, t := range a.Interest {
		if err := registration.CheckTopic(t); err != nil {
			return nil, false, fmt.Errorf("%w: announcement: %w", ErrInvalidMessage, err)
		}
		r.interest[t] = true
	}
	return r, a.Bye, nil
}

// localView is what this bridge announces.
type localView struct {
	pubs     map[uint64]remotePub
	interest map[string]bool
}

func (v localView) equal(o localView) bool {
	if len(v.pubs) != len(o.pubs) || len(v.interest) != len(o.interest) {
		return false
	}
	for id, p := range v.pubs {
		if o.pubs[id] != p {
			return false
		}
	}
	for t := range v.interest {
		if !o.interest[t] {
			return false
		}
	}
	return true
}

func (b *Bridge) encodeAnnouncement(v localView, bye bool) []byte {
	a := announcement{
		Bridge: hex16(b.id), Host: b.cfg.Name, Instance: hex16(b.instance), Sent: time.Now().UnixNano(), Bye: bye,
		Publishers: make([]annPub, 0, len(v.pubs)), Interest: make([]string, 0, len(v.interest)),
	}
	for id, p := range v.pubs {
		a.Publishers = append(a.Publishers, annPub{ID: hex16(id), Topic: p.topic, Type: p.typ})
	}
	sort.Slice(a.Publishers, func(i, j int) bool { return a.Publishers[i].ID < a.Publishers[j].ID })
	for t := range v.interest {
		a.Interest = append(a.Interest, t)
	}
	sort.Strings(a.Interest)
	out, _ := json.Marshal(a) // plain strings and numbers: cannot fail
	return out
}
