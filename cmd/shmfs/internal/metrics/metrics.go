// Package metrics serves Prometheus metrics of a shmfs process over HTTP:
// per topic of the domain (Topics, from a core Node), what only the mount
// sees (Mount, an fs.Observer), and the standard Go runtime and process
// metrics. prometheus/client_golang stays here and in cmd, never in core.
//
// A component adds its own counters with one Register call, e.g. a bridge
// that keeps its counters in a Stats method:
//
//	reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
//		Name: "shmfs_bridge_forwarded_total", Help: "Messages forwarded to NATS.",
//	}, func() float64 { return float64(b.Stats().Forwarded) }))
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Path is where Serve answers.
const Path = "/metrics"

// Registry gathers the collectors of one process. New registers the Go
// runtime and process collectors.
type Registry struct {
	reg *prometheus.Registry
}

// New returns a registry with the Go runtime and process metrics.
func New() *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Registry{reg: reg}
}

// Register adds collectors (Topics, Mount, or a component's own).
func (r *Registry) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := r.reg.Register(c); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	return nil
}

// Handler serves the registry in Prometheus's text format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Timeout: 10 * time.Second})
}

// Server is an HTTP server of one registry.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan error
}

// ErrListen: the metrics address cannot be served.
var ErrListen = errors.New("metrics: cannot listen")

// Serve listens on addr (host:port; port 0 picks one, see Addr) and serves
// the registry at Path until Close.
func (r *Registry) Serve(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w on %q: %w", ErrListen, addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, r.Handler())
	s := &Server{ln: ln, done: make(chan error, 1), srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
	}}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address served (with the port chosen for port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the metrics URL.
func (s *Server) URL() string { return "http://" + s.Addr() + Path }

// Close stops serving; requests in progress get up to 5 s.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
