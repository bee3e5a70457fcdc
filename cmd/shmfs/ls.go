package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/shmfs/shmfs/core"
)

var lsCommand = &command{
	name:  "ls",
	short: "list the topics of a domain",
	long: `Lists every topic of the domain with its type, the number of publishers and
subscribers, the message rate and, with --bw, the bandwidth.

ls learns the domain from registration, so it listens for a little more than
one registration period (about 1.25 s; --wait), and up to one period more
until it has two announcements of every publisher.

RATE is estimated from the publishers' message counters carried in their
registration announcements (once per period): ls does not subscribe, so
looking never changes the system looked at (no acknowledgements, no extra
subscriber). The estimate is coarse (it covers one or two periods); for
precise figures use 'shmfs hz TOPIC'. Measuring the bandwidth needs the
message sizes, so --bw then subscribes to each topic (zero-copy: sizes only,
no payload is copied) for another --wait period and reports the rate and
bandwidth it saw; while it does, ls is a subscriber like any other (and
acknowledges messages).`,
	examples: `  shmfs ls
  shmfs ls --bw
  shmfs ls --json | jq '.[].name'`,
	run: runLs,
}

// topicJSON is one element of 'ls --json'.
type topicJSON struct {
	Name        string       `json:"name"`
	Type        string       `json:"type"`
	Publishers  []entityJSON `json:"publishers"`
	Subscribers []entityJSON `json:"subscribers"`
	Rate        *float64     `json:"rate"`      // messages per second; null when unknown
	Bandwidth   *float64     `json:"bandwidth"` // bytes per second; null without --bw
}

func runLs(c *cli, args []string) error {
	fs := c.flags()
	asJSON := fs.Bool("json", false, "print a JSON array of topics")
	bw := fs.Bool("bw", false, "measure bandwidth by subscribing to every topic (see above)")
	wait := fs.Duration("wait", 0, "how long to listen to registration (default: 1.25 registration periods)")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected arguments %q (ls takes no TOPIC; see 'shmfs info TOPIC')", fs.Args())
	}
	node, err := c.surveyNode(fs, wait)
	if err != nil {
		return err
	}
	defer node.Close()
	ctx, stop := signalContext()
	defer stop()
	sv := surveyDomain(ctx, node, *wait, nil)
	registryWarning(c, "ls", node)
	var measured map[string]traffic
	if *bw {
		measured = measureTraffic(ctx, node, sv.topics, *wait)
	}

	out := make([]topicJSON, 0, len(sv.topics))
	for _, t := range sv.topics {
		j := topicJSON{Name: t.Name, Type: t.Type, Publishers: []entityJSON{}, Subscribers: []entityJSON{}}
		for _, e := range t.Publishers {
			j.Publishers = append(j.Publishers, sv.entityJSON(e))
		}
		for _, e := range t.Subscribers {
			j.Subscribers = append(j.Subscribers, sv.entityJSON(e))
		}
		if r, ok := sv.topicRate(t); ok {
			j.Rate = &r
		}
		if m, ok := measured[t.Name]; ok {
			j.Rate, j.Bandwidth = &m.rate, &m.bandwidth
		}
		out = append(out, j)
	}
	if *asJSON {
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		_, err = c.stdout.Write(append(b, '\n'))
		return err
	}
	if len(out) == 0 {
		fmt.Fprintf(c.stderr, "shmfs: ls: no topics in domain %q (port %d)\n", c.domain, node.Config().Port)
		return nil
	}
	rows := [][]string{{"TOPIC", "TYPE", "PUBS", "SUBS", "RATE", "BANDWIDTH"}}
	for _, t := range out {
		typ := t.Type
		if typ == "" {
			typ = "-"
		}
		rows = append(rows, []string{t.Name, typ, strconv.Itoa(len(t.Publishers)), strconv.Itoa(len(t.Subscribers)),
			formatRate(t.Rate), formatBandwidth(t.Bandwidth)})
	}
	return writeTable(c.stdout, rows)
}

// traffic is what ls --bw measured on one topic.
type traffic struct {
	rate, bandwidth float64 // messages and bytes per second
}

// measureTraffic subscribes zero-copy to every topic with publishers for d
// and returns the message rate and bandwidth by topic. Messages published
// before the subscription (the one a new subscriber finds in shared memory)
// do not count. Topics it cannot subscribe to (e.g. vanished meanwhile) are
// left out.
func measureTraffic(ctx context.Context, node *core.Node, topics []core.TopicInfo, d time.Duration) map[string]traffic {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	type count struct{ msgs, bytes int64 }
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		// counts by topic, guarded by mu
		counts = map[string]*count{}
	)
	start := time.Now()
	for _, t := range topics {
		if len(t.Publishers) == 0 {
			continue
		}
		s, err := node.NewSubscriber(t.Name, &core.SubscriberOptions{ZeroCopy: true})
		if err != nil {
			continue
		}
		cnt := &count{}
		mu.Lock()
		counts[t.Name] = cnt
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Close()
			for ctx.Err() == nil {
				err := s.ReceiveFunc(ctx, func(h core.Header, _ []byte) error {
					if !h.Time.Before(start) {
						mu.Lock()
						cnt.msgs++
						cnt.bytes += int64(h.Size)
						mu.Unlock()
					}
					return nil
				})
				if err != nil && ctx.Err() == nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	out := map[string]traffic{}
	for name, c := range counts {
		out[name] = traffic{rate: float64(c.msgs) / secs, bandwidth: float64(c.bytes) / secs}
	}
	return out
}

func formatRate(r *float64) string {
	if r == nil {
		return "-"
	}
	if *r >= 100 {
		return fmt.Sprintf("%.0f/s", *r)
	}
	return fmt.Sprintf("%.1f/s", *r)
}

func formatBandwidth(b *float64) string {
	if b == nil {
		return "-"
	}
	return formatBytes(*b) + "/s"
}

// formatBytes renders a byte count with a binary unit: 512 B, 1.5 KiB, ...
func formatBytes(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", b)
	}
	return fmt.Sprintf("%.1f %s", b, units[i])
}
