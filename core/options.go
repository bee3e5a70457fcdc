package core

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/shmfs/shmfs/internal/shmname"
)

// Config selects the domain a Node belongs to and how it registers.
// The zero value means: domain from SHMFS_DOMAIN (else "default"), port from
// SHMFS_PORT (else registration's default port), default timings.
type Config struct {
	// Domain separates independent systems on one host.
	Domain string
	// Port is the UDP registration port (default 14190 or SHMFS_PORT).
	Port int
	// Refresh is the registration announce period (default 1 s).
	Refresh time.Duration
	// Timeout expires silent remote entities (default 10 s).
	Timeout time.Duration
	// Network selects multicast registration instead of local broadcast.
	Network bool
	// Group, TTL and Interface configure network mode.
	Group     string
	TTL       int
	Interface string
}

func (c Config) withDefaults() (Config, error) {
	if c.Domain == "" {
		c.Domain = os.Getenv("SHMFS_DOMAIN")
	}
	if c.Domain == "" {
		c.Domain = shmname.DefaultDomain
	}
	if err := shmname.CheckDomain(c.Domain); err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	if c.Port == 0 {
		if s := os.Getenv("SHMFS_PORT"); s != "" {
			p, err := strconv.Atoi(s)
			if err != nil || p <= 0 || p > 65535 {
				return c, fmt.Errorf("%w: SHMFS_PORT=%q is not a port number", ErrInvalidOption, s)
			}
			c.Port = p
		}
	}
	if c.Port < 0 || c.Port > 65535 {
		return c, fmt.Errorf("%w: port %d out of range", ErrInvalidOption, c.Port)
	}
	return c, nil
}

// Defaults of PublisherOptions.
const (
	DefaultBufferCount    = 1
	DefaultMinSize        = 4096
	DefaultReserve        = 50
	DefaultMaxMessageSize = 64 << 20
	DefaultConnectTimeout = time.Second
	DefaultDiscoveryWait  = 100 * time.Millisecond
	DefaultLockTimeout    = 5 * time.Second
	DefaultQueueSize      = 64
)

// PublisherOptions configure a Publisher. The zero value (or nil) gives the
// documented defaults.
type PublisherOptions struct {
	// Config selects the domain (used by the package-level NewPublisher only;
	// Node.NewPublisher uses the node's).
	Config Config
	// Type is the topic type/encoding string, e.g. "raw", "text",
	// "protobuf:pkg.Msg". Default "raw". Subscribers asking for another type
	// get ErrTypeMismatch.
	Type string
	// BufferCount is the number of memory files written round robin
	// (default 1). With 2 or more, a Send proceeds while readers still hold
	// the previous buffer.
	BufferCount int
	// MinSize is the minimum payload capacity of a memory file (default 4096).
	MinSize int
	// Reserve is the over-provisioning in percent when a memory file grows
	// (default 50).
	Reserve int
	// AckTimeout > 0 makes every Send wait, under one shared deadline, until
	// every connected subscriber process acknowledged the message. 0 (the
	// default) is fire and forget.
	AckTimeout time.Duration
	// MaxMessageSize bounds one message (default 64 MiB).
	MaxMessageSize int
	// ConnectTimeout bounds how long the first Send waits for subscribers
	// that registration already knows of to connect (default 1 s; negative
	// disables the wait).
	ConnectTimeout time.Duration
	// DiscoveryWait is how long a new publisher listens for answers to its
	// registration query before its first Send (default 100 ms; negative
	// disables). Together with ConnectTimeout this makes a subscriber that
	// already runs receive a new publisher's first message.
	DiscoveryWait time.Duration
	// Checksum makes every message carry the CRC-32C of its payload in
	// Header.Hash (hardware-accelerated: about 0.1 ms per MiB here), so that
	// subscribers with VerifyChecksum detect corrupted or torn payloads.
	// Default false (Hash 0).
	Checksum bool
	// LockTimeout bounds waiting for a memory file's mutex (default 5 s).
	LockTimeout time.Duration
	// Mode is the permission of the shared-memory files: 0600 (default) or
	// e.g. 0660 for group access.
	Mode os.FileMode
}

func (o *PublisherOptions) withDefaults() (PublisherOptions, error) {
	var p PublisherOptions
	if o != nil {
		p = *o
	}
	if p.Type == "" {
		p.Type = "raw"
	}
	def := func(v *int, d int, name string, min int) error {
		if *v == 0 {
			*v = d
		}
		if *v < min {
			return fmt.Errorf("%w: %s = %d (minimum %d)", ErrInvalidOption, name, *v, min)
		}
		return nil
	}
	if err := def(&p.BufferCount, DefaultBufferCount, "BufferCount", 1); err != nil {
		return p, err
	}
	if p.BufferCount > 64 {
		return p, fmt.Errorf("%w: BufferCount = %d (maximum 64)", ErrInvalidOption, p.BufferCount)
	}
	if err := def(&p.MinSize, DefaultMinSize, "MinSize", 1); err != nil {
		return p, err
	}
	if err := def(&p.Reserve, DefaultReserve, "Reserve", 0); err != nil {
		return p, err
	}
	if err := def(&p.MaxMessageSize, DefaultMaxMessageSize, "MaxMessageSize", 1); err != nil {
		return p, err
	}
	if p.AckTimeout < 0 {
		return p, fmt.Errorf("%w: AckTimeout = %v", ErrInvalidOption, p.AckTimeout)
	}
	if p.ConnectTimeout == 0 {
		p.ConnectTimeout = DefaultConnectTimeout
	}
	if p.DiscoveryWait == 0 {
		p.DiscoveryWait = DefaultDiscoveryWait
	}
	if p.LockTimeout <= 0 {
		p.LockTimeout = DefaultLockTimeout
	}
	if p.Mode == 0 {
		p.Mode = 0o600
	}
	if p.Mode&^0o660 != 0 {
		return p, fmt.Errorf("%w: Mode %#o (allowed: 0600 or 0660)", ErrInvalidOption, p.Mode)
	}
	return p, nil
}

// SubscriberOptions configure a Subscriber. The zero value (or nil) gives the
// documented defaults.
type SubscriberOptions struct {
	// Config selects the domain (package-level NewSubscriber only).
	Config Config
	// Type, when not empty, must equal the publishers' type, else
	// NewSubscriber (or, for publishers appearing later, Receive) reports
	// ErrTypeMismatch.
	Type string
	// ZeroCopy makes the subscriber read the payload in place: ReceiveFunc's
	// view points into shared memory and nothing is copied or queued; a
	// message overwritten before it was read counts as dropped. Without
	// ZeroCopy (the default) every message is copied into a queue.
	ZeroCopy bool
	// VerifyChecksum checks the CRC-32C of every message whose publisher
	// sends one (PublisherOptions.Checksum): a mismatch drops the message,
	// counts it (SubscriberStats.ChecksumErrors) and makes the next Receive
	// return an error wrapping ErrChecksum.
	VerifyChecksum bool
	// OnlyNew skips the message that is already in shared memory when the
	// subscriber connects to a publisher: it receives only messages
	// published after it was created (or, for publishers that appear later,
	// after it connected to them). Default false: a new subscriber gets
	// each publisher's latest message at once.
	OnlyNew bool
	// IDs, when not empty, keeps only messages whose ID is listed.
	IDs []int64
	// QueueSize bounds the copy queue (default 64 messages). In ack mode a
	// full queue holds back the acknowledgement (back-pressure); otherwise
	// the oldest message is dropped and counted.
	QueueSize int
	// MaxMessageSize: larger messages are dropped and counted (default 64 MiB).
	MaxMessageSize int
	// Spin, when > 0, makes Receive poll for up to this long before it
	// blocks, for the lowest latency at the cost of CPU. Default 0.
	Spin time.Duration
}

func (o *SubscriberOptions) withDefaults() (SubscriberOptions, error) {
	var s SubscriberOptions
	if o != nil {
		s = *o
	}
	if s.QueueSize == 0 {
		s.QueueSize = DefaultQueueSize
	}
	if s.QueueSize < 1 {
		return s, fmt.Errorf("%w: QueueSize = %d", ErrInvalidOption, s.QueueSize)
	}
	if s.MaxMessageSize == 0 {
		s.MaxMessageSize = DefaultMaxMessageSize
	}
	if s.MaxMessageSize < 1 || s.Spin < 0 {
		return s, fmt.Errorf("%w: MaxMessageSize = %d, Spin = %v", ErrInvalidOption, s.MaxMessageSize, s.Spin)
	}
	return s, nil
}
