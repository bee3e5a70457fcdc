package registration

import (
	"fmt"
	"net"
	"time"

	"github.com/shmfs/shmfs/internal/shmname"
)

// Mode selects the transport.
type Mode uint8

const (
	// ModeLocal broadcasts to 127.255.255.255: every process on this host,
	// nothing beyond it.
	ModeLocal Mode = 0
	// ModeNetwork sends to an IPv4 multicast group (Config.Group) with
	// Config.TTL on Config.Interface; datagrams loop back to this host too.
	ModeNetwork Mode = 1
)

// Defaults. The port differs from eCAL's 14000 and the group from eCAL's
// 239.0.0.1 so that shmfs and eCAL can run side by side.
const (
	DefaultPort    = 14190
	DefaultGroup   = "239.0.0.2"
	DefaultTTL     = 1
	DefaultRefresh = time.Second
	DefaultTimeout = 10 * time.Second
	// LocalBroadcast is the local-mode destination (and receive) address.
	LocalBroadcast = "127.255.255.255"
	// QueryDebounce bounds how often an agent re-announces in answer to
	// FlagQuery samples.
	QueryDebounce = 20 * time.Millisecond
	// MaxEntities and MaxRegistryBytes bound the registry (bytes: encoded
	// size plus 256 per entity). MaxSourceEntities and MaxSourceBytes bound
	// what one source may hold, unless it is trusted: a source is the uid
	// owning the sending socket (another host's address in network mode);
	// trusted are our own uid and root. When the registry is full, entities
	// of the untrusted source holding the most are evicted to make room
	// (Stats.Evicted); what finds no room is dropped and counted
	// (Stats.DroppedQuota, DroppedFull). Own entities are always accepted.
	MaxEntities       = 1 << 16
	MaxRegistryBytes  = 32 << 20
	MaxSourceEntities = 4096
	MaxSourceBytes    = 4 << 20
)

// Config configures an Agent. Zero fields take the defaults of DefaultConfig.
type Config struct {
	Domain    string
	Port      int
	Mode      Mode
	Group     string // network mode: IPv4 multicast group
	TTL       int    // network mode: multicast TTL, 1..255
	Interface string // network mode: interface name; "" lets the routing table choose
	// Refresh is the announce period; liveness of local processes is checked
	// as often. Timeout expires entities whose owner fell silent; it must
	// exceed Refresh.
	Refresh, Timeout time.Duration
	// Now is the clock for LastSeen and expiry (a fake clock in tests);
	// timers still run in real time.
	Now func() time.Time
	// BeforeAnnounce, if set, runs before every periodic announcement (on
	// the refresh loop, with no lock held), so that the owner can Update
	// counters just in time: announcements then carry counts at most
	// microseconds old instead of up to a whole period.
	BeforeAnnounce func()
}

// DefaultConfig returns the default configuration: local mode, domain
// "default", port 14190, refresh 1 s, timeout 10 s.
func DefaultConfig() Config {
	return Config{
		Domain:  shmname.DefaultDomain,
		Port:    DefaultPort,
		Mode:    ModeLocal,
		Group:   DefaultGroup,
		TTL:     DefaultTTL,
		Refresh: DefaultRefresh,
		Timeout: DefaultTimeout,
		Now:     time.Now,
	}
}

// complete fills zero fields with defaults and validates the result.
func (c Config) complete() (Config, error) {
	d := DefaultConfig()
	if c.Domain == "" {
		c.Domain = d.Domain
	}
	if c.Port == 0 {
		c.Port = d.Port
	}
	if c.Group == "" {
		c.Group = d.Group
	}
	if c.TTL == 0 {
		c.TTL = d.TTL
	}
	if c.Refresh == 0 {
		c.Refresh = d.Refresh
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if err := shmname.CheckDomain(c.Domain); err != nil {
		return c, fmt.Errorf("%w: config: %w", ErrInvalid, err)
	}
	if c.Port < 1 || c.Port > 65535 {
		return c, fmt.Errorf("%w: config: port %d", ErrInvalid, c.Port)
	}
	if c.Mode != ModeLocal && c.Mode != ModeNetwork {
		return c, fmt.Errorf("%w: config: mode %d", ErrInvalid, c.Mode)
	}
	if c.Refresh < time.Millisecond {
		return c, fmt.Errorf("%w: config: refresh %v below 1ms", ErrInvalid, c.Refresh)
	}
	if c.Timeout <= c.Refresh {
		return c, fmt.Errorf("%w: config: timeout %v must exceed refresh %v", ErrInvalid, c.Timeout, c.Refresh)
	}
	if c.Mode == ModeNetwork {
		ip := net.ParseIP(c.Group).To4()
		if ip == nil || !ip.IsMulticast() {
			return c, fmt.Errorf("%w: config: group %q is not an IPv4 multicast address", ErrInvalid, c.Group)
		}
		if c.TTL < 1 || c.TTL > 255 {
			return c, fmt.Errorf("%w: config: ttl %d", ErrInvalid, c.TTL)
		}
	}
	return c, nil
}
