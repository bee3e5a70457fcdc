package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	shmfs "github.com/shmfs/shmfs/fs"
)

// Mount counts what goes through a mount's topic files (it is the mount's
// fs.Observer): messages and bytes published by writes, messages and bytes
// handed to readers of data, and the delivery latency those readers see
// (from the publisher's commit to the read, FUSE round trip included).
type Mount struct {
	published, publishedBytes *prometheus.CounterVec
	delivered, deliveredBytes *prometheus.CounterVec
	latency                   *prometheus.HistogramVec
}

var (
	_ shmfs.Observer       = (*Mount)(nil)
	_ prometheus.Collector = (*Mount)(nil)
)

// LatencyBuckets are the delivery-latency histogram's upper bounds in
// seconds: 10 µs × 4^k, up to 2.6 s.
var LatencyBuckets = prometheus.ExponentialBuckets(10e-6, 4, 10)

// NewMount returns the mount's collector.
func NewMount() *Mount {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"topic"})
	}
	return &Mount{
		published:      counter("shmfs_mount_published_messages_total", "Messages published by writes to the topic's data and whole files through the mount."),
		publishedBytes: counter("shmfs_mount_published_bytes_total", "Bytes published by writes through the mount."),
		delivered:      counter("shmfs_mount_delivered_messages_total", "Messages handed to readers of the topic's data file through the mount."),
		deliveredBytes: counter("shmfs_mount_delivered_bytes_total", "Bytes of the messages handed to readers of data through the mount."),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shmfs_mount_delivery_latency_seconds",
			Help:    "Age of a message when a reader of data gets it: from the publisher's commit to the read through the mount.",
			Buckets: LatencyBuckets,
		}, []string{"topic"}),
	}
}

// Published implements fs.Observer.
func (m *Mount) Published(topic string, n int) {
	l := label(topic)
	m.published.WithLabelValues(l).Inc()
	m.publishedBytes.WithLabelValues(l).Add(float64(n))
}

// Delivered implements fs.Observer.
func (m *Mount) Delivered(topic string, n int, age time.Duration) {
	l := label(topic)
	m.delivered.WithLabelValues(l).Inc()
	m.deliveredBytes.WithLabelValues(l).Add(float64(n))
	m.latency.WithLabelValues(l).Observe(max(age, 0).Seconds())
}

func (m *Mount) vecs() []prometheus.Collector {
	return []prometheus.Collector{m.published, m.publishedBytes, m.delivered, m.deliveredBytes, m.latency}
}

// Describe implements prometheus.Collector.
func (m *Mount) Describe(ch chan<- *prometheus.Desc) {
	for _, v := range m.vecs() {
		v.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Mount) Collect(ch chan<- prometheus.Metric) {
	for _, v := range m.vecs() {
		v.Collect(ch)
	}
}
