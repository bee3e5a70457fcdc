package ecal

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/ecal/glibc"
	"github.com/shmfs/shmfs/internal/proc"
)

// Config configures a Gateway. The zero value imports and exports every
// topic of the default shmfs domain and of eCAL's local host group.
type Config struct {
	// Core selects the shmfs domain and port.
	Core core.Config
	// Import selects the eCAL topics (by eCAL name) that appear in shmfs;
	// Export the shmfs topics (by shmfs name) that appear in eCAL. When both
	// are nil, both default to "*".
	Import, Export Patterns
	// Port is eCAL's registration port (default 14000: [network]
	// multicast_port of ecal.ini).
	Port int
	// HostGroup is eCAL's host group (default: the host name; [network]
	// host_group_name of ecal.ini). eCAL connects through shared memory only
	// inside one host group.
	HostGroup string
	// AckTimeout bounds how long an imported message waits for the shmfs
	// subscribers' acknowledgements (default 1 s; negative: fire and forget).
	// When the eCAL publisher asks for an acknowledgement, its own timeout
	// bounds the wait too, and the gateway acknowledges to eCAL only after
	// the shmfs subscribers did (or that time passed).
	AckTimeout time.Duration
	// ECALAckTimeout is the acknowledgement timeout of the eCAL publishers
	// the gateway creates for exported topics: each message waits until
	// every eCAL subscriber process read it (default 1 s; negative: fire and
	// forget, as eCAL's default).
	ECALAckTimeout time.Duration
	// BufferCount is the number of memory files per exported publisher
	// (default 1, eCAL's memfile_buffer_count).
	BufferCount int
	// MaxMessageSize bounds one message in either direction (default 256 MiB).
	MaxMessageSize int
	// RegistrationTimeout expires eCAL entities that stopped announcing and
	// whose process cannot be checked (default 60 s, eCAL 5's).
	RegistrationTimeout time.Duration
	// Refresh is the registration period (default 1 s, eCAL's).
	Refresh time.Duration
	// AssumeGRefs accepts glibc 2.38-2.40 as having the pre-2.41 condition
	// variable (their stable updates may not): see glibc.Check.
	AssumeGRefs bool
	// Logf receives warnings (default: discarded).
	Logf func(format string, args ...any)

	// acceptGateways lets two gateways see each other's eCAL entities
	// (tests bridge two shmfs domains through eCAL's protocol with it).
	acceptGateways bool
}

func (c Config) withDefaults() (Config, error) {
	if c.Import == nil && c.Export == nil {
		c.Import, c.Export = Patterns{"*"}, Patterns{"*"}
	}
	if err := c.Import.Check(); err != nil {
		return c, fmt.Errorf("%w: --import %w", ErrInvalidConfig, err)
	}
	if err := c.Export.Check(); err != nil {
		return c, fmt.Errorf("%w: --export %w", ErrInvalidConfig, err)
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.Port < 0 || c.Port > 65535 {
		return c, fmt.Errorf("%w: eCAL port %d", ErrInvalidConfig, c.Port)
	}
	if c.HostGroup == "" {
		h, err := os.Hostname()
		if err != nil {
			return c, fmt.Errorf("%w: host name: %w", ErrInvalidConfig, err)
		}
		c.HostGroup = h
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = time.Second
	}
	if c.ECALAckTimeout == 0 {
		c.ECALAckTimeout = time.Second
	}
	if c.BufferCount == 0 {
		c.BufferCount = 1
	}
	if c.BufferCount < 1 || c.BufferCount > 64 {
		return c, fmt.Errorf("%w: buffer count %d (1..64)", ErrInvalidConfig, c.BufferCount)
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 256 << 20
	}
	if c.MaxMessageSize < 1 {
		return c, fmt.Errorf("%w: max message size %d", ErrInvalidConfig, c.MaxMessageSize)
	}
	if c.RegistrationTimeout <= 0 {
		c.RegistrationTimeout = 60 * time.Second
	}
	if c.Refresh <= 0 {
		c.Refresh = time.Second
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return c, nil
}

// Stats are the gateway's counters.
type Stats struct {
	// Imported counts eCAL messages published into shmfs; Exported shmfs
	// messages written for eCAL subscribers.
	Imported, Exported uint64
	// ImportErrors counts eCAL messages that could not be read or published
	// (also counted: shmfs acknowledgement timeouts); ExportAckTimeouts eCAL
	// subscribers that did not acknowledge in time.
	ImportErrors, ExportAckTimeouts uint64
	// Imports and Exports are the entities bridged right now.
	Imports, Exports int
	Registry         RegistryStats
	// StaleCondRefs counts condition-variable signals that gave up waiting
	// for a dead waiter (see glibc.Cond.Signal).
	Glibc string
}

// Gateway connects eCAL 5.x processes of this host to a shmfs domain.
type Gateway struct {
	cfg      Config
	node     *core.Node
	reg      *registry
	recv     *net.UDPConn
	send     *net.UDPConn
	dst      *net.UDPAddr
	host     string
	pid      int32
	exe      string
	glibcVer glibc.Version
	prefix   string // of the gateway's memory file names

	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
	tid  atomic.Int64

	imported, exported, importErrors, ackTimeouts atomic.Uint64

	// sendMu serialises registration sends.
	sendMu sync.Mutex

	// mu guards the maps below and closed.
	mu         sync.Mutex
	imports    map[Key]*importPub
	importSubs map[string]*ecalSub // eCAL topic -> the gateway's eCAL subscriber
	exports    map[uint64]*exportPub
	exportSubs map[string]*exportSub // shmfs topic -> the gateway's shmfs subscriber
	own        map[uint64]bool       // ids of the gateway's shmfs entities
	warned     map[string]bool
	peers      map[int32]error // glibc check per eCAL process
	descs      map[string][]byte
	closed     bool
}

// Start checks this host's glibc, joins the shmfs domain and eCAL's
// registration, and starts bridging. Close it when done.
func Start(cfg Config) (*Gateway, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	v, err := glibc.HostVersion()
	if err != nil {
		return nil, fmt.Errorf("ecal: cannot tell this host's glibc version, so cannot know eCAL's pthread layout: %w", err)
	}
	if err := glibc.Check(v, cfg.AssumeGRefs); err != nil {
		return nil, fmt.Errorf("ecal: this host's %w", err)
	}
	host, _ := os.Hostname()
	exe, _ := os.Executable()
	self := proc.Self()
	g := &Gateway{
		cfg: cfg, host: host, pid: int32(os.Getpid()), exe: exe, glibcVer: v,
		prefix: fmt.Sprintf("ecal_sfgw_%d_%08x_", self.PID, self.Tag()),
		kick:   make(chan struct{}, 1), stop: make(chan struct{}),
		imports: map[Key]*importPub{}, importSubs: map[string]*ecalSub{},
		exports: map[uint64]*exportPub{}, exportSubs: map[string]*exportSub{},
		own: map[uint64]bool{}, warned: map[string]bool{}, peers: map[int32]error{},
		descs: map[string][]byte{},
	}
	g.tid.Store(time.Now().UnixNano())
	if n, err := Sweep(false); err == nil && len(n) > 0 {
		cfg.Logf("removed %d eCAL objects left by dead gateways", len(n))
	}
	g.reg = newRegistry(cfg.HostGroup, cfg.RegistrationTimeout, g.changed)
	g.reg.acceptGateways = cfg.acceptGateways
	g.recv, g.send, g.dst, err = openSockets(cfg.Port)
	if err != nil {
		return nil, err
	}
	g.node, err = core.OpenNode(cfg.Core)
	if err != nil {
		g.recv.Close()
		g.send.Close()
		return nil, fmt.Errorf("ecal: join shmfs domain: %w", err)
	}
	changes, cancel := g.node.Watch(1024)
	g.wg.Add(3)
	go g.receive()
	go g.follow(changes, cancel)
	go g.loop()
	g.announceProcess(CmdRegProcess)
	g.changed()
	return g, nil
}

// Glibc returns the host glibc version the gateway checked.
func (g *Gateway) Glibc() glibc.Version { return g.glibcVer }

// Stats returns the gateway's counters.
func (g *Gateway) Stats() Stats {
	g.mu.Lock()
	ni, ne := len(g.imports), len(g.exports)
	g.mu.Unlock()
	return Stats{
		Imported: g.imported.Load(), Exported: g.exported.Load(),
		ImportErrors: g.importErrors.Load(), ExportAckTimeouts: g.ackTimeouts.Load(),
		Imports: ni, Exports: ne, Registry: g.reg.statsCopy(), Glibc: g.glibcVer.String(),
	}
}

// Close stops bridging: it unregisters the gateway's eCAL entities, removes
// its eCAL memory files and events, and closes its shmfs entities.
func (g *Gateway) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	g.mu.Unlock()
	close(g.stop)
	g.recv.Close()
	g.wg.Wait()
	g.mu.Lock()
	var work []func()
	for k, ip := range g.imports {
		work = append(work, ip.close)
		delete(g.imports, k)
	}
	for t, s := range g.importSubs {
		s := s
		work = append(work, func() { g.announce(s.sample(CmdUnregSub, g)) })
		delete(g.importSubs, t)
	}
	for id, ep := range g.exports {
		ep := ep
		work = append(work, func() { g.announce(ep.sample(CmdUnregPub, g)); ep.close() })
		delete(g.exports, id)
	}
	for t, es := range g.exportSubs {
		work = append(work, es.close)
		delete(g.exportSubs, t)
	}
	g.mu.Unlock()
	runAll(work)
	g.announceProcess(CmdUnregProc)
	g.send.Close()
	// eCAL subscribers that still believed in an export may have created
	// event files under its name after the export removed them: every file
	// under this gateway's prefix is about its exports, and goes now.
	if left, err := filepath.Glob("/dev/shm/" + g.prefix + "*"); err == nil {
		for _, f := range left {
			_ = os.Remove(f)
		}
	}
	return g.node.Close()
}

// runAll runs fns concurrently and waits for all (closing entities may
// each wait out an acknowledgement).
func runAll(fns []func()) {
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Add(1)
		go func() { defer wg.Done(); fn() }()
	}
	wg.Wait()
}

// changed asks the loop to reconcile soon.
func (g *Gateway) changed() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

func (g *Gateway) logOnce(key, format string, args ...any) {
	g.mu.Lock()
	seen := g.warned[key]
	if len(g.warned) > 10000 { // keys name topics and PIDs: bound them
		clear(g.warned)
	}
	g.warned[key] = true
	g.mu.Unlock()
	if !seen {
		g.cfg.Logf(format, args...)
	}
}

// receive reads registration datagrams into the registry.
func (g *Gateway) receive() {
	defer g.wg.Done()
	var d Defragmenter
	buf := make([]byte, 1<<16)
	for {
		_ = g.recv.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := g.recv.ReadFromUDP(buf)
		select {
		case <-g.stop:
			return
		default:
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		now := time.Now()
		_, pb, ok := d.Add(buf[:n], now)
		if !ok {
			continue
		}
		s, err := DecodeSample(pb)
		if err != nil {
			g.reg.mu.Lock()
			g.reg.stats.Invalid++
			g.reg.mu.Unlock()
			continue
		}
		g.noteDesc(s)
		g.reg.apply(s, now)
	}
}

// noteDesc remembers eCAL's descriptors by type, to hand them to eCAL
// subscribers of exported topics of the same type.
func (g *Gateway) noteDesc(s *Sample) {
	if s.Topic == nil {
		return
	}
	d := s.Topic.Type()
	if len(d.Desc) == 0 {
		return
	}
	g.mu.Lock()
	if len(g.descs) < 1024 {
		g.descs[ShmfsType(d)] = d.Desc
	}
	g.mu.Unlock()
}

// follow turns shmfs registration changes into reconcile requests.
func (g *Gateway) follow(changes <-chan core.Change, cancel func()) {
	defer g.wg.Done()
	defer cancel()
	for {
		select {
		case <-g.stop:
			return
		case _, ok := <-changes:
			if !ok {
				return
			}
			g.changed()
		}
	}
}

// loop reconciles on every change and once per refresh period, when it
// also announces the gateway's entities and sweeps the registry.
func (g *Gateway) loop() {
	defer g.wg.Done()
	tick := time.NewTicker(g.cfg.Refresh)
	defer tick.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-g.kick:
			g.reconcile()
		case <-tick.C:
			g.reg.sweep(time.Now())
			g.reconcile()
			g.announceAll()
		}
	}
}

// newTID returns a topic id, unique in this process (eCAL uses a clock).
func (g *Gateway) newTID() string { return strconv.FormatInt(g.tid.Add(1), 10) }

// checkPeer checks (once per process) that an eCAL process uses a glibc
// whose pthread layout is imitated here.
func (g *Gateway) checkPeer(pid int32) error {
	g.mu.Lock()
	err, ok := g.peers[pid]
	g.mu.Unlock()
	if ok {
		return err
	}
	v, verr := glibc.ProcessVersion(int(pid))
	switch {
	case verr == nil:
		err = glibc.Check(v, g.cfg.AssumeGRefs)
		if err != nil {
			err = fmt.Errorf("eCAL process %d: %w", pid, err)
		}
	default:
		// Not readable (another user, no /proc access): it shares the
		// host's libc unless it runs in a container.
		err = nil
	}
	g.mu.Lock()
	if len(g.peers) > 4096 {
		clear(g.peers)
	}
	g.peers[pid] = err
	g.mu.Unlock()
	return err
}

// topicInfo is what reconcile needs to know about one shmfs topic.
type topicInfo struct {
	typ  string
	pubs []core.EntityInfo // not the gateway's
	subs int               // subscribers that are not the gateway's
}

// origin is the Origin of the publishers the gateway creates for eCAL
// topics: "ecal:" and the host group they come from.
func (g *Gateway) origin() string { return "ecal:" + g.cfg.HostGroup }

// reconcile brings the bridged entities in line with both registries.
func (g *Gateway) reconcile() {
	ecalEnts := g.reg.snapshot()
	shm := map[string]*topicInfo{}
	g.mu.Lock()
	own := make(map[uint64]bool, len(g.own))
	for id := range g.own {
		own[id] = true
	}
	g.mu.Unlock()
	for _, t := range g.node.Topics() {
		ti := &topicInfo{typ: t.Type}
		for _, p := range t.Publishers {
			// What was imported from this eCAL host group (by this or
			// another gateway) is not exported back to it: no loops.
			if p.Local && !own[p.ID] && p.Origin != g.origin() {
				ti.pubs = append(ti.pubs, p)
			}
		}
		for _, s := range t.Subscribers {
			if s.Local && !own[s.ID] {
				ti.subs++
			}
		}
		shm[t.Name] = ti
	}
	ecalPubs := map[Key]Entity{}
	ecalSubPIDs := map[string]map[int32]string{} // eCAL topic -> pid -> exe
	for _, e := range ecalEnts {
		if e.Kind == CmdRegPub {
			if g.cfg.Import.Match(e.Topic.Name) && len(e.Topic.SHMFiles()) > 0 {
				ecalPubs[e.key()] = e
			}
			continue
		}
		m := ecalSubPIDs[e.Topic.Name]
		if m == nil {
			m = map[int32]string{}
			ecalSubPIDs[e.Topic.Name] = m
		}
		m[e.Topic.PID] = e.Topic.ProcessName
	}
	peerErr := map[int32]error{}
	for _, e := range ecalEnts {
		if _, ok := peerErr[e.Topic.PID]; !ok {
			peerErr[e.Topic.PID] = g.checkPeer(e.Topic.PID)
		}
	}
	var work []func()
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	work = append(work, g.reconcileImports(ecalPubs, shm, peerErr)...)
	work = append(work, g.reconcileExports(shm, ecalSubPIDs, peerErr)...)
	g.mu.Unlock()
	runAll(work)
}

// ms converts a timeout to eCAL's milliseconds (negative: none).
func ms(d time.Duration) int64 {
	if d < 0 {
		return 0
	}
	return max(1, d.Milliseconds())
}

// announce sends one sample of the gateway.
func (g *Gateway) announce(s *Sample) {
	name := g.host
	if s.Topic != nil {
		name = s.Topic.Name
	}
	pb := s.Encode(nil)
	g.sendMu.Lock()
	defer g.sendMu.Unlock()
	_ = sendDatagrams(g.send, g.dst, Frame(name, pb, int32(g.tid.Add(1))))
}

func (g *Gateway) announceProcess(cmd Cmd) {
	g.announce(&Sample{Cmd: cmd, Process: &Process{
		HostName: g.host, HostGroup: g.cfg.HostGroup, PID: g.pid, Name: g.exe, Unit: "shmfs-ecal",
		Param: strings.Join(os.Args, " "), Severity: 1, InitState: 3, InitInfo: "pub|sub",
		RuntimeVersion: "shmfs-ecal (eCAL 5.13 protocol)",
	}})
}

// announceAll sends every entity of the gateway (the periodic refresh
// eCAL expects; its peers drop entities silent for 60 s).
func (g *Gateway) announceAll() {
	g.announceProcess(CmdRegProcess)
	g.mu.Lock()
	subs := make([]*ecalSub, 0, len(g.importSubs))
	for _, s := range g.importSubs {
		subs = append(subs, s)
	}
	eps := make([]*exportPub, 0, len(g.exports))
	for _, ep := range g.exports {
		eps = append(eps, ep)
	}
	g.mu.Unlock()
	for _, s := range subs {
		g.announce(s.sample(CmdRegSub, g))
	}
	for _, ep := range eps {
		g.announce(ep.sample(CmdRegPub, g))
	}
}

// topicSample fills the fields every topic sample of the gateway carries.
func (g *Gateway) topicSample(cmd Cmd, name, tid string) *Sample {
	return &Sample{Cmd: cmd, Topic: &Topic{
		HostName: g.host, HostGroup: g.cfg.HostGroup, PID: g.pid, ProcessName: g.exe,
		Unit: "shmfs-ecal", ID: tid, Name: name,
		Attr: map[string]string{gatewayAttr: g.node.Config().Domain},
	}}
}
