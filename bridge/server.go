package bridge

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// startServer runs the embedded nats-server of cfg and returns it once it
// accepts connections.
func startServer(cfg Config, id uint64) (*server.Server, error) {
	host, port, err := splitAddr(cfg.Listen)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName: fmt.Sprintf("%s-%s", sanitize(cfg.Name), hex16(id)[:8]),
		Host:       host, Port: port,
		MaxPayload: int32(cfg.MaxPayload),
		// A subscriber connection may have this much queued at the
		// server before the server calls it a slow consumer (and drops
		// the connection): room for a few maximal messages.
		MaxPending: 4 * int64(DefaultMaxPayload),
		NoSigs:     true, NoLog: true,
		// The write deadline beyond which the server drops a client that
		// does not read: large messages need time on slow links.
		WriteDeadline: 10 * time.Second,
	}
	if port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	switch {
	case cfg.Token != "":
		opts.Authorization = cfg.Token
	case cfg.User != "":
		opts.Username, opts.Password = cfg.User, cfg.Password
	case cfg.NKeySeed != "":
		pub, err := nkeyPublic(cfg.NKeySeed)
		if err != nil {
			return nil, err
		}
		opts.Nkeys = []*server.NkeyUser{{Nkey: pub}}
	}
	var tlsConf *tls.Config
	if cfg.TLSCert != "" {
		tlsConf, err = server.GenTLSConfig(&server.TLSConfigOpts{
			CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, CaFile: cfg.TLSCA, Verify: cfg.TLSCA != "", Timeout: 2,
		})
		if err != nil {
			return nil, fmt.Errorf("%w: TLS: %w", ErrInvalidConfig, err)
		}
		opts.TLSConfig, opts.TLS, opts.TLSVerify, opts.TLSTimeout = tlsConf, true, cfg.TLSCA != "", 2
	}
	if cfg.Cluster != "" {
		ch, cp, err := splitAddr(cfg.Cluster)
		if err != nil {
			return nil, err
		}
		opts.Cluster = server.ClusterOpts{
			Name: cfg.ClusterName, Host: ch, Port: cp, Username: cfg.User, Password: cfg.Password,
		}
		if cp == 0 {
			opts.Cluster.Port = server.RANDOM_PORT
		}
		if tlsConf != nil {
			opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = tlsConf, 2
		}
		for _, r := range cfg.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("%w: route %q: %w", ErrInvalidConfig, r, err)
			}
			if u.User == nil && cfg.User != "" {
				u.User = url.UserPassword(cfg.User, cfg.Password)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("%w: embedded server: %w", ErrNATS, err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("%w: embedded server did not listen on %s within 10 s (port in use? choose another with --listen)", ErrNATS, cfg.Listen)
	}
	return s, nil
}

func splitAddr(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%w: address %q: %w", ErrInvalidConfig, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%w: address %q: bad port", ErrInvalidConfig, addr)
	}
	return h, port, nil
}

// nkeyPublic reads an nkey seed file and returns the user's public key.
func nkeyPublic(seedFile string) (string, error) {
	b, err := os.ReadFile(seedFile)
	if err != nil {
		return "", fmt.Errorf("%w: nkey seed: %w", ErrInvalidConfig, err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
	if err != nil {
		return "", fmt.Errorf("%w: nkey seed %s: %w", ErrInvalidConfig, seedFile, err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("%w: nkey seed %s: %w", ErrInvalidConfig, seedFile, err)
	}
	return pub, nil
}

// sanitize makes a name usable as a NATS server name (no spaces).
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f {
			return '_'
		}
		return r
	}, s)
}
