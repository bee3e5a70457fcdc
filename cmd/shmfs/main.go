// Command shmfs is the command-line tool of shmfs: publish and subscribe from
// the shell, inspect a domain, clean up after crashed processes, check the
// host, and mount the FUSE filesystem.
//
//	shmfs [--domain D] [--port P] COMMAND [flags] [args]
//
// Exit codes: 0 success, 1 failure, 2 usage error. See 'shmfs help'.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"
)

// command is one subcommand. run parses its own flags with c.flags/c.parse.
type command struct {
	name     string
	args     string // usage after the name, e.g. "TOPIC [MSG...]"
	short    string // one line for the command list
	long     string // paragraphs for --help
	examples string
	run      func(c *cli, args []string) error
}

// commands in the order 'shmfs help' lists them.
var commands []*command

func init() {
	commands = []*command{
		pubCommand, subCommand, lsCommand, infoCommand, hzCommand,
		mountCommand, umountCommand, ecalCommand, bridgeCommand, cleanCommand, doctorCommand, benchCommand, versionCommand, helpCommand,
	}
}

func lookupCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	gfs := pflag.NewFlagSet("shmfs", pflag.ContinueOnError)
	gfs.SetOutput(io.Discard)
	gfs.Usage = func() {}
	gfs.SetInterspersed(false) // flags after the command name are the command's
	addGlobalFlags(gfs)
	showVersion := gfs.Bool("version", false, "print the version and exit")
	if err := gfs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			printMainHelp(stdout)
			return exitOK
		}
		fmt.Fprintln(stderr, errorLine("", fmt.Errorf("%w: %w", errUsage, err)))
		return exitUsage
	}
	if err := checkGiven(gfs); err != nil {
		fmt.Fprintln(stderr, errorLine("", err))
		return exitUsage
	}
	c.preDomain, _ = gfs.GetString("domain")
	c.prePort, _ = gfs.GetInt("port")
	rest := gfs.Args()
	if *showVersion {
		rest = []string{"version"}
	}
	if len(rest) == 0 {
		printMainHelp(stderr)
		return exitUsage
	}
	cmd := lookupCommand(rest[0])
	if cmd == nil {
		fmt.Fprintln(stderr, errorLine("", usageErrorf("unknown command %q", rest[0])))
		return exitUsage
	}
	c.cmd = cmd
	err := cmd.run(c, rest[1:])
	if err != nil && !errors.Is(err, errHelp) {
		fmt.Fprintln(stderr, errorLine(cmd.name, err))
	}
	return exitCode(err)
}
