package main

import (
	"errors"
	"fmt"

	"github.com/schollz/progressbar/v3"

	"github.com/shmfs/shmfs/cmd/shmfs/internal/bench"
)

var benchCommand = &command{
	name:  "bench",
	args:  "",
	short: "measure shmfs beside sockets, pipes, TCP, NATS and the machine's floors",
	long: `Measures, in one run on this machine, shmfs between two processes (copy and
zero-copy; acknowledged per message, windowed, fire-and-forget) beside what
you would use instead — a Unix stream socket, a pipe, TCP over loopback, NATS
over loopback (an embedded server) — and beside the floors of the machine: a
futex wake-up between two processes and memmove. Suites: one-way latency
p50/p99 per message size (64 B … 16 MiB, one message in flight), lossless
throughput per size, and fan-out from one sender to N receivers.

Receivers are child processes (this binary, re-executed). The run uses a
fresh domain of its own (--domain chooses one) and removes everything it
created. Absolute numbers vary with the machine and its load; the ratios
within one run are what to compare. A full run takes about a minute on two
cores, --quick some seconds.

Output: a table on stdout (--json: the report as JSON instead); --plot DIR
writes latency, throughput and fan-out charts as SVG and PNG; --markdown FILE
replaces the part of FILE between the lines '<!-- shmfs bench: begin -->'
and '<!-- shmfs bench: end -->' with the report's tables (docs/benchmarks.md
is made this way); --from FILE renders a report saved with --json instead of
measuring. Exit 1 if any point failed (the report says which).`,
	examples: `  shmfs bench --quick
  shmfs bench --json > bench.json
  shmfs bench --plot docs/img --markdown docs/benchmarks.md --json > docs/img/bench.json
  shmfs bench --from docs/img/bench.json --plot /tmp/charts`,
	run: runBench,
}

// errBenchFailed: some points of the run failed.
var errBenchFailed = errors.New("some measurements failed")

func runBench(c *cli, args []string) error {
	// The receivers: this binary re-executed as `shmfs bench --child KIND ...`.
	if len(args) > 0 && args[0] == "--child" {
		if code := bench.ChildMain(args[1:], c.stdin, c.stdout); code != 0 {
			return fmt.Errorf("receiver %q failed (exit %d)", args[1:], code)
		}
		return nil
	}
	fs := c.flags()
	quick := fs.Bool("quick", false, "fewer sizes and messages: a run under a minute")
	asJSON := fs.Bool("json", false, "print the report as JSON instead of the table")
	plotDir := fs.String("plot", "", "write charts (SVG and PNG) into this directory")
	mdFile := fs.String("markdown", "", "replace the marked part of this Markdown file with the report's tables")
	from := fs.String("from", "", "render this saved JSON report instead of measuring")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErrorf("unexpected arguments %q", fs.Args())
	}
	if *from != "" && fs.Changed("quick") {
		return usageErrorf("--quick measures; --from renders a saved report: choose one")
	}
	if *mdFile != "" {
		// Fail before a run of minutes, not after it.
		if err := bench.CheckMarkdown(*mdFile); err != nil {
			return err
		}
	}
	var rep *bench.Report
	var runErr error
	if *from != "" {
		r, err := bench.ReadJSON(*from)
		if err != nil {
			return err
		}
		rep = r
	} else {
		o := bench.Options{Quick: *quick, ChildArgs: []string{"bench", "--child"}, Port: c.port}
		if fs.Changed("domain") || c.preDomain != "" {
			o.Domain = c.domain
		}
		if isTerminal(c.stderr) {
			bar := progressbar.NewOptions(-1,
				progressbar.OptionSetWriter(c.stderr),
				progressbar.OptionSetDescription("shmfs bench"),
				progressbar.OptionShowCount(),
				progressbar.OptionSetElapsedTime(true),
				progressbar.OptionClearOnFinish(),
			)
			o.Progress = func(done, total int, what string) {
				bar.ChangeMax(total)
				bar.Describe(what)
				_ = bar.Set(done)
			}
			defer bar.Finish()
		}
		ctx, stop := signalContext()
		defer stop()
		rep, runErr = bench.Run(ctx, o)
		if rep == nil {
			return runErr
		}
	}
	if *plotDir != "" {
		if err := bench.Plot(rep, *plotDir); err != nil {
			return err
		}
	}
	if *mdFile != "" {
		if err := bench.UpdateMarkdown(rep, *mdFile, *plotDir); err != nil {
			return err
		}
	}
	var err error
	if *asJSON {
		err = rep.WriteJSON(c.stdout)
	} else {
		err = bench.WriteText(c.stdout, rep)
	}
	if err != nil {
		return err
	}
	if runErr != nil {
		return runErr
	}
	if len(rep.Failures) > 0 {
		for _, f := range rep.Failures {
			fmt.Fprintln(c.stderr, "shmfs: bench: failed:", f)
		}
		return fmt.Errorf("%w: %d points (listed above)", errBenchFailed, len(rep.Failures))
	}
	return nil
}
