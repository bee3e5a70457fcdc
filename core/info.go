package core

import "time"

// EntityKind tells a publisher from a subscriber.
type EntityKind uint8

// Entity kinds.
const (
	KindPublisher  EntityKind = 1
	KindSubscriber EntityKind = 2
)

func (k EntityKind) String() string {
	switch k {
	case KindPublisher:
		return "publisher"
	case KindSubscriber:
		return "subscriber"
	}
	return "unknown"
}

// EntityInfo is what registration knows about one publisher or subscriber,
// in this process or another.
type EntityInfo struct {
	ID          uint64
	Kind        EntityKind
	Topic       string
	Type        string
	Encoding    string
	PID         int32
	Instance    uint64
	Process     string
	Host        string
	Local       bool // on this machine
	MemFiles    []string
	BufferCount int
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

// ChangeKind says what happened to an entity.
type ChangeKind uint8

// Change kinds.
const (
	Added   ChangeKind = 1
	Updated ChangeKind = 2
	Removed ChangeKind = 3
)

func (k ChangeKind) String() string {
	switch k {
	case Added:
		return "added"
	case Updated:
		return "updated"
	case Removed:
		return "removed"
	}
	return "unknown"
}

// Change is one entry of a Node's change stream.
type Change struct {
	Kind   ChangeKind
	Entity EntityInfo
}
