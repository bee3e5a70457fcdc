package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/shmfs/shmfs/ecal"
)

var ecalCommand = &command{
	name:  "ecal",
	args:  "",
	short: "bridge eCAL 5.x processes of this host and a shmfs domain (runs until interrupted)",
	long: `Runs a gateway between the eCAL 5.x processes of this host (eCAL's local
mode: registration on UDP 127.255.255.255:14000, shared-memory transport)
and a shmfs domain, in the foreground until interrupted (Ctrl-C, SIGTERM).

An eCAL publisher of an imported topic appears in shmfs as a publisher of
the same topic ('shmfs ls', 'shmfs sub', the mount); a shmfs publisher of an
exported topic appears in eCAL as a publisher that eCAL subscribers receive
from. With neither --import nor --export, every topic goes both ways; the
gateway never re-exports what it imported, nor imports what it exported.
Patterns are shell globs ('*' also matches '/'); --import matches eCAL
names, --export shmfs names. eCAL names with '/', '%' or control
characters appear in shmfs with those bytes escaped as %XX.

Types: eCAL's encoding and type name become "encoding:name" (e.g.
"proto:pb.People.Person", "base:std::string"); a topic without type is
"raw". Messages are acknowledged end to end: an eCAL publisher in ack mode
gets its acknowledgement after the shmfs subscribers acknowledged, and a
shmfs message is acknowledged after every eCAL subscriber read it
(--ecal-ack-timeout).

The gateway imitates glibc's process-shared mutex and condition variable of
glibc 2.25-2.37; it refuses to start on other versions (see
docs/ecal.md). eCAL 6, eCAL's network mode, and its UDP and TCP data layers
are not spoken.`,
	examples: `  shmfs ecal                                  # everything, both ways
  shmfs ecal --import 'camera*' --export cmd   # only these
  shmfs ecal --ecal-ack-timeout 0             # exported messages: fire and forget
  shmfs sub person                            # an eCAL topic, seen from shmfs`,
	run: runECAL,
}

// ecalFlags are the gateway's flags, shared by 'ecal' and 'mount --ecal'.
type ecalFlags struct {
	imports, exports []string
	port             *int
	hostGroup        *string
	ackTimeout       *time.Duration
	ecalAckTimeout   *time.Duration
	buffers          *int
	condvarLayout    *string
}

// defaultGatewayAck is the default of both acknowledgement timeouts, as
// for 'pub' and the mount.
const defaultGatewayAck = time.Second

// gatewayAck maps the CLI's "0 = fire and forget" to the gateway's
// negative value (its 0 means the default).
func gatewayAck(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// addECALFlags adds the gateway's flags. The mount names them --ecal-import
// and --ecal-export and uses its own --ack-timeout for imported messages.
func addECALFlags(fs *pflag.FlagSet, mount bool) *ecalFlags {
	f := &ecalFlags{}
	prefix := ""
	if mount {
		prefix = "ecal-"
	}
	fs.StringArrayVar(&f.imports, prefix+"import", nil, "import eCAL topics matching this glob (repeatable; default: all, unless only --"+prefix+"export is given)")
	fs.StringArrayVar(&f.exports, prefix+"export", nil, "export shmfs topics matching this glob (repeatable; default: all, unless only --"+prefix+"import is given)")
	f.port = fs.Int("ecal-port", ecal.DefaultPort, "eCAL registration port ([network] multicast_port of ecal.ini)")
	f.hostGroup = fs.String("ecal-host-group", "", "eCAL host group ([network] host_group_name; default: the host name)")
	if !mount {
		f.ackTimeout = fs.Duration("ack-timeout", defaultGatewayAck, "how long an imported message waits for the shmfs subscribers; 0 = fire and forget")
	}
	f.ecalAckTimeout = fs.Duration("ecal-ack-timeout", defaultGatewayAck, "how long an exported message waits for every eCAL subscriber to read it; 0 = fire and forget")
	f.buffers = fs.Int("ecal-buffers", 1, "memory files per exported eCAL publisher (eCAL's memfile_buffer_count)")
	f.condvarLayout = fs.String("condvar-layout", "auto", "glibc condition-variable layout: auto (from the glibc version) or grefs (assert the pre-2.41 layout on glibc 2.38-2.40)")
	return f
}

// config builds the gateway's configuration; importAck is the shmfs-side
// acknowledgement timeout of imported messages.
func (f *ecalFlags) config(c *cli, stderr io.Writer, importAck time.Duration) (ecal.Config, error) {
	cfg := ecal.Config{
		Core: c.config(), Import: f.imports, Export: f.exports, Port: *f.port,
		HostGroup: *f.hostGroup, BufferCount: *f.buffers,
		AckTimeout: gatewayAck(importAck), ECALAckTimeout: gatewayAck(*f.ecalAckTimeout),
		Logf: func(format string, args ...any) { fmt.Fprintf(stderr, "shmfs: ecal: "+format+"\n", args...) },
	}
	if f.imports != nil && f.exports == nil {
		cfg.Export = ecal.Patterns{}
	}
	if f.exports != nil && f.imports == nil {
		cfg.Import = ecal.Patterns{}
	}
	for flag, p := range map[string]ecal.Patterns{"import": f.imports, "export": f.exports} {
		if err := p.Check(); err != nil {
			return cfg, usageErrorf("--%s: %s", flag, strings.TrimPrefix(err.Error(), ecal.ErrInvalidConfig.Error()+": "))
		}
	}
	if *f.port <= 0 || *f.port > 65535 {
		return cfg, usageErrorf("--ecal-port %d out of range (1..65535)", *f.port)
	}
	if *f.buffers < 1 || *f.buffers > 64 {
		return cfg, usageErrorf("--ecal-buffers %d out of range (1..64)", *f.buffers)
	}
	if importAck < 0 || *f.ecalAckTimeout < 0 {
		return cfg, usageErrorf("acknowledgement timeouts must not be negative (0 means fire and forget)")
	}
	switch *f.condvarLayout {
	case "auto":
	case "grefs":
		cfg.AssumeGRefs = true
	default:
		return cfg, usageErrorf("--condvar-layout %q: want auto or grefs", *f.condvarLayout)
	}
	return cfg, nil
}

// startGateway starts the gateway and turns its errors into one line with
// the fix.
func startGateway(cfg ecal.Config) (*ecal.Gateway, error) {
	g, err := ecal.Start(cfg)
	switch {
	case err == nil:
		return g, nil
	case errors.Is(err, ecal.ErrUnsupported):
		return nil, fmt.Errorf("%w; refusing to start rather than corrupt eCAL's locks (see docs/ecal.md)", trimECAL(err))
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("%w; another program holds UDP port %d without SO_REUSEADDR: choose eCAL's port with --ecal-port", trimECAL(err), cfg.Port)
	}
	return nil, trimECAL(err)
}

// trimECAL drops the package prefix of the gateway's errors: the command's
// error line already says "shmfs: ecal:".
type trimmed struct{ err error }

func (t trimmed) Error() string { return strings.TrimPrefix(t.err.Error(), "ecal: ") }
func (t trimmed) Unwrap() error { return t.err }

func trimECAL(err error) error { return trimmed{err} }

func runECAL(c *cli, args []string) error {
	fs := c.flags()
	f := addECALFlags(fs, false)
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected arguments %q (the command takes only flags)", fs.Args())
	}
	cfg, err := f.config(c, c.stderr, *f.ackTimeout)
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	g, err := startGateway(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "shmfs: ecal: bridging eCAL (port %d, host group %q, glibc %v) and shmfs domain %q; Ctrl-C to stop\n",
		cfg.Port, hostGroupOf(cfg), g.Glibc(), c.domain)
	<-ctx.Done()
	err = g.Close()
	st := g.Stats()
	fmt.Fprintf(c.stderr, "shmfs: ecal: %d messages imported (%d not delivered in time), %d exported (%d eCAL acknowledgements timed out)\n",
		st.Imported, st.ImportErrors, st.Exported, st.ExportAckTimeouts)
	return err
}

func hostGroupOf(cfg ecal.Config) string {
	if cfg.HostGroup != "" {
		return cfg.HostGroup
	}
	return "host name"
}
