package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/proc"
)

// OriginPrefix starts the Origin of every publisher a NATS bridge creates
// ("nats:<host>"); bridges never export such publishers.
const OriginPrefix = "nats:"

// Bridge carries the topics of one shmfs domain to and from NATS.
type Bridge struct {
	cfg      Config
	id       uint64 // random per run: in headers and announcements
	instance uint64 // this process's shmfs instance id
	subj     subjects
	node     *core.Node
	srv      *server.Server // nil with Config.URL
	nc       *nats.Conn
	url      string
	dataSub  *nats.Subscription

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	kick   chan struct{}
	wg     sync.WaitGroup
	// finishing counts streams delivering their last messages.
	finishing sync.WaitGroup

	stats                                 counters
	invalid, own, disconnects, reconnects atomic.Uint64
	queued                                atomic.Int64 // bytes waiting for local delivery
	warned                                sync.Map     // log keys already used

	// mu guards what follows.
	mu        sync.Mutex
	remotes   map[uint64]*remote // by bridge id
	exports   map[string]*exporter
	streams   map[streamKey]*stream
	tombs     map[streamKey]tomb
	announced localView
	importing bool
	closed    bool

	// parts is the reassembly state of split messages; only the data
	// subscription's goroutine touches it.
	parts map[partKey]*partial
}

// Start joins the shmfs domain, starts the embedded NATS server (unless
// cfg.URL names one), connects, and starts bridging. Close it when done.
func Start(cfg Config) (*Bridge, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &Bridge{
		cfg: cfg, id: proc.RandomID() | 1, instance: proc.InstanceID(),
		kick: make(chan struct{}, 1), remotes: map[uint64]*remote{}, exports: map[string]*exporter{},
		streams: map[streamKey]*stream{}, tombs: map[streamKey]tomb{}, parts: map[partKey]*partial{},
		importing: true,
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.node, err = core.OpenNode(cfg.Core)
	if err != nil {
		return nil, fmt.Errorf("bridge: join shmfs domain: %w", err)
	}
	if b.cfg.Domain == "" {
		b.cfg.Domain = b.node.Config().Domain
	}
	b.subj = newSubjects(cfg.Prefix, b.cfg.Domain)
	fail := func(err error) (*Bridge, error) {
		b.cancel()
		if b.nc != nil {
			b.nc.Close()
		}
		if b.srv != nil {
			b.srv.Shutdown()
		}
		b.node.Close()
		return nil, err
	}
	b.url = cfg.URL
	if cfg.URL == "" {
		if b.srv, err = startServer(cfg, b.id); err != nil {
			return fail(err)
		}
		b.url = b.embeddedURL()
	}
	if b.nc, err = b.connect(); err != nil {
		return fail(err)
	}
	// One subscription for messages and announcements: they are handled
	// in the order each bridge sent them.
	if b.dataSub, err = b.nc.Subscribe(b.subj.wildcard(), b.onMessage); err != nil {
		return fail(fmt.Errorf("%w: subscribe %s: %w", ErrNATS, b.subj.wildcard(), err))
	}
	// Room for bursts of large messages before nats.go drops (counted).
	_ = b.dataSub.SetPendingLimits(1<<16, 4*DefaultMaxPayload)
	if err := b.nc.FlushTimeout(5 * time.Second); err != nil {
		return fail(fmt.Errorf("%w: %s: %w", ErrNATS, b.url, err))
	}
	changes, cancel := b.node.Watch(1024)
	b.wg.Add(2)
	go b.follow(changes, cancel)
	go b.loop()
	return b, nil
}

// embeddedURL is the client URL of the embedded server: its listen address,
// with an unspecified host replaced by loopback.
func (b *Bridge) embeddedURL() string {
	host, _, _ := net.SplitHostPort(b.cfg.Listen)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	port := "0"
	if a, ok := b.srv.Addr().(*net.TCPAddr); ok {
		port = strconv.Itoa(a.Port)
	}
	scheme := "nats"
	if b.cfg.TLSCert != "" {
		scheme = "tls"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

func (b *Bridge) connect() (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("shmfs-bridge " + b.cfg.Name),
		nats.NoEcho(), // never receive our own messages back
		nats.MaxReconnects(-1), nats.ReconnectWait(200 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, 100*time.Millisecond),
		nats.PingInterval(2 * time.Second), nats.MaxPingsOutstanding(3),
		nats.Timeout(5 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return // closed by us
			}
			b.disconnects.Add(1)
			b.cfg.Logf("NATS connection lost: %v; reconnecting", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.reconnects.Add(1)
			b.cfg.Logf("NATS reconnected to %s", nc.ConnectedUrlRedacted())
			b.changed()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				b.logOnce("slow", "NATS: the bridge reads too slowly, messages dropped (counted as slow-consumer drops)")
				return
			}
			b.logOnce("err:"+err.Error(), "NATS: %v", err)
		}),
	}
	switch {
	case b.cfg.Token != "":
		opts = append(opts, nats.Token(b.cfg.Token))
	case b.cfg.User != "":
		opts = append(opts, nats.UserInfo(b.cfg.User, b.cfg.Password))
	case b.cfg.NKeySeed != "":
		o, err := nats.NkeyOptionFromSeed(b.cfg.NKeySeed)
		if err != nil {
			return nil, fmt.Errorf("%w: nkey seed: %w", ErrInvalidConfig, err)
		}
		opts = append(opts, o)
	}
	if b.srv != nil && b.cfg.TLSCert == "" {
		// The embedded server: connect in process (no loopback socket;
		// TLS setups keep the socket, so the certificates are checked).
		opts = append(opts, nats.InProcessServer(b.srv))
	}
	if b.cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(b.cfg.TLSCA))
	}
	if b.cfg.TLSCert != "" && b.cfg.TLSCA != "" {
		opts = append(opts, nats.ClientCert(b.cfg.TLSCert, b.cfg.TLSKey))
	}
	nc, err := nats.Connect(b.url, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: connect to %s: %w", ErrNATS, redact(b.url), err)
	}
	return nc, nil
}

// redact hides passwords in URLs for messages.
func redact(u string) string {
	var out []string
	for _, s := range strings.Split(u, ",") {
		if i := strings.Index(s, "@"); i >= 0 {
			if j := strings.Index(s, "://"); j >= 0 && j < i {
				s = s[:j+3] + "***@" + s[i+1:]
			}
		}
		out = append(out, s)
	}
	return strings.Join(out, ",")
}

// URL returns the NATS URL the bridge connects to (its embedded server's,
// or Config.URL), without credentials.
func (b *Bridge) URL() string { return redact(b.url) }

// ClusterURL returns the route URL of the embedded server ("" without a
// cluster port), for other bridges' Routes.
func (b *Bridge) ClusterURL() string {
	if b.srv == nil || b.cfg.Cluster == "" {
		return ""
	}
	a := b.srv.ClusterAddr()
	if a == nil {
		return ""
	}
	host, _, _ := net.SplitHostPort(b.cfg.Cluster)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "nats-route://" + net.JoinHostPort(host, strconv.Itoa(a.Port))
}

// Subject returns the NATS subject of a topic.
func (b *Bridge) Subject(topic string) string { return b.subj.Subject(topic) }

// Name returns the bridge's host name in NATS.
func (b *Bridge) Name() string { return b.cfg.Name }

// Stats returns the bridge's counters.
func (b *Bridge) Stats() Stats {
	s := Stats{
		Invalid: b.invalid.Load(), Own: b.own.Load(),
		Disconnects: b.disconnects.Load(), Reconnects: b.reconnects.Load(), Connected: b.nc.IsConnected(),
	}
	s.Total, s.Topics = b.stats.snapshot()
	if d, err := b.dataSub.Dropped(); err == nil && d > 0 {
		s.SlowConsumer = uint64(d)
	}
	b.mu.Lock()
	s.Bridges, s.Exports, s.Imports, s.Importing = len(b.remotes), len(b.exports), len(b.streams), b.importing
	b.mu.Unlock()
	return s
}

// Close says goodbye to the other bridges, stops forwarding, closes the
// local publishers and subscribers of the bridge, the NATS connection and
// the embedded server.
func (b *Bridge) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	exps := b.exports
	strs := b.streams
	b.exports, b.streams = map[string]*exporter{}, map[streamKey]*stream{}
	view := b.announced
	b.mu.Unlock()
	_ = b.nc.Publish(b.subj.control, b.encodeAnnouncement(view, true))
	_ = b.nc.FlushTimeout(time.Second)
	b.cancel()
	b.wg.Wait()
	b.finishing.Wait()
	var wg sync.WaitGroup
	for _, e := range exps {
		wg.Go(e.close)
	}
	for _, s := range strs {
		wg.Go(s.close)
	}
	wg.Wait()
	b.nc.Close()
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
	return b.node.Close()
}

func (b *Bridge) changed() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

func (b *Bridge) logOnce(key, format string, args ...any) {
	if _, seen := b.warned.LoadOrStore(key, true); !seen {
		b.cfg.Logf(format, args...)
	}
}

// follow turns registration changes into reconciles.
func (b *Bridge) follow(changes <-chan core.Change, cancel func()) {
	defer b.wg.Done()
	defer cancel()
	for {
		select {
		case <-b.ctx.Done():
			return
		case _, ok := <-changes:
			if !ok {
				return
			}
			b.changed()
		}
	}
}

// loop reconciles on every change and once per refresh period, when it
// also announces and forgets silent bridges.
func (b *Bridge) loop() {
	defer b.wg.Done()
	tick := time.NewTicker(b.cfg.Refresh)
	defer tick.Stop()
	b.reconcile(true)
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.kick:
			b.reconcile(false)
		case <-tick.C:
			b.expire(time.Now())
			b.reconcile(true)
		}
	}
}

// expire forgets bridges silent for Timeout.
func (b *Bridge) expire(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, r := range b.remotes {
		if now.Sub(r.seen) > b.cfg.Timeout {
			delete(b.remotes, id)
			b.cfg.Logf("bridge %s of %q silent for %v: forgotten", hex16(id), r.host, b.cfg.Timeout)
		}
	}
	for k, t := range b.tombs {
		if now.Sub(t.at) > b.cfg.Timeout {
			delete(b.tombs, k)
		}
	}
}

// onMessage handles what the subscription receives, in order.
func (b *Bridge) onMessage(m *nats.Msg) {
	if m.Subject == b.subj.control {
		b.onControl(m)
		return
	}
	b.onData(m)
}

// onControl handles another bridge's announcement.
func (b *Bridge) onControl(m *nats.Msg) {
	r, bye, err := decodeAnnouncement(m.Data)
	if err != nil {
		b.invalid.Add(1)
		b.logOnce("ann", "dropping invalid announcement: %v", err)
		return
	}
	if r.id == b.id {
		return
	}
	r.seen = time.Now()
	b.mu.Lock()
	old := b.remotes[r.id]
	if bye {
		delete(b.remotes, r.id)
	} else {
		b.remotes[r.id] = r
	}
	b.mu.Unlock()
	switch {
	case old == nil && !bye:
		b.cfg.Logf("bridge %s of %q joined", hex16(r.id), r.host)
		// Tell it about us now rather than at our next refresh.
		b.announce(true)
	case old != nil && bye:
		b.cfg.Logf("bridge %s of %q left", hex16(r.id), r.host)
	}
	b.changed()
}

// announce publishes the current view if it changed (or always).
func (b *Bridge) announce(always bool) {
	b.mu.Lock()
	v := b.announced
	b.mu.Unlock()
	if v.pubs == nil && !always {
		return
	}
	if err := b.nc.Publish(b.subj.control, b.encodeAnnouncement(v, false)); err != nil {
		b.logOnce("annerr", "cannot announce: %v", err)
	}
}

// reconcile brings exports, imports and the announcement in line with the
// local registry and the other bridges.
func (b *Bridge) reconcile(periodic bool) {
	topics := b.node.Topics()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	// Subscribers of this host's bridges are no interest of anyone: ours
	// by id, other bridges' by process (a bridge process holds only
	// bridge subscribers; tests run several bridges in one process).
	bridgeProcs := map[uint64]bool{}
	ownSubs := map[uint64]bool{}
	for _, e := range b.exports {
		ownSubs[e.sub.ID()] = true
	}
	leader := true
	for _, r := range b.remotes {
		if r.host == b.cfg.Name && r.instance != b.instance {
			bridgeProcs[r.instance] = true
		}
		if r.host == b.cfg.Name {
			if r.id < b.id {
				leader = false // another bridge of this host imports
			}
		}
	}
	view := localView{pubs: map[uint64]remotePub{}, interest: map[string]bool{}}
	for _, t := range topics {
		for _, p := range t.Publishers {
			if p.Local && !strings.HasPrefix(p.Origin, OriginPrefix) && b.cfg.Export.Match(t.Name) {
				view.pubs[p.ID] = remotePub{topic: t.Name, typ: p.Type}
			}
		}
		for _, s := range t.Subscribers {
			if s.Local && !bridgeProcs[s.Instance] && !ownSubs[s.ID] && b.cfg.Import.Match(t.Name) {
				view.interest[t.Name] = true
			}
		}
	}
	wantExport := map[string]bool{}
	for _, r := range b.remotes {
		if r.host == b.cfg.Name {
			continue
		}
		for t := range r.interest {
			if b.cfg.Export.Match(t) {
				wantExport[t] = true
			}
		}
	}
	var work []func()
	work = append(work, b.reconcileExportsLocked(wantExport)...)
	work = append(work, b.reconcileImportsLocked(leader)...)
	changed := !view.equal(b.announced)
	b.announced = view
	b.mu.Unlock()
	for _, w := range work {
		w()
	}
	if changed || periodic {
		b.announce(true)
	}
}
