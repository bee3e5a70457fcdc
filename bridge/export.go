package bridge

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/shmfs/shmfs/core"
)

// Export: while another host's bridge announces interest in a topic (a
// subscriber there), this bridge subscribes to the local topic and sends
// every message of every local publisher whose Origin is not "nats:" to
// <prefix>.<domain>.<topic>. The subscriber is created on interest, before
// any local publisher may exist, so that a publisher that appears later
// finds it registered and its first message waits for it; a new exporter
// also gets each publisher's latest message at once (as any new local
// subscriber does).

// headroom is what a message's headers may take in a NATS payload.
const headroom = 1024

type exporter struct {
	b      *Bridge
	topic  string
	subj   string
	tc     *topicCounters
	sub    *core.Subscriber
	cancel context.CancelFunc
	done   chan struct{}

	// typesMu guards types: the publishers' types, learnt by the
	// subscriber's Publishers filter as each publisher appears.
	typesMu sync.Mutex
	types   map[uint64]string
	// last is the last clock exported per publisher (the forwarding
	// goroutine only).
	last map[uint64]uint64
}

// reconcileExportsLocked starts and stops exporters (b.mu held); closing
// runs later, outside the lock.
func (b *Bridge) reconcileExportsLocked(want map[string]bool) []func() {
	var work []func()
	for t, e := range b.exports {
		if !want[t] {
			delete(b.exports, t)
			work = append(work, e.close)
		}
	}
	for t := range want {
		if b.exports[t] != nil {
			continue
		}
		e := &exporter{b: b, topic: t, subj: b.subj.Subject(t), tc: b.stats.of(t),
			done: make(chan struct{}), types: map[uint64]string{}, last: map[uint64]uint64{}}
		sub, err := b.node.NewSubscriber(t, &core.SubscriberOptions{
			ZeroCopy: true, MaxMessageSize: MaxMessage, Spin: b.cfg.Spin,
			// Never what a NATS bridge imported: no loops.
			Publishers: func(p core.EntityInfo) bool {
				if !p.Local || strings.HasPrefix(p.Origin, OriginPrefix) {
					return false
				}
				e.typesMu.Lock()
				e.types[p.ID] = p.Type
				e.typesMu.Unlock()
				return true
			},
		})
		if err != nil {
			b.logOnce("export:"+t, "not exporting topic %q: %v", t, err)
			continue
		}
		e.sub = sub
		var ctx context.Context
		ctx, e.cancel = context.WithCancel(context.Background())
		b.exports[t] = e
		go e.run(ctx)
	}
	return work
}

func (e *exporter) close() {
	e.cancel()
	_ = e.sub.Close()
	<-e.done
}

func (e *exporter) run(ctx context.Context) {
	defer close(e.done)
	for {
		err := e.sub.ReceiveFunc(ctx, e.forward)
		switch {
		case err == nil:
		case errors.Is(err, core.ErrClosed), ctx.Err() != nil:
			return
		default:
			e.b.logOnce("recv:"+e.topic, "subscribing to local topic %q: %v", e.topic, err)
		}
	}
}

// forward sends one local message to NATS; view is valid only during the
// call (nats.go copies it into its buffer before returning).
func (e *exporter) forward(h core.Header, view []byte) error {
	e.typesMu.Lock()
	typ := e.types[h.Publisher]
	e.typesMu.Unlock()
	if typ == "" {
		typ = "raw"
	}
	// Header.Dropped counts both messages this subscriber skipped (clock
	// gaps, which the importer sees itself) and losses upstream of the
	// publisher (SendOptions.Lost): only the latter travel in Shmfs-Lost.
	lost := h.Dropped
	if prev := e.last[h.Publisher]; prev != 0 && h.Clock > prev {
		lost -= min(lost, h.Clock-prev-1)
	} else if prev == 0 {
		lost = 0 // the first message seen: a late start, not a loss
	}
	e.last[h.Publisher] = h.Clock
	m := meta{
		bridge: e.b.id, origin: e.b.cfg.Name, publisher: h.Publisher, typ: typ, id: h.ID,
		clock: h.Clock, time: h.Time.UnixNano(), sent: time.Now().UnixNano(), lost: lost,
	}
	if err := e.b.publish(e.subj, &m, view); err != nil {
		e.tc.errs.Add(1)
		e.b.logOnce("pub:"+e.topic+":"+err.Error(), "sending topic %q to NATS: %v (messages lost and counted)", e.topic, err)
		return nil
	}
	e.tc.msgsOut.Add(1)
	e.tc.bytesOut.Add(uint64(len(view)))
	return nil
}

// publish sends one message, split into parts when it exceeds the
// server's max_payload.
func (b *Bridge) publish(subject string, m *meta, data []byte) error {
	limit := int(b.nc.MaxPayload()) - headroom
	if limit < 1024 {
		limit = 1024
	}
	if len(data) <= limit {
		return b.nc.PublishMsg(&nats.Msg{Subject: subject, Header: m.header(), Data: data})
	}
	m.of = (len(data) + limit - 1) / limit
	m.size = len(data)
	for m.part = 0; m.part < m.of; m.part++ {
		end := min((m.part+1)*limit, len(data))
		if err := b.nc.PublishMsg(&nats.Msg{Subject: subject, Header: m.header(), Data: data[m.part*limit : end]}); err != nil {
			return err
		}
	}
	return nil
}
