package main

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/shmfs/shmfs/bridge"
	"github.com/shmfs/shmfs/cmd/shmfs/internal/metrics"
)

var bridgeCommand = &command{
	name:  "bridge",
	args:  "",
	short: "carry topics between hosts over NATS (runs until interrupted)",
	long: `Connects this host's shmfs domain to the same domain on other hosts through
NATS, in the foreground until interrupted (Ctrl-C, SIGTERM).

Local topics that another host's bridge has subscribers for are sent to NATS
on the subject <prefix>.<domain>.<topic>; topics published on other hosts
appear here like local ones ('shmfs ls', 'shmfs sub', the mount), each
remote publisher as a local publisher with origin "nats:<host>" (shown by
'shmfs info' and the mount's header). A bridge never sends on what it or
another bridge received from NATS, so bridges can run on every host.
--export and --import select topics by shell glob (default: all).

Without --nats the bridge runs an embedded NATS server, on loopback only
unless --listen says otherwise; --cluster and --routes join the embedded
servers of several hosts into one NATS cluster. A server reachable from
other hosts needs --token, --user/--password or --nkey (TLS with --tls-*),
or --insecure.

Delivery over NATS is at most once: messages lost on the way (a reconnect,
a bridge or server restart, a slow reader) are counted per topic, shown to
subscribers as dropped ('shmfs info', the mount's events) and in the
bridge's statistics (--stats, and at exit). Messages up to 64 MiB travel;
above a server's max_payload they are split and reassembled.
Details: docs/bridge.md.`,
	examples: `  shmfs bridge                                    # loopback only: for bridges on this host
  shmfs bridge --listen 0.0.0.0:4222 --cluster 0.0.0.0:6222 --user u --password p
  shmfs bridge --listen 0.0.0.0:4222 --user u --password p --routes nats-route://hosta:6222
  shmfs bridge --nats nats://nats.example:4222 --export 'camera*' --import cmd
  shmfs bridge --stats 10s                        # print counters every 10 s
  shmfs bridge --metrics 127.0.0.1:9465           # Prometheus scrapes http://127.0.0.1:9465/metrics`,
	run: runBridge,
}

func runBridge(c *cli, args []string) error {
	fs := c.flags()
	var cfg bridge.Config
	fs.StringVar(&cfg.URL, "nats", "", "use this NATS deployment (URL, comma-separated for several) instead of the embedded server")
	fs.StringVar(&cfg.Listen, "listen", "", "embedded server: client address HOST:PORT (default "+bridge.DefaultListen+")")
	fs.StringVar(&cfg.Cluster, "cluster", "", "embedded server: accept routes from other bridges' servers on HOST:PORT")
	fs.StringArrayVar(&cfg.Routes, "routes", nil, "embedded server: join the server at this route URL, nats-route://HOST:PORT (repeatable)")
	fs.StringVar(&cfg.ClusterName, "cluster-name", "", "embedded server: cluster name (default "+bridge.DefaultClusterName+"; the same on every host)")
	maxPayload := fs.Int("max-payload", 0, "embedded server: max_payload in bytes (default 64 MiB + 64 KiB; larger messages are split)")
	fs.StringArrayVar((*[]string)(&cfg.Export), "export", nil, "send local topics matching this glob (repeatable; default: all)")
	fs.StringArrayVar((*[]string)(&cfg.Import), "import", nil, "receive remote topics matching this glob (repeatable; default: all)")
	fs.StringVar(&cfg.Prefix, "prefix", bridge.DefaultPrefix, "first subject token(s): subjects are PREFIX.DOMAIN.TOPIC")
	fs.StringVar(&cfg.Name, "name", "", "this host's name in NATS (default: the host name; the same for every bridge of this host)")
	fs.StringVar(&cfg.Token, "token", "", "authentication token (server and client)")
	fs.StringVar(&cfg.User, "user", "", "user name (server, client and routes; with --password)")
	fs.StringVar(&cfg.Password, "password", "", "password (with --user)")
	fs.StringVar(&cfg.NKeySeed, "nkey", "", "nkey seed `FILE` (server and client)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate `FILE` (embedded server; with --tls-ca also the client certificate)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "TLS key `FILE`")
	fs.StringVar(&cfg.TLSCA, "tls-ca", "", "CA `FILE` to verify the peer (and require client certificates)")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "allow a server reachable from other hosts without authentication")
	ackTimeout := fs.Duration("ack-timeout", bridge.DefaultAckTimeout, "how long an imported message waits for the local subscribers; 0 = fire and forget")
	fs.DurationVar(&cfg.Spin, "spin", bridge.DefaultSpin, "how long the bridge polls for the next local message before it sleeps (0: never polls; less latency and CPU per message, up to this much CPU per gap)")
	statsEvery := fs.Duration("stats", 0, "print the counters on standard error this often (0: only at exit)")
	metricsAddr := fs.String("metrics", "", metricsFlagHelp+"; the bridge's counters (shmfs_bridge_*)")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected arguments %q (the command takes only flags)", fs.Args())
	}
	if *ackTimeout < 0 || *statsEvery < 0 || cfg.Spin < 0 {
		return usageErrorf("--ack-timeout, --spin and --stats must not be negative")
	}
	if cfg.Spin == 0 {
		cfg.Spin = -1
	}
	cfg.AckTimeout = *ackTimeout
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = -1
	}
	cfg.MaxPayload = *maxPayload
	for flag, p := range map[string]bridge.Patterns{"import": cfg.Import, "export": cfg.Export} {
		if err := p.Check(); err != nil {
			return usageErrorf("--%s: %s", flag, trimBridge(err))
		}
	}
	cfg.Core = c.config()
	cfg.Logf = func(format string, args ...any) { fmt.Fprintf(c.stderr, "shmfs: bridge: "+format+"\n", args...) }
	if cfg.URL != "" {
		for _, f := range []string{"listen", "cluster", "routes", "cluster-name", "max-payload"} {
			if fs.Changed(f) {
				return usageErrorf("--%s configures the embedded server: it does not go with --nats", f)
			}
		}
	}
	ctx, stop := signalContext()
	defer stop()
	b, err := bridge.Start(cfg)
	if err != nil {
		if errors.Is(err, bridge.ErrInvalidConfig) {
			return usageErrorf("%s", trimBridge(err))
		}
		if errors.Is(err, bridge.ErrNATS) && cfg.URL != "" {
			return fmt.Errorf("%s; is a NATS server running there? (without --nats the bridge runs its own)", trimBridge(err))
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%s; choose another address with --listen or --cluster", trimBridge(err))
		}
		return errors.New(trimBridge(err))
	}
	where := "embedded server " + b.URL()
	if cfg.URL != "" {
		where = b.URL()
	}
	if u := b.ClusterURL(); u != "" {
		where += ", routes on " + u
	}
	fmt.Fprintf(c.stderr, "shmfs: bridge: domain %q as %q via NATS %s, subjects %s; Ctrl-C to stop\n",
		c.domain, b.Name(), where, b.Subject("TOPIC"))
	if *metricsAddr != "" {
		stopMetrics, err := serveMetrics(c, *metricsAddr, metrics.NewBridge(b.Stats))
		if err != nil {
			_ = b.Close()
			return err
		}
		defer stopMetrics()
	}
	var tick <-chan time.Time
	if *statsEvery > 0 {
		t := time.NewTicker(*statsEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-tick:
			printBridgeStats(c, b.Stats())
			continue
		case <-ctx.Done():
		}
		break
	}
	err = b.Close()
	printBridgeStats(c, b.Stats())
	return err
}

func printBridgeStats(c *cli, s bridge.Stats) {
	t := s.Total
	fmt.Fprintf(c.stderr, "shmfs: bridge: out %d messages (%s), in %d (%s); lost on the way %d, duplicates %d, queue drops %d, errors %d, slow-consumer drops %d, reconnects %d, invalid %d; %d bridges, %d topics exported, %d publishers imported\n",
		t.MessagesOut, formatBytes(float64(t.BytesOut)), t.MessagesIn, formatBytes(float64(t.BytesIn)),
		t.Gaps, t.Duplicates, t.QueueDrops, t.Errors, s.SlowConsumer, s.Reconnects, s.Invalid, s.Bridges, s.Exports, s.Imports)
}

// trimBridge drops the package prefixes of the bridge's errors: the
// command's error line already says "shmfs: bridge:".
func trimBridge(err error) string {
	msg := err.Error()
	for _, p := range []string{"bridge: invalid configuration: ", "bridge: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	return msg
}
