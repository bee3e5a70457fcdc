package metrics

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shmfs/shmfs/core"
)

// Topics collects, per topic of a node's domain, what registration knows
// of its publishers and subscribers, in every process: this process's
// counters are current, other processes' as of their last announcement
// (once per second). The message, drop and ack-timeout counters add up
// what each entity counted while this collector saw it (an entity that
// leaves keeps its share), so they only ever grow.
type Topics struct {
	node *core.Node

	mu sync.Mutex
	// last holds each entity's counters at the previous scrape.
	last map[uint64]entityCounts
	// totals per topic.
	totals map[string]*entityCounts
}

type entityCounts struct{ sent, dropped, ackTimeouts uint64 }

var _ prometheus.Collector = (*Topics)(nil)

var (
	descMessages = prometheus.NewDesc("shmfs_topic_messages_total",
		"Messages published on the topic (sum over its publishers in every process of the domain).", []string{"topic"}, nil)
	descDropped = prometheus.NewDesc("shmfs_topic_dropped_total",
		"Messages the topic's subscribers missed (overwritten before they read them, lost upstream, too large, bad checksum).", []string{"topic"}, nil)
	descAckTimeouts = prometheus.NewDesc("shmfs_topic_ack_timeouts_total",
		"Times a publisher of the topic gave up waiting for a subscriber process (ack timeout).", []string{"topic"}, nil)
	descPublishers = prometheus.NewDesc("shmfs_topic_publishers",
		"Publishers of the topic in the domain now.", []string{"topic"}, nil)
	descSubscribers = prometheus.NewDesc("shmfs_topic_subscribers",
		"Subscribers of the topic in the domain now.", []string{"topic"}, nil)
)

// NewTopics returns the collector of n's domain.
func NewTopics(n *core.Node) *Topics {
	return &Topics{node: n, last: map[uint64]entityCounts{}, totals: map[string]*entityCounts{}}
}

// Describe implements prometheus.Collector.
func (t *Topics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMessages, descDropped, descAckTimeouts, descPublishers, descSubscribers} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (t *Topics) Collect(ch chan<- prometheus.Metric) {
	topics := t.node.Topics()
	t.mu.Lock()
	defer t.mu.Unlock()
	seen := map[uint64]bool{}
	pubs, subs := map[string]int{}, map[string]int{}
	for _, ti := range topics {
		tot := t.totals[ti.Name]
		if tot == nil {
			tot = &entityCounts{}
			t.totals[ti.Name] = tot
		}
		for _, group := range [][]core.EntityInfo{ti.Publishers, ti.Subscribers} {
			for _, e := range group {
				seen[e.ID] = true
				prev := t.last[e.ID]
				cur := entityCounts{sent: e.Sent, dropped: e.Dropped, ackTimeouts: e.AckTimeouts}
				tot.sent += grown(prev.sent, cur.sent)
				tot.dropped += grown(prev.dropped, cur.dropped)
				tot.ackTimeouts += grown(prev.ackTimeouts, cur.ackTimeouts)
				t.last[e.ID] = cur
			}
		}
		pubs[ti.Name], subs[ti.Name] = len(ti.Publishers), len(ti.Subscribers)
	}
	for id := range t.last {
		if !seen[id] {
			delete(t.last, id)
		}
	}
	for name, tot := range t.totals {
		l := label(name)
		ch <- prometheus.MustNewConstMetric(descMessages, prometheus.CounterValue, float64(tot.sent), l)
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(tot.dropped), l)
		ch <- prometheus.MustNewConstMetric(descAckTimeouts, prometheus.CounterValue, float64(tot.ackTimeouts), l)
		ch <- prometheus.MustNewConstMetric(descPublishers, prometheus.GaugeValue, float64(pubs[name]), l)
		ch <- prometheus.MustNewConstMetric(descSubscribers, prometheus.GaugeValue, float64(subs[name]), l)
	}
}

// grown is how much a counter grew since prev. Counters of one entity
// never go back; a smaller value can only be another entity reusing the
// id: all of it is new.
func grown(prev, cur uint64) uint64 {
	if cur >= prev {
		return cur - prev
	}
	return cur
}

// label makes a topic name a valid label value (UTF-8).
func label(topic string) string { return strings.ToValidUTF8(topic, "\uFFFD") }
