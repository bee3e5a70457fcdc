package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/shm"
	"github.com/shmfs/shmfs/internal/shmname"
)

var infoCommand = &command{
	name:  "info",
	args:  "TOPIC",
	short: "show a topic's publishers, subscribers, memory files and counters",
	long: `Shows what registration knows about TOPIC: every publisher and subscriber
with its process, host, type and counters; each publisher's message rate
(from its counters, as in 'shmfs ls'); and the shared-memory objects in
/dev/shm that belong to each publisher's memory files, with their sizes,
modes and whether the process that created them is alive.

Like ls, info listens for a little more than one registration period (--wait).`,
	examples: `  shmfs info camera
  shmfs info --json camera | jq '.publishers[0].objects'`,
	run: runInfo,
}

// objectJSON is one /dev/shm object in 'info --json'.
type objectJSON struct {
	Name       string `json:"name"`
	Path       string `json:"path"`
	Kind       string `json:"kind,omitempty"`
	Size       int64  `json:"size"`
	Mode       string `json:"mode"`
	CreatorPID int32  `json:"creator_pid,omitempty"`
	Alive      bool   `json:"alive"`
	Error      string `json:"error,omitempty"`
}

type infoEntityJSON struct {
	entityJSON
	Objects []objectJSON `json:"objects,omitempty"`
}

type infoJSON struct {
	Name        string           `json:"name"`
	Type        string           `json:"type"`
	Domain      string           `json:"domain"`
	Port        int              `json:"port"`
	Rate        *float64         `json:"rate"`
	Publishers  []infoEntityJSON `json:"publishers"`
	Subscribers []infoEntityJSON `json:"subscribers"`
}

func runInfo(c *cli, args []string) error {
	fs := c.flags()
	asJSON := fs.Bool("json", false, "print one JSON object")
	wait := fs.Duration("wait", 0, "how long to listen to registration (default: 1.25 registration periods)")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	topic, err := oneTopic(fs.Args())
	if err != nil {
		return err
	}
	node, err := c.surveyNode(fs, wait)
	if err != nil {
		return err
	}
	defer node.Close()
	ctx, stop := signalContext()
	defer stop()
	sv := surveyDomain(ctx, node, *wait, func(name string) bool { return name == topic })
	registryWarning(c, "info", node)
	if len(sv.topics) == 0 {
		return fmt.Errorf("topic %q not found in domain %q (port %d) after %v; check --domain and --port, or 'shmfs ls'",
			topic, c.domain, node.Config().Port, wait.Round(time.Millisecond))
	}
	t := sv.topics[0]
	objs, err := shm.List(c.domain)
	if err != nil {
		return fmt.Errorf("list /dev/shm: %w", err)
	}
	out := infoJSON{Name: t.Name, Type: t.Type, Domain: c.domain, Port: node.Config().Port,
		Publishers: []infoEntityJSON{}, Subscribers: []infoEntityJSON{}}
	if r, ok := sv.topicRate(t); ok {
		out.Rate = &r
	}
	for _, e := range t.Publishers {
		out.Publishers = append(out.Publishers, infoEntityJSON{sv.entityJSON(e), objectsOf(e, c.domain, objs)})
	}
	for _, e := range t.Subscribers {
		out.Subscribers = append(out.Subscribers, infoEntityJSON{sv.entityJSON(e), objectsOf(e, c.domain, objs)})
	}
	if *asJSON {
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		_, err = c.stdout.Write(append(b, '\n'))
		return err
	}
	printInfo(c.stdout, out)
	return nil
}

// objectsOf returns the /dev/shm objects that share an id with one of the
// entity's memory files: for a publisher, the file itself and the ack
// events subscriber processes made for it. Names
// from registration are untrusted; they are only compared with names read
// from /dev/shm, never used as paths.
func objectsOf(e core.EntityInfo, domain string, objs []shm.Info) []objectJSON {
	ids := map[uint64]bool{}
	for _, m := range e.MemFiles {
		p, err := shmname.Parse(m)
		if err != nil || p.Domain != domain {
			continue
		}
		ids[p.ID] = true
	}
	var out []objectJSON
	for _, o := range objs {
		p, err := shmname.Parse(o.Name)
		if err != nil || !ids[p.ID] {
			continue
		}
		j := objectJSON{Name: o.Name, Path: shmname.Path(o.Name), Size: o.Size,
			Mode: fmt.Sprintf("%04o", o.Mode.Perm()), Alive: o.Alive}
		if o.Err != nil {
			j.Error = o.Err.Error()
		} else {
			j.Kind = o.Kind.String()
			j.CreatorPID = o.Creator.ID.PID
		}
		out = append(out, j)
	}
	return out
}

func printInfo(w io.Writer, t infoJSON) {
	typ := t.Type
	if typ == "" {
		typ = "- (no publisher)"
	}
	fmt.Fprintf(w, "topic   %s\ntype    %s\ndomain  %s (port %d)\nrate    %s\n", t.Name, typ, t.Domain, t.Port, formatRate(t.Rate))
	for _, e := range append(append([]infoEntityJSON(nil), t.Publishers...), t.Subscribers...) {
		fmt.Fprintf(w, "\n%s %s\n", e.Kind, e.ID)
		where := "this machine"
		if !e.Local {
			where = "remote"
		}
		if e.Host != "" {
			where = e.Host + ", " + where
		}
		fmt.Fprintf(w, "  process       %s (pid %d) on %s\n", orDash(e.Process), e.PID, where)
		if e.Type != "" {
			fmt.Fprintf(w, "  type          %s\n", e.Type)
		}
		if e.Origin != "" {
			fmt.Fprintf(w, "  origin        %s\n", e.Origin)
		}
		if e.Kind == core.KindPublisher.String() {
			fmt.Fprintf(w, "  sent          %d (rate %s)\n", e.Sent, formatRate(e.Rate))
			fmt.Fprintf(w, "  ack timeouts  %d\n", e.AckTimeouts)
		}
		fmt.Fprintf(w, "  dropped       %d\n", e.Dropped)
		if e.LastSeen != "" {
			if ts, err := time.Parse(time.RFC3339Nano, e.LastSeen); err == nil {
				fmt.Fprintf(w, "  last seen     %v ago\n", time.Since(ts).Round(time.Millisecond))
			}
		}
		if len(e.MemFiles) > 0 {
			fmt.Fprintf(w, "  memory files  %s\n", strings.Join(e.MemFiles, " "))
		}
		if len(e.Objects) > 0 {
			fmt.Fprintln(w, "  objects in /dev/shm:")
			tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
			for _, o := range e.Objects {
				state := "creator alive"
				switch {
				case o.Error != "":
					state = "unreadable: " + o.Error
				case !o.Alive:
					state = "creator dead (run 'shmfs clean')"
				}
				fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\tpid %d\t%s\n", o.Name, orDash(o.Kind), formatBytes(float64(o.Size)), o.Mode, o.CreatorPID, state)
			}
			tw.Flush()
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
