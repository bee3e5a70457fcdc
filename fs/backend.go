package fs

import (
	"context"
	"time"

	"github.com/shmfs/shmfs/core"
)

// backend is the part of the core API the filesystem uses. The real
// implementation is coreBackend over a *core.Node; unit tests plug in an
// in-memory fake.
type backend interface {
	Topics() []core.TopicInfo
	Topic(name string) (core.TopicInfo, bool)
	Watch(buffer int) (<-chan core.Change, func())
	NewPublisher(topic, typ string) (publisher, error)
	NewSubscriber(topic string, o subOptions) (subscriber, error)
	NewMonitor(topic string) (monitor, error)
	Close() error
	config() core.Config
}

type subOptions struct {
	onlyNew bool // skip the message already in shared memory
}

type publisher interface {
	Send(ctx context.Context, data []byte) error
	WouldWait() bool
	Stats() core.PublisherStats
	ID() uint64
	Close() error
}

type subscriber interface {
	Receive(ctx context.Context) (core.Message, error)
	TryReceive() (core.Message, bool, error)
	Ready() bool
	Wait(ctx context.Context) error
	Release(m core.Message)
	Stats() core.SubscriberStats
	ID() uint64
	Close() error
}

// monitor watches a topic's messages without subscribing (core.Monitor).
type monitor interface {
	Latest() (core.Header, bool)
	Follow(fn func(core.Header)) int
	Errors() []error // publishers refused since the last call
	Close() error
}

var (
	_ publisher  = (*core.Publisher)(nil)
	_ subscriber = (*core.Subscriber)(nil)
	_ monitor    = (*core.Monitor)(nil)
	_ backend    = coreBackend{}
)

// coreBackend adapts a *core.Node.
type coreBackend struct {
	n          *core.Node
	ack        time.Duration // publishers' AckTimeout
	maxMessage int           // publishers' MaxMessageSize
	maxBuffer  int           // publishers' MaxBuffer
}

func (b coreBackend) Topics() []core.TopicInfo                   { return b.n.Topics() }
func (b coreBackend) Topic(name string) (core.TopicInfo, bool)   { return b.n.Topic(name) }
func (b coreBackend) Watch(buf int) (<-chan core.Change, func()) { return b.n.Watch(buf) }
func (b coreBackend) Close() error                               { return b.n.Close() }
func (b coreBackend) config() core.Config                        { return b.n.Config() }

func (b coreBackend) NewPublisher(topic, typ string) (publisher, error) {
	p, err := b.n.NewPublisher(topic, &core.PublisherOptions{Type: typ, AckTimeout: b.ack, MaxMessageSize: b.maxMessage, MaxBuffer: b.maxBuffer})
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (b coreBackend) NewSubscriber(topic string, o subOptions) (subscriber, error) {
	s, err := b.n.NewSubscriber(topic, &core.SubscriberOptions{OnlyNew: o.onlyNew})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (b coreBackend) NewMonitor(topic string) (monitor, error) {
	m, err := b.n.Monitor(topic)
	if err != nil {
		return nil, err
	}
	return m, nil
}
