package main

import (
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shmfs/shmfs/cmd/shmfs/internal/metrics"
)

// metricsFlagHelp is the help of --metrics (mount; the bridge takes the same).
const metricsFlagHelp = "serve Prometheus metrics at http://ADDR/metrics (host:port, e.g. 127.0.0.1:9464; port 0 picks one): per topic messages, drops, ack timeouts, publishers, subscribers; Go and process metrics"

// serveMetrics serves, on addr, the per-topic metrics of the command's
// domain, the Go and process metrics, and cs (the command's own: the
// mount's, a bridge's). It prints the URL on stderr. stop ends it.
func serveMetrics(c *cli, addr string, cs ...prometheus.Collector) (stop func(), err error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, usageErrorf("--metrics %q: want host:port, e.g. 127.0.0.1:9464 (%v)", addr, err)
	}
	node, err := c.openNode() // the command's own node: OpenNode shares it within the process
	if err != nil {
		return nil, err
	}
	reg := metrics.New()
	if err := reg.Register(append([]prometheus.Collector{metrics.NewTopics(node)}, cs...)...); err != nil {
		node.Close()
		return nil, err
	}
	srv, err := reg.Serve(addr)
	if err != nil {
		node.Close()
		return nil, err
	}
	fmt.Fprintf(c.stderr, "shmfs: metrics on %s\n", srv.URL())
	return func() {
		_ = srv.Close()
		_ = node.Close()
	}, nil
}
