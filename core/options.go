package core

import (
	"fmt"
	"os"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/shmfs/shmfs/core/memfile"
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
	DefaultWindow         = memfile.DefaultSlots
	DefaultMinSize        = memfile.DefaultMinSize
	DefaultMaxBuffer      = memfile.DefaultMaxBuffer
	DefaultReserve        = memfile.DefaultReserve
	DefaultMaxMessageSize = memfile.DefaultMaxMessage
	DefaultConnectTimeout = time.Second
	DefaultDiscoveryWait  = 100 * time.Millisecond
)

// PublisherOptions configure a Publisher. The zero value (or nil) gives the
// documented defaults.
type PublisherOptions struct {
	// Type is the topic type/encoding string, e.g. "raw", "text",
	// "protobuf:pkg.Msg". Default "raw". Publishers and subscribers asking
	// for another type get ErrTypeMismatch.
	Type string
	// Window is the number of messages the memory file holds, a power of
	// two (default 1024: at 100 kHz a subscriber may stall 10 ms without a
	// loss; the slot table costs 64 KiB). In ack mode it is how far the slowest subscriber
	// process may fall behind before Send waits (back-pressure, like a
	// socket's buffer); 1 is eCAL's handshake (every Send waits for the
	// acknowledgement of its message). Without acks it is how far a
	// subscriber may fall behind before it loses messages.
	Window int
	// MinSize is the initial size in bytes of the memory file's data area
	// (default 64 KiB).
	MinSize int
	// MaxBuffer bounds how far the data area grows so that it holds a whole
	// window of messages (default 4 MiB); beyond it, big messages fill the
	// window by bytes before they fill it by count. A single message larger
	// than half the data area always makes it grow, to twice the message
	// plus Reserve.
	MaxBuffer int
	// Reserve is the over-provisioning in percent when the data area grows
	// for a large message (default 50).
	Reserve int
	// AckTimeout > 0 selects ack mode: Send waits while a subscriber
	// process is a whole window behind, at most AckTimeout; Flush and Close
	// wait until every subscriber process acknowledged everything. 0 (the
	// default) is fire and forget.
	AckTimeout time.Duration
	// MaxMessageSize bounds one message (default 64 MiB).
	MaxMessageSize int
	// ConnectTimeout bounds how long the first Send waits for subscribers
	// that registration already knows of to connect (default 1 s; negative
	// disables the wait).
	ConnectTimeout time.Duration
	// DiscoveryWait is how long a new publisher listens for answers to its
	// registration query before it checks the topic's type and sends its
	// first message (default 100 ms; negative disables). It is skipped when
	// the node has listened for a whole refresh period already.
	DiscoveryWait time.Duration
	// Checksum makes every message carry the CRC-32C of its payload in
	// Header.Hash (hardware-accelerated: about 0.1 ms per MiB here), so that
	// subscribers with VerifyChecksum detect corrupted payloads.
	// Default false (Hash 0).
	Checksum bool
	// Mode is the permission of the memory file: 0600 (default) or e.g.
	// 0660 for group access.
	Mode os.FileMode
	// Origin says where the messages come from when they are forwarded
	// from elsewhere: "<system>:<where>", e.g. "nats:hostB" from a NATS
	// bridge, "ecal:<host group>" from an eCAL gateway; empty for a
	// publisher of this host. A forwarder does not forward a publisher back
	// into the system its origin names (docs/protocol.md, "Forwarders").
	Origin string
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
	if err := def(&p.Window, DefaultWindow, "Window", 1); err != nil {
		return p, err
	}
	if p.Window > memfile.MaxSlots || p.Window&(p.Window-1) != 0 {
		return p, fmt.Errorf("%w: Window = %d (a power of two up to %d)", ErrInvalidOption, p.Window, memfile.MaxSlots)
	}
	if err := def(&p.MinSize, DefaultMinSize, "MinSize", 1); err != nil {
		return p, err
	}
	if err := def(&p.MaxBuffer, DefaultMaxBuffer, "MaxBuffer", 1); err != nil {
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
	if p.Mode == 0 {
		p.Mode = 0o600
	}
	if p.Mode&^0o660 != 0 {
		return p, fmt.Errorf("%w: Mode %#o (allowed: 0600 or 0660)", ErrInvalidOption, p.Mode)
	}
	if len(p.Origin) > 255 || !utf8.ValidString(p.Origin) {
		return p, fmt.Errorf("%w: Origin of %d bytes (at most 255 bytes of UTF-8)", ErrInvalidOption, len(p.Origin))
	}
	return p, nil
}

// SubscriberOptions configure a Subscriber. The zero value (or nil) gives the
// documented defaults.
type SubscriberOptions struct {
	// Type, when not empty, must equal the publishers' type, else
	// NewSubscriber (or, for publishers appearing later, Receive) reports
	// ErrTypeMismatch and their messages are ignored.
	Type string
	// ZeroCopy makes ReceiveFunc hand out a view of the payload in shared
	// memory instead of a copy. The view is valid until the callback
	// returns; in ack mode the publisher cannot overwrite it meanwhile
	// unless this subscriber is marked lagging (then ReceiveFunc reports
	// ErrOverrun after the callback).
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
	// MaxMessageSize: larger messages are dropped and counted (default 64 MiB).
	MaxMessageSize int
	// Spin, when > 0, makes a Receive that finds nothing poll for up to this
	// long before it sleeps: a message that arrives meanwhile is taken
	// without a futex wake-up (a few microseconds less latency) at the cost
	// of a busy core for up to Spin per Receive. Default 0.
	Spin time.Duration
	// Publishers, when not nil, selects the publishers whose messages this
	// subscriber takes (e.g. only those without an Origin); it is asked
	// once per publisher as it appears. Default: all.
	Publishers func(EntityInfo) bool
}

func (o *SubscriberOptions) withDefaults() (SubscriberOptions, error) {
	var s SubscriberOptions
	if o != nil {
		s = *o
	}
	if s.MaxMessageSize == 0 {
		s.MaxMessageSize = DefaultMaxMessageSize
	}
	if s.MaxMessageSize < 1 || s.Spin < 0 {
		return s, fmt.Errorf("%w: MaxMessageSize = %d, Spin = %v", ErrInvalidOption, s.MaxMessageSize, s.Spin)
	}
	return s, nil
}
