package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/shmfs/shmfs/internal/shm"
)

var cleanCommand = &command{
	name:  "clean",
	short: "remove shared memory left by crashed processes",
	long: `Removes the shmfs objects in /dev/shm whose creating process is dead (killed
or crashed before it could clean up), and objects that were read and are not
valid shmfs objects (e.g. a creation that died half-way) once they are older
than 10 seconds. An object whose creator is
alive is never touched, nor one created in another PID namespace (another
container sharing /dev/shm), whose creator cannot be judged from here.

Processes that still have a removed object mapped keep their mapping; only
the name goes away. Every shmfs process also does this for its domain when it
starts, so clean is needed only when nothing runs in the domain any more.

Only the domain given by --domain is cleaned, unless --all-domains is set.`,
	examples: `  shmfs clean --dry-run
  shmfs clean --domain robot
  shmfs clean --all-domains`,
	run: runClean,
}

func runClean(c *cli, args []string) error {
	fs := c.flags()
	dryRun := fs.BoolP("dry-run", "n", false, "only list what would be removed")
	all := fs.Bool("all-domains", false, "clean every domain, not only --domain")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected arguments %q", fs.Args())
	}
	domain := c.domain
	if *all {
		domain = ""
	}
	stale, err := shm.Sweep(domain, *dryRun)
	printStale(c.stdout, stale, *dryRun)
	where := fmt.Sprintf("domain %q", domain)
	if domain == "" {
		where = "any domain"
	}
	if len(stale) == 0 && err == nil {
		fmt.Fprintf(c.stderr, "shmfs: clean: nothing to clean in %s\n", where)
	}
	if err != nil {
		if errors.Is(err, shm.ErrPermission) {
			return fmt.Errorf("%w; objects of other users can be removed by their owner or root", err)
		}
		return err
	}
	return nil
}

// printStale prints one line per object: what is (or would be) removed, why.
func printStale(w io.Writer, stale []shm.Stale, dryRun bool) {
	verb := "removed"
	if dryRun {
		verb = "would remove"
	}
	for _, s := range stale {
		kind := "object"
		if s.Kind != 0 {
			kind = s.Kind.String()
		}
		fmt.Fprintf(w, "%s %s (%s, %s): %s\n", verb, s.Name, kind, formatBytes(float64(s.Size)), s.Reason)
	}
}
