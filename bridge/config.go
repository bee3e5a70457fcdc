package bridge

import (
	"fmt"
	"github.com/shmfs/shmfs/internal/glob"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/shmname"
)

// Defaults of Config.
const (
	DefaultListen      = "127.0.0.1:4222"
	DefaultClusterName = "shmfs"
	// MaxMessage is the largest message a bridge carries: the core's
	// default maximum.
	MaxMessage = core.DefaultMaxMessageSize
	// DefaultMaxPayload is the embedded server's max_payload: one message
	// of MaxMessage plus room for its headers, so nothing is split there.
	DefaultMaxPayload = MaxMessage + 64<<10
	DefaultAckTimeout = time.Second
	DefaultRefresh    = time.Second
	DefaultTimeout    = 5 * time.Second
	DefaultQueueBytes = 256 << 20
	DefaultSpin       = 50 * time.Microsecond
)

// Config configures a Bridge. The zero value bridges every topic of the
// default domain through an embedded NATS server on 127.0.0.1:4222.
type Config struct {
	// Core selects the shmfs domain and registration port.
	Core core.Config
	// Name is this host's name in NATS (default: the host name). Messages
	// carry it as their origin; a bridge never imports what a bridge of
	// its own Name exported, so bridges on one host must share it and
	// bridges on different hosts must not.
	Name string
	// Prefix is the first token(s) of every subject (default "shmfs").
	Prefix string
	// Domain is the domain's name in subjects (default: the shmfs domain
	// of Core). Bridges meet only within one prefix and domain; giving
	// another name joins a local domain to a differently named one.
	Domain string
	// Export selects the local topics that may go to NATS, Import the
	// remote topics that may come in (shell globs). nil: all; empty: none.
	Export, Import Patterns

	// URL is an existing NATS deployment (comma-separated server URLs);
	// empty runs an embedded server.
	URL string
	// Listen is the embedded server's client address (default
	// 127.0.0.1:4222, loopback only; e.g. 0.0.0.0:4222 to serve other
	// hosts, which then needs authentication or Insecure).
	Listen string
	// Cluster is the embedded server's route address (e.g. 0.0.0.0:6222);
	// Routes are the route URLs of other bridges' servers
	// (nats-route://host:6222). Either makes the servers one NATS cluster.
	Cluster     string
	ClusterName string
	Routes      []string
	// MaxPayload is the embedded server's max_payload (default
	// DefaultMaxPayload). Messages larger than a server's max_payload are
	// split and reassembled.
	MaxPayload int

	// Authentication: a Token, or User and Password, or an NKeySeed file.
	// With an embedded server the server requires them; they are also what
	// the bridge presents to the server (and, User/Password, on routes).
	Token, User, Password, NKeySeed string
	// TLS: certificate and key of the embedded server and (with CA) the
	// client certificate; CA verifies the peer.
	TLSCert, TLSKey, TLSCA string
	// Insecure allows listening on a non-loopback address without
	// authentication.
	Insecure bool

	// AckTimeout is the acknowledgement timeout of the local publishers of
	// imported messages (default 1 s; negative: fire and forget).
	AckTimeout time.Duration
	// Refresh is the period of the bridge's announcements (default 1 s);
	// Timeout forgets a remote bridge that announced nothing for that long
	// (default 5 s).
	Refresh, Timeout time.Duration
	// Spin is how long an exporting subscriber that finds no message polls
	// before it sleeps (SubscriberOptions.Spin): a message arriving
	// meanwhile costs no futex wake-up. Default DefaultSpin; negative: no
	// polling. Up to Spin of CPU per gap between messages.
	Spin time.Duration
	// QueueBytes bounds the imported messages waiting for local delivery
	// (default 256 MiB); beyond it they are dropped and counted.
	QueueBytes int64
	// Logf receives warnings (default: discarded).
	Logf func(format string, args ...any)
}

// Patterns select topics by shell glob (path.Match: '*', '?', '[...]').
// Nil (the default) means all.
type Patterns = glob.Patterns

func (c Config) withDefaults() (Config, error) {
	if c.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return c, fmt.Errorf("%w: host name: %w", ErrInvalidConfig, err)
		}
		c.Name = h
	}
	if len(c.Name) > 200 || !utf8.ValidString(c.Name) || strings.ContainsAny(c.Name, "\x00\n\r") {
		return c, fmt.Errorf("%w: name %q: at most 200 bytes of UTF-8 on one line", ErrInvalidConfig, c.Name)
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if err := CheckPrefix(c.Prefix); err != nil {
		return c, err
	}
	if c.Domain != "" {
		if err := shmname.CheckDomain(c.Domain); err != nil {
			return c, fmt.Errorf("%w: domain %q: %w", ErrInvalidConfig, c.Domain, err)
		}
	}
	if err := c.Export.Check(); err != nil {
		return c, fmt.Errorf("%w: export %w", ErrInvalidConfig, err)
	}
	if err := c.Import.Check(); err != nil {
		return c, fmt.Errorf("%w: import %w", ErrInvalidConfig, err)
	}
	if c.Export == nil {
		c.Export = Patterns{"*"}
	}
	if c.Import == nil {
		c.Import = Patterns{"*"}
	}
	if c.URL != "" && (c.Listen != "" || c.Cluster != "" || len(c.Routes) > 0 || c.MaxPayload != 0) {
		return c, fmt.Errorf("%w: a NATS URL excludes the embedded server's listen, cluster, routes and max payload", ErrInvalidConfig)
	}
	if c.Token != "" && (c.User != "" || c.NKeySeed != "") || c.User != "" && c.NKeySeed != "" {
		return c, fmt.Errorf("%w: give one of token, user/password, nkey", ErrInvalidConfig)
	}
	if (c.User == "") != (c.Password == "") {
		return c, fmt.Errorf("%w: user and password go together", ErrInvalidConfig)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return c, fmt.Errorf("%w: TLS certificate and key go together", ErrInvalidConfig)
	}
	if c.URL == "" {
		if c.Listen == "" {
			c.Listen = DefaultListen
		}
		if c.ClusterName == "" {
			c.ClusterName = DefaultClusterName
		}
		if c.MaxPayload == 0 {
			c.MaxPayload = DefaultMaxPayload
		}
		if c.MaxPayload < 4096 || c.MaxPayload > DefaultMaxPayload {
			return c, fmt.Errorf("%w: max payload %d (4096..%d)", ErrInvalidConfig, c.MaxPayload, DefaultMaxPayload)
		}
		auth := c.Token != "" || c.User != "" || c.NKeySeed != ""
		if err := checkAddr("listen", c.Listen, auth, c.Insecure); err != nil {
			return c, err
		}
		if c.Cluster != "" {
			if err := checkAddr("cluster", c.Cluster, c.User != "", c.Insecure); err != nil {
				return c, err
			}
		}
		if len(c.Routes) > 0 && c.Cluster == "" {
			// Routes need a cluster port of our own: take any loopback one
			// unless told; the peers connect to us only through theirs.
			c.Cluster = "127.0.0.1:0"
		}
		for _, r := range c.Routes {
			u, err := url.Parse(r)
			if err != nil || u.Host == "" || (u.Scheme != "nats-route" && u.Scheme != "nats" && u.Scheme != "tls") {
				return c, fmt.Errorf("%w: route %q: want nats-route://HOST:PORT", ErrInvalidConfig, r)
			}
		}
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.AckTimeout < 0 {
		c.AckTimeout = 0
	}
	if c.Refresh <= 0 {
		c.Refresh = DefaultRefresh
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Timeout < 2*c.Refresh {
		return c, fmt.Errorf("%w: timeout %v shorter than two refresh periods (%v)", ErrInvalidConfig, c.Timeout, c.Refresh)
	}
	if c.Spin == 0 {
		c.Spin = DefaultSpin
	}
	if c.Spin < 0 {
		c.Spin = 0
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = DefaultQueueBytes
	}
	if c.QueueBytes < MaxMessage {
		return c, fmt.Errorf("%w: queue bytes %d below one maximal message (%d)", ErrInvalidConfig, c.QueueBytes, MaxMessage)
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return c, nil
}

// checkAddr validates HOST:PORT and refuses a non-loopback address without
// authentication (unless insecure).
func checkAddr(what, addr string, auth, insecure bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %s address %q: want HOST:PORT", ErrInvalidConfig, what, addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%w: %s address %q: bad port", ErrInvalidConfig, what, addr)
	}
	if auth || insecure || isLoopback(host) {
		return nil
	}
	return fmt.Errorf("%w: %s address %q is reachable from other hosts and no authentication is set: give a token, user and password, or an nkey (--token, --user/--password, --nkey; TLS: --tls-*), or allow it explicitly (--insecure)", ErrInvalidConfig, what, addr)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
