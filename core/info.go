package core

import (
	"time"

	"github.com/shmfs/shmfs/core/registration"
)

// EntityKind tells a publisher from a subscriber (registration's kind).
type EntityKind = registration.Kind

// Entity kinds.
const (
	KindPublisher  = registration.KindPublisher
	KindSubscriber = registration.KindSubscriber
)

// EntityInfo is what registration knows about one publisher or subscriber,
// in this process or another.
type EntityInfo struct {
	ID       uint64
	Kind     EntityKind
	Topic    string
	Type     string
	Encoding string
	PID      int32
	Instance uint64
	Process  string
	Host     string
	Local    bool // on this machine
	MemFiles []string
	// Origin says where a forwarded publisher's messages come from (set by
	// bridges and gateways); empty for one of this host.
	Origin      string
	Sent        uint64
	Dropped     uint64
	AckTimeouts uint64
	LastSeen    time.Time
}

// TopicInfo gathers the entities of one topic.
type TopicInfo struct {
	Name        string
	Type        string // the publishers' type ("" when only subscribers exist)
	Publishers  []EntityInfo
	Subscribers []EntityInfo
}

// ChangeKind says what happened to an entity (registration's kind).
type ChangeKind = registration.ChangeKind

// Change kinds.
const (
	Added   = registration.Added
	Updated = registration.Updated
	Removed = registration.Removed
)

// Change is one entry of a Node's change stream.
type Change struct {
	Kind   ChangeKind
	Entity EntityInfo
}
