package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/core/registration"
	"github.com/shmfs/shmfs/internal/shmname"
)

// Exit codes of every subcommand.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// errUsage marks an error as a usage error: exit code 2 and a hint to --help.
var errUsage = errors.New("usage")

// usageErrorf returns a usage error; the message names what is wrong.
func usageErrorf(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...)
}

// errHelp is returned by parse after printing a command's help on request.
var errHelp = errors.New("help requested")

// cli is what every subcommand runs with: the streams, the global options
// given before the command name, and (after parse) the resolved domain and port.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	cmd            *command

	// given before the command name; a command's own --domain/--port win.
	preDomain string
	prePort   int

	domain string
	port   int // 0: core's default (SHMFS_PORT is resolved here already)
}

// flags returns a flag set for the current command; parse adds the global
// flags (last, so that --help lists the command's own flags first).
func (c *cli) flags() *pflag.FlagSet {
	fs := pflag.NewFlagSet(c.cmd.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.SortFlags = false
	return fs
}

func addGlobalFlags(fs *pflag.FlagSet) {
	fs.String("domain", "", "domain to use (default $SHMFS_DOMAIN, else \"default\")")
	fs.Int("port", 0, "UDP registration port (default $SHMFS_PORT, else 14190)")
}

// parse parses a command's arguments, prints help on --help (returning
// errHelp), and resolves domain and port: flag, else the global flag given
// before the command, else the environment, else the default.
func (c *cli) parse(fs *pflag.FlagSet, args []string) error {
	addGlobalFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			c.cmd.printHelp(c.stdout, fs)
			return errHelp
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if err := checkGiven(fs); err != nil {
		return err
	}
	domain, _ := fs.GetString("domain")
	port, _ := fs.GetInt("port")
	if !fs.Changed("domain") {
		domain = c.preDomain
	}
	if !fs.Changed("port") {
		port = c.prePort
	}
	var err error
	c.domain, c.port, err = resolveDomainPort(domain, port)
	return err
}

// checkGiven rejects an empty --domain and --port 0 given explicitly: they
// mean "not given" only as defaults (SHMFS_PORT=0 is refused too).
func checkGiven(fs *pflag.FlagSet) error {
	if d, _ := fs.GetString("domain"); fs.Changed("domain") && d == "" {
		return badDomain(d)
	}
	if p, _ := fs.GetInt("port"); fs.Changed("port") && p == 0 {
		return badPort(p)
	}
	return nil
}

func badDomain(d string) error {
	return usageErrorf("invalid domain %q: use 1..%d characters A-Z a-z 0-9 . - starting with a letter or digit", d, shmname.MaxDomainLen)
}

func badPort(p int) error { return usageErrorf("--port %d out of range (1..65535)", p) }

// resolveDomainPort fills in the environment and defaults and validates both.
func resolveDomainPort(domain string, port int) (string, int, error) {
	if domain == "" {
		domain = os.Getenv("SHMFS_DOMAIN")
	}
	if domain == "" {
		domain = shmname.DefaultDomain
	}
	if err := shmname.CheckDomain(domain); err != nil {
		return "", 0, badDomain(domain)
	}
	if port == 0 {
		if s := os.Getenv("SHMFS_PORT"); s != "" {
			p, err := strconv.Atoi(s)
			if err != nil || p <= 0 || p > 65535 {
				return "", 0, usageErrorf("SHMFS_PORT=%q is not a port number (1..65535)", s)
			}
			port = p
		}
	}
	if port < 0 || port > 65535 {
		return "", 0, badPort(port)
	}
	return domain, port, nil
}

// config is the core configuration for the resolved domain and port.
func (c *cli) config() core.Config { return core.Config{Domain: c.domain, Port: c.port} }

// openNode joins the domain.
func (c *cli) openNode() (*core.Node, error) {
	n, err := core.OpenNode(c.config())
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("join domain %q: %w; another program holds UDP port %d without SO_REUSEADDR: choose another with --port or SHMFS_PORT (all processes of the domain must use the same), see 'shmfs doctor'",
				c.domain, err, c.effectivePort())
		}
		return nil, fmt.Errorf("join domain %q: %w", c.domain, err)
	}
	return n, nil
}

// effectivePort is the port registration uses (for messages and doctor).
func (c *cli) effectivePort() int {
	if c.port != 0 {
		return c.port
	}
	return registration.DefaultPort
}

// checkTopic rejects topic names the core would refuse, with a message that
// says why; the core remains the authority (its ErrInvalidTopic also maps to
// a usage error).
func checkTopic(t string) error {
	switch {
	case t == "":
		return usageErrorf("empty topic name")
	case strings.ContainsRune(t, '/'):
		return usageErrorf("invalid topic %q: '/' not allowed", t)
	case strings.ContainsRune(t, 0):
		return usageErrorf("invalid topic %q: NUL not allowed", t)
	}
	return nil
}

// oneTopic checks that args hold exactly one topic name.
func oneTopic(args []string) (string, error) {
	switch len(args) {
	case 0:
		return "", usageErrorf("missing TOPIC")
	case 1:
	default:
		return "", usageErrorf("too many arguments: %q (want one TOPIC)", args[1:])
	}
	return args[0], checkTopic(args[0])
}

// signalContext is cancelled on SIGINT or SIGTERM: long-running commands stop
// cleanly, releasing their shared memory. SIGPIPE is caught too, so that a
// write to a closed pipe ('shmfs sub t | head -1') returns EPIPE (see
// isBrokenPipe) instead of killing the process before it cleaned up.
func signalContext() (context.Context, context.CancelFunc) {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// isBrokenPipe reports whether err means that the reader of our output went
// away: a normal end for a command that streams (sub, hz).
func isBrokenPipe(err error) bool { return errors.Is(err, syscall.EPIPE) }

// exitCode maps an error to the process exit code.
func exitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, errHelp):
		return exitOK
	case errors.Is(err, errUsage), errors.Is(err, core.ErrInvalidTopic), errors.Is(err, core.ErrInvalidOption):
		return exitUsage
	}
	return exitFail
}

// errLine is err's text for a line that already says "shmfs: CMD: ": core
// errors carry their own "shmfs: " prefix (printed once), and a line has
// no line breaks.
func errLine(err error) string {
	msg := strings.ReplaceAll(err.Error(), "shmfs: ", "")
	return strings.ReplaceAll(msg, "\n", "; ")
}

// errorLine renders err as the one line printed for a failed command.
func errorLine(cmd string, err error) string {
	var rep reported
	if errors.As(err, &rep) {
		return string(rep) // a line formatted by the process that failed
	}
	msg := errLine(err)
	if errors.Is(err, errUsage) {
		msg = strings.TrimPrefix(msg, errUsage.Error()+": ")
	}
	prefix := "shmfs: "
	if cmd != "" {
		prefix += cmd + ": "
	}
	line := prefix + msg
	if exitCode(err) == exitUsage {
		if cmd != "" {
			line += " (see 'shmfs " + cmd + " --help')"
		} else {
			line += " (see 'shmfs help')"
		}
	}
	return line
}
