package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shmfs/shmfs/bridge"
)

// Bridge exposes a bridge's counters (bridge.Stats, read at each scrape):
// per topic messages and bytes to and from NATS, duplicates, messages lost
// on the way (gaps), queue drops and errors; and the connection's
// slow-consumer drops, reconnects and state.
type Bridge struct {
	stats func() bridge.Stats
}

var _ prometheus.Collector = (*Bridge)(nil)

// NewBridge returns the collector of the bridge whose counters stats returns.
func NewBridge(stats func() bridge.Stats) *Bridge { return &Bridge{stats: stats} }

var (
	bridgeTopic = func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("shmfs_bridge_"+name, help, []string{"topic"}, nil)
	}
	bridgeOne = func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("shmfs_bridge_"+name, help, nil, nil)
	}
	descOutMsgs  = bridgeTopic("sent_messages_total", "Messages of local publishers sent to NATS.")
	descOutBytes = bridgeTopic("sent_bytes_total", "Bytes of local publishers' messages sent to NATS.")
	descInMsgs   = bridgeTopic("received_messages_total", "Messages received from NATS and published into the local domain.")
	descInBytes  = bridgeTopic("received_bytes_total", "Bytes received from NATS and published into the local domain.")
	descDups     = bridgeTopic("duplicates_total", "Messages received from NATS twice (two bridges exporting one publisher) or late, dropped.")
	descGaps     = bridgeTopic("lost_messages_total", "Messages lost between a remote publisher and this bridge (clock gaps: slow consumers, reconnects, restarts).")
	descQDrops   = bridgeTopic("queue_drops_total", "Messages received from NATS and dropped because local delivery fell behind.")
	descErrors   = bridgeTopic("errors_total", "Messages that could not be sent to NATS or published locally.")
	descSlow     = bridgeOne("slow_consumer_drops_total", "Messages the NATS client dropped because the bridge read them too slowly.")
	descDisc     = bridgeOne("disconnects_total", "Losses of the NATS connection.")
	descReconn   = bridgeOne("reconnects_total", "Recoveries of the NATS connection.")
	descUp       = bridgeOne("connected", "1 while the NATS connection is up.")
	descInvalid  = bridgeOne("invalid_total", "NATS messages and announcements no bridge sends (dropped).")
	descBridges  = bridgeOne("peers", "Other bridges heard from.")
	descExports  = bridgeOne("exported_topics", "Topics exported now.")
	descImports  = bridgeOne("imported_publishers", "Remote publishers imported now.")
)

// Describe implements prometheus.Collector.
func (b *Bridge) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descOutMsgs, descOutBytes, descInMsgs, descInBytes, descDups, descGaps,
		descQDrops, descErrors, descSlow, descDisc, descReconn, descUp, descInvalid, descBridges, descExports, descImports} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (b *Bridge) Collect(ch chan<- prometheus.Metric) {
	s := b.stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	for _, t := range s.Topics {
		l := label(t.Topic)
		counter(descOutMsgs, t.MessagesOut, l)
		counter(descOutBytes, t.BytesOut, l)
		counter(descInMsgs, t.MessagesIn, l)
		counter(descInBytes, t.BytesIn, l)
		counter(descDups, t.Duplicates, l)
		counter(descGaps, t.Gaps, l)
		counter(descQDrops, t.QueueDrops, l)
		counter(descErrors, t.Errors, l)
	}
	counter(descSlow, s.SlowConsumer)
	counter(descDisc, s.Disconnects)
	counter(descReconn, s.Reconnects)
	counter(descInvalid, s.Invalid)
	up := 0.0
	if s.Connected {
		up = 1
	}
	gauge(descUp, up)
	gauge(descBridges, float64(s.Bridges))
	gauge(descExports, float64(s.Exports))
	gauge(descImports, float64(s.Imports))
}
