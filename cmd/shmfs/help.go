package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"
)

var helpCommand = &command{
	name:  "help",
	args:  "[COMMAND]",
	short: "show help for shmfs or one command",
	long:  "Without an argument, lists the commands; with one, shows that command's help (the same as 'shmfs COMMAND --help').",
	examples: `  shmfs help
  shmfs help sub`,
	run: runHelp,
}

func runHelp(c *cli, args []string) error {
	fs := c.flags()
	if err := c.parse(fs, args); err != nil {
		return err
	}
	switch fs.NArg() {
	case 0:
		printMainHelp(c.stdout)
		return nil
	case 1:
	default:
		return usageErrorf("too many arguments (want at most one COMMAND)")
	}
	cmd := lookupCommand(fs.Arg(0))
	if cmd == nil {
		return usageErrorf("unknown command %q", fs.Arg(0))
	}
	c.cmd = cmd
	return cmd.run(c, []string{"--help"})
}

func printMainHelp(w io.Writer) {
	fmt.Fprint(w, `shmfs: publish/subscribe between processes through shared memory.

Usage:
  shmfs [--domain D] [--port P] COMMAND [flags] [args]

Commands:
`)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.short)
	}
	tw.Flush()
	fmt.Fprint(w, `
Global flags (before or after the command):
  --domain D   domain: independent systems on one host (default $SHMFS_DOMAIN, else "default")
  --port P     UDP registration port (default $SHMFS_PORT, else 14190)

Exit codes: 0 success, 1 failure, 2 usage error.
Run 'shmfs COMMAND --help' for a command's flags and examples.
`)
}

// printHelp prints a command's help: usage, description, flags, examples.
func (cmd *command) printHelp(w io.Writer, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "Usage: shmfs %s", cmd.name)
	if fs.HasAvailableFlags() {
		fmt.Fprint(w, " [flags]")
	}
	if cmd.args != "" {
		fmt.Fprint(w, " "+cmd.args)
	}
	fmt.Fprintf(w, "\n\n%s\n", cmd.short)
	if cmd.long != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cmd.long))
	}
	if fs.HasAvailableFlags() {
		fmt.Fprintf(w, "\nFlags:\n%s", fs.FlagUsages())
	}
	if cmd.examples != "" {
		fmt.Fprintf(w, "\nExamples:\n%s\n", strings.TrimRight(cmd.examples, "\n"))
	}
}
