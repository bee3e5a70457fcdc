package ecal

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmfs/shmfs/core"
)

// Import: every eCAL publisher of an imported topic gets a shmfs publisher
// of the same (escaped) name at once, so the topic shows in 'shmfs ls' and
// the mount. The gateway subscribes in eCAL (registers an eCAL subscriber,
// which makes eCAL's publishers write and signal it) only while a shmfs
// subscriber of the topic exists; then one observer per memory file of the
// publisher waits on the event eCAL signals (<file>_<gateway pid>_evt),
// copies the message under the file's mutex, publishes it in shmfs, and,
// if eCAL asked for it, acknowledges (<file>_<pid>_ack_evt) once the shmfs
// subscribers did.

// importPub bridges one eCAL publisher.
type importPub struct {
	g      *Gateway
	key    Key
	ecal   string // eCAL topic name
	exe    string
	files  []string // guarded by Gateway.mu
	pub    *core.Publisher
	ackTO  time.Duration
	mu     sync.Mutex // guards obs
	obs    map[string]*observer
	closed bool
}

// ecalSub is the gateway's eCAL subscriber of one imported topic.
type ecalSub struct {
	name     string
	tid      string
	dt       DataType
	npubs    int
	received atomic.Bool
}

func (s *ecalSub) sample(cmd Cmd, g *Gateway) *Sample {
	smp := g.topicSample(cmd, s.name, s.tid)
	if cmd == CmdRegSub {
		t := smp.Topic
		t.DataType, t.hasDataType = s.dt, true
		t.TType = combined(s.dt)
		t.Layers = []Layer{{Type: LayerSHM, Version: 1, Confirmed: s.received.Load()}}
		t.ConnLocal = int32(s.npubs)
	}
	return smp
}

func combined(d DataType) string {
	if d.Encoding == "" {
		return d.Name
	}
	return d.Encoding + ":" + d.Name
}

// reconcileImports updates imports and the eCAL subscriptions (g.mu held);
// it returns what has to run after the lock is released.
func (g *Gateway) reconcileImports(pubs map[Key]Entity, shm map[string]*topicInfo, peerErr map[int32]error) []func() {
	var work []func()
	// Gone or changed publishers.
	for k, ip := range g.imports {
		e, ok := pubs[k]
		if !ok {
			delete(g.imports, k)
			delete(g.own, ip.pub.ID())
			work = append(work, ip.close)
			continue
		}
		ip.files = e.Topic.SHMFiles()
	}
	// New publishers.
	for k, e := range pubs {
		if _, ok := g.imports[k]; ok {
			continue
		}
		topic, err := ShmfsTopic(e.Topic.Name)
		if err != nil {
			g.logOnceLocked("name:"+e.Topic.Name, "not importing: %v", err)
			continue
		}
		typ := ShmfsType(e.Topic.Type())
		if ti := shm[topic]; ti != nil && len(ti.pubs) > 0 && ti.typ != "" && ti.typ != typ {
			g.logOnceLocked("type:"+topic, "not importing eCAL topic %q of type %q: shmfs topic %q has type %q", e.Topic.Name, typ, topic, ti.typ)
			continue
		}
		if err := peerErr[e.Topic.PID]; err != nil {
			g.logOnceLocked("peer:"+strconv.Itoa(int(e.Topic.PID)), "not importing from %v", err)
			continue
		}
		ackTO := g.cfg.AckTimeout
		if ackTO < 0 {
			ackTO = 0
		}
		pub, err := g.node.NewPublisher(topic, &core.PublisherOptions{
			Type: typ, AckTimeout: ackTO, MaxMessageSize: g.cfg.MaxMessageSize,
			Origin: g.origin(),
		})
		if err != nil {
			g.logOnceLocked("pub:"+topic+":"+k.TID, "not importing eCAL topic %q: %v", e.Topic.Name, err)
			continue
		}
		g.own[pub.ID()] = true
		g.imports[k] = &importPub{g: g, key: k, ecal: e.Topic.Name, exe: e.Topic.ProcessName,
			files: e.Topic.SHMFiles(), pub: pub, ackTO: ackTO, obs: map[string]*observer{}}
	}
	// eCAL subscriptions: one per imported eCAL topic with shmfs subscribers.
	want := map[string]*ecalSub{}
	for _, ip := range g.imports {
		topic, _ := ShmfsTopic(ip.ecal)
		ti := shm[topic]
		if ti == nil || ti.subs == 0 {
			continue
		}
		s := want[ip.ecal]
		if s == nil {
			e := pubs[ip.key]
			s = &ecalSub{name: ip.ecal, dt: e.Topic.Type()}
			want[ip.ecal] = s
		}
		s.npubs++
	}
	for name, s := range g.importSubs {
		if w, ok := want[name]; ok {
			s.npubs = w.npubs
			continue
		}
		delete(g.importSubs, name)
		work = append(work, func() { g.announce(s.sample(CmdUnregSub, g)) })
	}
	for name, w := range want {
		if _, ok := g.importSubs[name]; ok {
			continue
		}
		w.tid = g.newTID()
		g.importSubs[name] = w
		work = append(work, func() { g.announce(w.sample(CmdRegSub, g)) })
	}
	// Observers run while the topic is subscribed.
	for _, ip := range g.imports {
		sub, files := g.importSubs[ip.ecal], append([]string(nil), ip.files...)
		work = append(work, func() { ip.sync(sub, files) })
	}
	return work
}

func (g *Gateway) logOnceLocked(key, format string, args ...any) {
	if len(g.warned) > 10000 {
		clear(g.warned)
	}
	if !g.warned[key] {
		g.warned[key] = true
		g.cfg.Logf(format, args...)
	}
}

// sync starts observers for the memory files while sub is non-nil, and
// stops the others. The event pairs belong to the eCAL publisher (it
// removes them when it disconnects): they are removed here only if it died.
func (ip *importPub) sync(sub *ecalSub, files []string) {
	ip.mu.Lock()
	defer ip.mu.Unlock()
	if ip.closed {
		return
	}
	want := map[string]bool{}
	if sub != nil {
		for _, f := range files {
			want[f] = true
		}
	}
	for f, o := range ip.obs {
		if !want[f] {
			delete(ip.obs, f)
			o.stop(!processAlive(ip.key.PID, ip.exe))
		}
	}
	for f := range want {
		if _, ok := ip.obs[f]; ok {
			continue
		}
		o := &observer{ip: ip, file: f, sub: sub, quit: make(chan struct{}), done: make(chan struct{})}
		ip.obs[f] = o
		go o.run()
	}
}

func (ip *importPub) close() {
	ip.mu.Lock()
	ip.closed = true
	obs := ip.obs
	ip.obs = nil
	ip.mu.Unlock()
	for _, o := range obs {
		o.stop(!processAlive(ip.key.PID, ip.exe))
	}
	_ = ip.pub.Close()
}

// observer reads one memory file of an eCAL publisher.
type observer struct {
	ip   *importPub
	file string
	sub  *ecalSub
	quit chan struct{}
	done chan struct{}
	// unlink: remove this gateway's event pair when the observer stops (its
	// publisher, which owns them, is gone and will not).
	unlink atomic.Bool
}

func (o *observer) stop(unlink bool) {
	o.unlink.Store(unlink)
	close(o.quit)
	<-o.done
}

// waitSlice bounds one wait on eCAL's event so that stops are noticed
// (eCAL's own observer waits 20 ms at a time).
const waitSlice = 100 * time.Millisecond

func (o *observer) run() {
	defer close(o.done)
	g := o.ip.g
	pid := strconv.Itoa(int(g.pid))
	sndName, ackName := o.file+"_"+pid+"_evt", o.file+"_"+pid+"_ack_evt"
	var snd, ack *object
	var rd *memReader
	defer func() {
		unlink := o.unlink.Load()
		snd.close(unlink)
		ack.close(unlink)
		if rd != nil {
			rd.close()
		}
	}()
	// Open the files; the publisher creates them before it registers, but a
	// registration may still arrive first.
	for attempt := 0; ; attempt++ {
		var err error
		if snd == nil {
			snd, _, err = openObject(sndName, true, time.Now().Add(lockTimeout))
		}
		if err == nil && ack == nil {
			ack, _, err = openObject(ackName, true, time.Now().Add(lockTimeout))
		}
		if err == nil && rd == nil {
			rd, err = openMemReader(o.file)
		}
		if err == nil {
			break
		}
		if errors.Is(err, ErrUnsupported) || attempt == 50 {
			g.logOnce("open:"+o.file, "not importing eCAL memory file %s: %v", o.file, err)
			<-o.quit
			return
		}
		select {
		case <-o.quit:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	var last uint64
	var buf []byte
	pending := false
	for {
		select {
		case <-o.quit:
			return
		default:
		}
		if !pending {
			ok, err := snd.wait(waitSlice, o.quit)
			if err != nil {
				g.logOnce("wait:"+o.file, "eCAL event %s: %v", sndName, err)
				select {
				case <-o.quit:
					return
				case <-time.After(waitSlice):
				}
				continue
			}
			pending = ok
			if !ok {
				continue
			}
		}
		// As eCAL's observer: try the file lock for 5 ms; if it is busy,
		// keep the event consumed and try again.
		h, payload, fresh, err := rd.read(last, buf, g.cfg.MaxMessageSize, 5*time.Millisecond)
		buf = payload
		if errors.Is(err, ErrTimeout) {
			continue
		}
		pending = false
		if err != nil {
			g.importErrors.Add(1)
			g.logOnce("read:"+o.file, "eCAL memory file %s: %v", o.file, err)
			if fresh {
				last = h.Clock
			}
			continue
		}
		if !fresh {
			continue
		}
		last = h.Clock
		o.sub.received.Store(true)
		o.forward(h, payload)
		if h.AckTimeout != 0 {
			if err := ack.set(); err != nil {
				g.logOnce("ack:"+o.file, "eCAL event %s: %v", ackName, err)
			}
		}
	}
}

// forward publishes one eCAL message in shmfs. The eCAL id travels as the
// shmfs message ID. With an eCAL acknowledgement pending, the shmfs
// acknowledgement wait ends at eCAL's timeout.
func (o *observer) forward(h MemHeader, payload []byte) {
	g := o.ip.g
	ctx := context.Background()
	if h.AckTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(h.AckTimeout)*time.Millisecond)
		defer cancel()
	}
	err := o.ip.pub.SendWith(ctx, payload, core.SendOptions{ID: int64(h.ID)})
	switch {
	case err == nil:
		g.imported.Add(1)
	case errors.Is(err, core.ErrAckTimeout), errors.Is(err, context.DeadlineExceeded):
		g.imported.Add(1) // published; a subscriber was slow
		g.importErrors.Add(1)
	default:
		g.importErrors.Add(1)
		g.logOnce("send:"+o.ip.pub.Topic(), "publishing eCAL topic %q in shmfs: %v", o.ip.ecal, fmt.Errorf("%w", err))
	}
}
