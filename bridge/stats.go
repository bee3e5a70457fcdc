package bridge

import (
	"sort"
	"sync"
	"sync/atomic"
)

// TopicStats are a bridge's counters of one topic.
type TopicStats struct {
	Topic string
	// MessagesOut and BytesOut count messages sent to NATS (a split
	// message counts once); MessagesIn and BytesIn messages published
	// into the local domain.
	MessagesOut, BytesOut, MessagesIn, BytesIn uint64
	// Duplicates counts received messages dropped because they were
	// already delivered (two bridges exporting one publisher) or arrived
	// after a newer one of their publisher.
	Duplicates uint64
	// Gaps counts messages lost between a remote publisher and this bridge
	// (clock gaps: NATS slow consumers, reconnects, a bridge or server that
	// restarted, a bridge subscriber that fell behind).
	Gaps uint64
	// QueueDrops counts received messages dropped because local delivery
	// fell behind (Config.QueueBytes).
	QueueDrops uint64
	// Errors counts messages that could not be sent to NATS (e.g. its
	// reconnect buffer was full) or published locally (e.g. a type clash).
	Errors uint64
}

// Stats are a bridge's counters. The bridge keeps them in one place so
// that a metrics collector can read them (Bridge.Stats).
type Stats struct {
	// Total sums Topics.
	Total TopicStats
	// Topics, sorted by name.
	Topics []TopicStats
	// SlowConsumer counts messages the NATS client dropped because the
	// bridge read them too slowly (nats.go's pending limits).
	SlowConsumer uint64
	// Disconnects and Reconnects count the NATS connection's losses and
	// recoveries; Connected says whether it is up now.
	Disconnects, Reconnects uint64
	Connected               bool
	// Invalid counts NATS messages and announcements that no bridge sends
	// (malformed subjects, headers or bodies): dropped.
	Invalid uint64
	// Own counts messages of this host's bridges received back (dropped).
	Own uint64
	// Bridges is the number of other bridges heard from; Exports the
	// topics exported now; Imports the remote publishers imported now.
	Bridges, Exports, Imports int
	// Importing is false while another bridge of this host imports.
	Importing bool
}

// topicCounters are one topic's counters (atomics: written by the
// forwarding goroutines, read by Stats).
type topicCounters struct {
	msgsOut, bytesOut, msgsIn, bytesIn, dups, gaps, queueDrops, errs atomic.Uint64
}

// maxCountedTopics bounds the counter map (remote topic names come from
// the network); further topics share the counters of "" .
const maxCountedTopics = 1 << 16

// counters maps topics to their counters.
type counters struct {
	mu sync.Mutex
	m  map[string]*topicCounters
}

func (c *counters) of(topic string) *topicCounters {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*topicCounters{}
	}
	tc := c.m[topic]
	if tc == nil {
		if len(c.m) >= maxCountedTopics {
			topic = ""
			if tc = c.m[topic]; tc != nil {
				return tc
			}
		}
		tc = &topicCounters{}
		c.m[topic] = tc
	}
	return tc
}

func (c *counters) snapshot() (TopicStats, []TopicStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var total TopicStats
	out := make([]TopicStats, 0, len(c.m))
	for name, tc := range c.m {
		s := TopicStats{
			Topic: name, MessagesOut: tc.msgsOut.Load(), BytesOut: tc.bytesOut.Load(),
			MessagesIn: tc.msgsIn.Load(), BytesIn: tc.bytesIn.Load(), Duplicates: tc.dups.Load(),
			Gaps: tc.gaps.Load(), QueueDrops: tc.queueDrops.Load(), Errors: tc.errs.Load(),
		}
		out = append(out, s)
		total.MessagesOut += s.MessagesOut
		total.BytesOut += s.BytesOut
		total.MessagesIn += s.MessagesIn
		total.BytesIn += s.BytesIn
		total.Duplicates += s.Duplicates
		total.Gaps += s.Gaps
		total.QueueDrops += s.QueueDrops
		total.Errors += s.Errors
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Topic < out[j].Topic })
	return total, out
}
