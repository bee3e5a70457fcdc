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
	"github.com/shmfs/shmfs/internal/proc"
)

// Export: every shmfs publisher of an exported topic gets an eCAL publisher
// (its own memory files and topic id, registered in eCAL). While eCAL
// subscribers of the topic exist, the gateway subscribes to the shmfs topic
// (zero-copy) and writes each message into the eCAL publisher's memory file
// under its named mutex: a strictly increasing clock and a unique hash (an
// eCAL reader drops clocks it has seen and hashes among its last 64), then
// sets every connected eCAL subscriber's event and, in ack mode, waits for
// their acknowledgements under one deadline, as eCAL's CSyncMemoryFile does.
// The shmfs acknowledgement is given only after that, so a slow eCAL
// subscriber holds back an acknowledging shmfs publisher: no message is
// lost on the way.

// exportPub is the eCAL publisher of one shmfs publisher.
type exportPub struct {
	g     *Gateway
	id    uint64 // the shmfs publisher's entity id
	topic string // shmfs topic
	ecal  string // eCAL topic
	typ   string
	tid   string
	salt  uint64
	names []string

	// wantMu guards want and revalidate, set by reconcile.
	wantMu     sync.Mutex
	want       map[int32]string // eCAL subscriber pid -> executable
	revalidate bool

	// For registration, read without mu.
	clock, size, sent atomic.Uint64

	// mu guards the rest; a write holds it during its acknowledgement wait.
	mu     sync.Mutex
	w      []*memWriter
	next   int
	conns  map[int32]*conn
	closed bool
}

// conn is one eCAL subscriber process: its event pair per memory file.
type conn struct {
	pid        int32
	exe        string
	snd, ack   []*object
	ackInvalid bool // timed out: not waited for until it registers again
}

func (g *Gateway) newExportPub(id uint64, topic, typ string) (*exportPub, error) {
	ep := &exportPub{g: g, id: id, topic: topic, ecal: ECALTopic(topic), typ: typ, tid: g.newTID(),
		salt: proc.RandomID(), conns: map[int32]*conn{}, want: map[int32]string{}}
	for i := 0; i < g.cfg.BufferCount; i++ {
		name := fmt.Sprintf("%s%08x", g.prefix, uint32(proc.RandomID()))
		w, err := createMemWriter(name, 0)
		if err != nil {
			ep.destroyWriters()
			return nil, err
		}
		ep.w = append(ep.w, w)
		ep.names = append(ep.names, name)
	}
	return ep, nil
}

func (ep *exportPub) sample(cmd Cmd, g *Gateway) *Sample {
	s := g.topicSample(cmd, ep.ecal, ep.tid)
	if cmd != CmdRegPub {
		return s
	}
	t := s.Topic
	dt := ECALType(ep.typ)
	g.mu.Lock()
	dt.Desc = g.descs[ep.typ]
	g.mu.Unlock()
	t.DataType, t.hasDataType, t.TType, t.TDesc = dt, true, combined(dt), dt.Desc
	t.Reliable = true
	ep.wantMu.Lock()
	t.ConnLocal = int32(len(ep.want))
	ep.wantMu.Unlock()
	t.Size, t.DataClock = int32(min(ep.size.Load(), 1<<31-1)), int64(ep.clock.Load())
	confirmed := ep.sent.Load() > 0
	l := Layer{Type: LayerSHM, Version: 1, Confirmed: confirmed, MemFiles: ep.names, HasPar: true}
	if len(ep.names) == 1 {
		l.ParShm = ep.names[0] // what eCAL 5.13 also fills, for eCAL <= 5.9 readers
	}
	t.Layers = []Layer{l}
	return s
}

// setWant records the eCAL subscriber processes of the topic; the next
// write (or an idle moment) connects and disconnects accordingly. It also
// lets subscribers that timed out be waited for again, as eCAL does on
// every registration of the subscriber.
func (ep *exportPub) setWant(want map[int32]string) {
	ep.wantMu.Lock()
	ep.want = want
	ep.revalidate = true
	ep.wantMu.Unlock()
	if ep.mu.TryLock() {
		ep.applyWant()
		ep.mu.Unlock()
	}
}

// applyWant opens the event pairs of new subscriber processes and removes
// those of processes that left (ep.mu held). The events are named after the
// subscriber's PID: <file>_<pid>_evt and <file>_<pid>_ack_evt; like an eCAL
// publisher, the gateway owns (removes) them.
func (ep *exportPub) applyWant() {
	if ep.closed {
		return
	}
	ep.wantMu.Lock()
	want, revalidate := ep.want, ep.revalidate
	ep.revalidate = false
	ep.wantMu.Unlock()
	for pid, c := range ep.conns {
		if _, ok := want[pid]; !ok {
			c.close()
			delete(ep.conns, pid)
		} else if revalidate {
			c.ackInvalid = false
		}
	}
	for pid, exe := range want {
		if _, ok := ep.conns[pid]; ok {
			continue
		}
		c := &conn{pid: pid, exe: exe}
		var err error
		for _, name := range ep.names {
			p := strconv.Itoa(int(pid))
			var snd, ack *object
			snd, _, err = openObject(name+"_"+p+"_evt", true, time.Now().Add(lockTimeout))
			if err != nil {
				break
			}
			c.snd = append(c.snd, snd)
			ack, _, err = openObject(name+"_"+p+"_ack_evt", true, time.Now().Add(lockTimeout))
			if err != nil {
				break
			}
			c.ack = append(c.ack, ack)
		}
		if err != nil {
			c.close()
			ep.g.logOnce("conn:"+ep.ecal+":"+strconv.Itoa(int(pid)), "cannot connect eCAL subscriber %d of %q: %v", pid, ep.ecal, err)
			continue
		}
		ep.conns[pid] = c
	}
}

func (c *conn) close() {
	for _, o := range c.snd {
		o.close(true)
	}
	for _, o := range c.ack {
		o.close(true)
	}
}

// write publishes one shmfs message to the eCAL subscribers.
func (ep *exportPub) write(h core.Header, view []byte) error {
	g := ep.g
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.closed {
		return ErrClosed
	}
	ep.applyWant()
	clock := ep.clock.Add(1)
	idx := ep.next
	ep.next = (ep.next + 1) % len(ep.w)
	ackTO := g.cfg.ECALAckTimeout
	hdr := MemHeader{ID: uint64(h.ID), Clock: clock, Time: h.Time.UnixMicro(), Hash: mix(ep.salt + clock), AckTimeout: ms(ackTO)}
	if _, err := ep.w[idx].write(hdr, len(view), func(dst []byte) { copy(dst, view) }, 200*time.Millisecond); err != nil {
		return err
	}
	ep.size.Store(uint64(len(view)))
	ep.sent.Add(1)
	conns := make([]*conn, 0, len(ep.conns))
	for _, c := range ep.conns {
		conns = append(conns, c)
	}
	if ackTO > 0 {
		for _, c := range conns {
			_, _ = c.ack[idx].tryWait() // acknowledgements of earlier messages
		}
	}
	var errs []error
	for _, c := range conns {
		if err := c.snd[idx].set(); err != nil {
			errs = append(errs, err)
		}
	}
	g.exported.Add(1)
	if ackTO <= 0 {
		return errors.Join(errs...)
	}
	deadline := time.Now().Add(ackTO)
	for _, c := range conns {
		if c.ackInvalid {
			continue
		}
		for {
			left := time.Until(deadline)
			if left <= 0 {
				c.ackInvalid = true
				g.ackTimeouts.Add(1)
				break
			}
			ok, err := c.ack[idx].wait(min(left, waitSlice), g.stop)
			if ok {
				break
			}
			if err != nil {
				errs = append(errs, err)
				break
			}
			if !processAlive(c.pid, c.exe) {
				break // reconcile drops it
			}
			select {
			case <-g.stop:
				return ErrClosed
			default:
			}
		}
	}
	return errors.Join(errs...)
}

// mix is splitmix64's finaliser: distinct inputs give distinct hashes.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

func (ep *exportPub) close() {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	ep.closed = true
	for pid, c := range ep.conns {
		c.close()
		delete(ep.conns, pid)
	}
	ep.destroyWriters()
}

func (ep *exportPub) destroyWriters() {
	for _, w := range ep.w {
		w.destroy()
	}
	ep.w = nil
}

// exportSub is the gateway's shmfs subscriber of one exported topic.
type exportSub struct {
	topic  string
	sub    *core.Subscriber
	cancel context.CancelFunc
	done   chan struct{}
}

func (es *exportSub) close() {
	es.cancel()
	_ = es.sub.Close()
	<-es.done
}

// reconcileExports updates exports and the gateway's shmfs subscriptions
// (g.mu held).
func (g *Gateway) reconcileExports(shm map[string]*topicInfo, ecalSubs map[string]map[int32]string, peerErr map[int32]error) []func() {
	var work []func()
	want := map[uint64]core.EntityInfo{}
	needSub := map[string]bool{}
	for t, ti := range shm {
		if !g.cfg.Export.Match(t) {
			continue
		}
		for _, p := range ti.pubs {
			want[p.ID] = p
		}
		if len(ti.pubs) > 0 && len(ecalSubs[ECALTopic(t)]) > 0 {
			needSub[t] = true
		}
	}
	for id, ep := range g.exports {
		if _, ok := want[id]; ok {
			continue
		}
		delete(g.exports, id)
		work = append(work, func() { g.announce(ep.sample(CmdUnregPub, g)); ep.close() })
	}
	for id, p := range want {
		if _, ok := g.exports[id]; ok {
			continue
		}
		ep, err := g.newExportPub(id, p.Topic, p.Type)
		if err != nil {
			g.logOnceLocked("export:"+p.Topic, "not exporting shmfs topic %q: %v", p.Topic, err)
			continue
		}
		g.exports[id] = ep
		work = append(work, func() { g.announce(ep.sample(CmdRegPub, g)) })
	}
	for _, ep := range g.exports {
		pids := map[int32]string{}
		for pid, exe := range ecalSubs[ep.ecal] {
			if peerErr[pid] == nil {
				pids[pid] = exe
			} else {
				g.logOnceLocked("peer:"+strconv.Itoa(int(pid)), "not exporting to %v", peerErr[pid])
			}
		}
		work = append(work, func() { ep.setWant(pids) })
	}
	for t, es := range g.exportSubs {
		if needSub[t] {
			continue
		}
		delete(g.exportSubs, t)
		delete(g.own, es.sub.ID())
		work = append(work, es.close)
	}
	for t := range needSub {
		if _, ok := g.exportSubs[t]; ok {
			continue
		}
		sub, err := g.node.NewSubscriber(t, &core.SubscriberOptions{
			ZeroCopy: true, OnlyNew: true, MaxMessageSize: g.cfg.MaxMessageSize,
			// What came from this eCAL host group is not exported back.
			Publishers: func(e core.EntityInfo) bool { return e.Origin != g.origin() },
		})
		if err != nil {
			g.logOnceLocked("sub:"+t, "not exporting shmfs topic %q: %v", t, err)
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		es := &exportSub{topic: t, sub: sub, cancel: cancel, done: make(chan struct{})}
		g.own[sub.ID()] = true
		g.exportSubs[t] = es
		go g.forward(ctx, es)
	}
	return work
}

// forward moves the messages of one shmfs topic to the eCAL publishers of
// their shmfs publishers.
func (g *Gateway) forward(ctx context.Context, es *exportSub) {
	defer close(es.done)
	for {
		err := es.sub.ReceiveFunc(ctx, func(h core.Header, view []byte) error {
			ep := g.exportFor(h.Publisher, es.topic)
			if ep == nil {
				return nil // the gateway's own import, or not exported
			}
			if err := ep.write(h, view); err != nil && !errors.Is(err, ErrClosed) {
				g.logOnce("write:"+ep.ecal, "exporting shmfs topic %q to eCAL: %v", es.topic, err)
			}
			return nil
		})
		switch {
		case err == nil:
		case errors.Is(err, core.ErrClosed), ctx.Err() != nil:
			return
		default:
			g.logOnce("recv:"+es.topic, "subscribing shmfs topic %q: %v", es.topic, err)
		}
	}
}

// exportFor returns the eCAL publisher for a shmfs publisher, creating it if
// its registration has not been reconciled yet (its first message must not
// be lost); nil for the gateway's own publishers.
func (g *Gateway) exportFor(id uint64, topic string) *exportPub {
	g.mu.Lock()
	if g.own[id] || g.closed {
		g.mu.Unlock()
		return nil
	}
	if ep := g.exports[id]; ep != nil {
		g.mu.Unlock()
		return ep
	}
	g.mu.Unlock()
	ti, _ := g.node.Topic(topic)
	typ := ""
	for _, p := range ti.Publishers {
		if p.ID == id {
			typ = p.Type
		}
	}
	if typ == "" {
		return nil
	}
	pids := map[int32]string{}
	ecalName := ECALTopic(topic)
	for _, e := range g.reg.snapshot() {
		if e.Kind == CmdRegSub && e.Topic.Name == ecalName && g.checkPeer(e.Topic.PID) == nil {
			pids[e.Topic.PID] = e.Topic.ProcessName
		}
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	if ep := g.exports[id]; ep != nil {
		g.mu.Unlock()
		return ep
	}
	ep, err := g.newExportPub(id, topic, typ)
	if err != nil {
		g.logOnceLocked("export:"+topic, "not exporting shmfs topic %q: %v", topic, err)
		g.mu.Unlock()
		return nil
	}
	g.exports[id] = ep
	ep.want = pids
	g.mu.Unlock()
	g.announce(ep.sample(CmdRegPub, g))
	return ep
}
