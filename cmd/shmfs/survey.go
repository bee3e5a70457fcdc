package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/spf13/pflag"
)

// survey is what ls and info learn by watching a domain's registry: the
// topics (without this process's own entities) and, per publisher, a rate
// estimate from the Sent counters of successive announcements.
type survey struct {
	topics []core.TopicInfo
	rates  map[uint64]*counterRate // by publisher entity id
	// minSpan is the shortest sample span a rate is reported for.
	minSpan time.Duration
}

// surveyDefaults returns how long ls/info wait by default: a little more
// than one registration period, since a process announces its entities
// once per period; and the minimum span of a rate estimate.
func surveyDefaults(refresh time.Duration) (wait, minSpan time.Duration) {
	if refresh <= 0 {
		refresh = time.Second
	}
	return refresh + refresh/4, refresh / 2
}

// surveyNode joins the domain for ls and info, and gives --wait its
// default (surveyDefaults) unless the user set it.
func (c *cli) surveyNode(fs *pflag.FlagSet, wait *time.Duration) (*core.Node, error) {
	if *wait < 0 {
		return nil, usageErrorf("--wait %v is negative", *wait)
	}
	node, err := c.openNode()
	if err != nil {
		return nil, err
	}
	if !fs.Changed("wait") {
		*wait, _ = surveyDefaults(node.Config().Refresh)
	}
	return node, nil
}

// surveyDomain polls node's registry for wait. It goes on for up to another
// refresh period while a publisher has too short a counter history for a
// rate (its announcements may all have come right after the start), and
// stops early when ctx is done.
func surveyDomain(ctx context.Context, node *core.Node, wait time.Duration, keep func(string) bool) *survey {
	refresh := node.Config().Refresh
	_, minSpan := surveyDefaults(refresh)
	sv := &survey{rates: map[uint64]*counterRate{}, minSpan: minSpan}
	if refresh <= 0 {
		refresh = time.Second
	}
	start := time.Now()
	maxWait := wait + refresh
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		now := time.Now()
		sv.sample(node.Topics(), keep, now)
		elapsed := now.Sub(start)
		if elapsed >= maxWait || (elapsed >= wait && sv.ratesKnown()) {
			return sv
		}
		select {
		case <-ctx.Done():
			return sv
		case <-tick.C:
		}
	}
}

// sample records one look at the registry.
func (sv *survey) sample(all []core.TopicInfo, keep func(string) bool, now time.Time) {
	sv.topics = sv.topics[:0]
	for _, t := range all {
		if keep != nil && !keep(t.Name) {
			continue
		}
		t.Publishers = withoutSelf(t.Publishers)
		t.Subscribers = withoutSelf(t.Subscribers)
		if len(t.Publishers)+len(t.Subscribers) == 0 {
			continue
		}
		for _, p := range t.Publishers {
			r := sv.rates[p.ID]
			if r == nil {
				r = &counterRate{}
				sv.rates[p.ID] = r
			}
			// LastSeen is when the announcement carrying Sent arrived.
			// Without it, take the moment the counter was seen to change.
			at := p.LastSeen
			if at.IsZero() {
				if r.n > 0 && p.Sent == r.last.sent {
					continue
				}
				at = now
			}
			r.add(at, p.Sent)
		}
		sv.topics = append(sv.topics, t)
	}
}

// ratesKnown reports whether every publisher seen has a rate estimate.
func (sv *survey) ratesKnown() bool {
	for _, t := range sv.topics {
		for _, p := range t.Publishers {
			if _, ok := sv.rate(p.ID); !ok {
				return false
			}
		}
	}
	return true
}

// rate returns the estimated message rate of publisher id.
func (sv *survey) rate(id uint64) (float64, bool) {
	r := sv.rates[id]
	if r == nil {
		return 0, false
	}
	return r.rate(sv.minSpan)
}

// topicRate sums the rates of a topic's publishers; ok only if all are known.
func (sv *survey) topicRate(t core.TopicInfo) (float64, bool) {
	if len(t.Publishers) == 0 {
		return 0, false
	}
	var sum float64
	for _, p := range t.Publishers {
		r, ok := sv.rate(p.ID)
		if !ok {
			return 0, false
		}
		sum += r
	}
	return sum, true
}

// withoutSelf drops the entities of this process (ls --bw subscribes).
func withoutSelf(es []core.EntityInfo) []core.EntityInfo {
	var out []core.EntityInfo
	for _, e := range es {
		if isSelf(e) {
			continue
		}
		out = append(out, e)
	}
	return out
}

func isSelf(e core.EntityInfo) bool {
	if e.Instance != 0 && e.Instance == proc.InstanceID() {
		return true
	}
	return e.Local && int(e.PID) == os.Getpid()
}

// entityJSON is the JSON form of a publisher or subscriber (ls, info).
type entityJSON struct {
	ID          string   `json:"id"`
	Kind        string   `json:"kind"`
	Type        string   `json:"type,omitempty"`
	PID         int32    `json:"pid"`
	Process     string   `json:"process,omitempty"`
	Host        string   `json:"host,omitempty"`
	Local       bool     `json:"local"`
	Origin      string   `json:"origin,omitempty"`
	MemFiles    []string `json:"memfiles,omitempty"`
	Sent        uint64   `json:"sent"`
	Dropped     uint64   `json:"dropped"`
	AckTimeouts uint64   `json:"ack_timeouts"`
	Rate        *float64 `json:"rate,omitempty"` // messages per second, publishers only
	LastSeen    string   `json:"last_seen,omitempty"`
}

func (sv *survey) entityJSON(e core.EntityInfo) entityJSON {
	j := entityJSON{
		ID: shmname.Hex(e.ID), Kind: e.Kind.String(), Type: e.Type, PID: e.PID,
		Process: e.Process, Host: e.Host, Local: e.Local, Origin: e.Origin,
		MemFiles: e.MemFiles, Sent: e.Sent, Dropped: e.Dropped, AckTimeouts: e.AckTimeouts,
	}
	if e.Kind == core.KindPublisher {
		if r, ok := sv.rate(e.ID); ok {
			j.Rate = &r
		}
	}
	if !e.LastSeen.IsZero() {
		j.LastSeen = e.LastSeen.UTC().Format(time.RFC3339Nano)
	}
	return j
}

// registryWarning says on stderr when the node's registry could not hold
// everything it was told while it listened (another user's flood beyond
// its quota, a full registry): the listing may lack topics of the sources
// named. Nothing is said otherwise.
func registryWarning(c *cli, cmd string, node *core.Node) {
	s := node.RegistryStats()
	if n := s.DroppedQuota + s.DroppedFull + s.Evicted; n > 0 {
		fmt.Fprintf(c.stderr, "shmfs: %s: warning: the registry had no room for %d announcements (over another user's quota %d, registry full %d, evicted %d); topics of other users or hosts may be missing\n",
			cmd, n, s.DroppedQuota, s.DroppedFull, s.Evicted)
	}
}
