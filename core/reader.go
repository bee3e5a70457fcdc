package core

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmfs/shmfs/core/event"
	"github.com/shmfs/shmfs/core/memfile"
	"github.com/shmfs/shmfs/core/registration"
	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shm"
	"github.com/shmfs/shmfs/internal/shmname"
)

// topicReader is this process's subscriber side of one topic: the bell that
// every publisher of the topic rings after each message, one feed per
// publisher, and the topic's subscribers, each with a cursor per feed.
// Subscribers read the publishers' memory files themselves; whichever of
// them finds nothing to read sleeps on the bell for all (the leader), the
// others wait for the leader to wake them (followers): one futex wake per
// message reaches a Receive, and one thread per topic sleeps.
type topicReader struct {
	node  *Node
	topic string
	bell  *event.Event

	// mu guards subs, feeds, refused, reported and the waiter state; the
	// lists are also published as copies (subList, feedList) for lock-free
	// reading.
	mu    sync.Mutex
	subs  map[*Subscriber]struct{}
	feeds map[uint64]*feed // by publisher entity id
	// refused are announced publishers (id: memory file) that failed
	// verification: not tried again while registration announces them so.
	refused map[uint64]string
	// reported are the refusals told to the subscribers, each once (see
	// reportKey); at most maxReports.
	reported map[string]bool
	subList  atomic.Pointer[[]*Subscriber]
	leading  bool          // a goroutine sleeps on the bell
	waking   chan struct{} // closed when the leader's sleep ends
	follower bool          // someone waits on waking
	// heldSince is when the leader saw a publisher wait for this process's
	// acknowledgement (per feed); guarded by mu (read and written by the
	// leader, which holds the role under mu).
	heldSince map[*feed]time.Time
	closed    bool
	// pokes counts calls of poke: a leader whose sleep began before one
	// returns, so that every waiter re-checks its state.
	pokes atomic.Uint64
}

// feed is this process's connection to one publisher of a topic: its memory
// file (read-only) and the ack event this process created for it.
type feed struct {
	t     *topicReader
	info  EntityInfo
	mf    *memfile.File
	l     link // bell: the topic's (not the feed's); ack: the feed's own
	slots uint64

	// views is held shared by every subscriber while it reads the mapping
	// and exclusively by release before it unmaps: a view is never unmapped
	// under a running callback. It guards released.
	views    sync.RWMutex
	released bool

	// curs are the cursors of every subscriber of the topic on this feed;
	// copy-on-write under topicReader.mu.
	curs atomic.Pointer[[]*cursor]
	// ackMu serializes recomputations of acked, the newest clock every
	// cursor that keeps up has consumed (published in the ack event).
	ackMu sync.Mutex
	acked atomic.Uint64
	// badHead: the head word was found corrupt (reported once until it
	// is plausible again).
	badHead atomic.Bool
}

// cursor is one subscriber's position in one feed.
type cursor struct {
	f *feed
	s *Subscriber
	// next is the clock the subscriber takes next.
	next atomic.Uint64
	// lagging: the subscriber held the publisher back while others of this
	// process kept up, so it no longer counts for the acknowledgement
	// until it catches up (it loses what is overwritten meanwhile).
	lagging atomic.Bool
	// accepts: the subscriber takes this publisher's messages (type and
	// SubscriberOptions.Publishers); set at creation.
	accepts bool
	// mismatch: rejected for its type (counted per message).
	mismatch bool
	// dropped counts misses not yet reported in a Header; guarded by the
	// subscriber's recvMu.
	dropped uint64
}

// readerLocked returns the topic's reader, creating it (and its bell) for a
// first subscriber. Caller holds n.mu.
func (n *Node) readerLocked(topic string) (*topicReader, error) {
	if t := n.readers[topic]; t != nil {
		return t, nil
	}
	bell, err := event.Create(shmname.Object(n.cfg.Domain, proc.RandomID(), "snd"), event.Options{})
	if err != nil {
		return nil, shmError(fmt.Sprintf("subscriber %q: create bell", topic), err)
	}
	t := &topicReader{
		node: n, topic: topic, bell: bell,
		subs: map[*Subscriber]struct{}{}, feeds: map[uint64]*feed{}, refused: map[uint64]string{}, reported: map[string]bool{},
		waking: make(chan struct{}), heldSince: map[*feed]time.Time{},
	}
	t.subList.Store(&[]*Subscriber{})
	n.readers[topic] = t
	return t, nil
}

// addSubscriber gives s a cursor on every feed.
func (t *topicReader) addSubscriber(s *Subscriber) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.subs[s] = struct{}{}
	t.publishSubs()
	var mine []*cursor
	for _, f := range t.feeds {
		c := f.newCursor(s)
		f.curs.Store(appendCopy(f.curs.Load(), c))
		mine = append(mine, c)
		f.updateAttached()
	}
	s.curs.Store(&mine)
}

// removeSubscriber drops s's cursors; the acknowledgements it held back
// advance. It reports whether the topic has no subscriber left.
func (t *topicReader) removeSubscriber(s *Subscriber) (empty bool) {
	t.mu.Lock()
	delete(t.subs, s)
	t.publishSubs()
	feeds := make([]*feed, 0, len(t.feeds))
	for _, f := range t.feeds {
		var keep []*cursor
		for _, c := range *f.curs.Load() {
			if c.s != s {
				keep = append(keep, c)
			}
		}
		f.curs.Store(&keep)
		f.updateAttached()
		feeds = append(feeds, f)
	}
	empty = len(t.subs) == 0
	t.mu.Unlock()
	for _, f := range feeds {
		f.recomputeAck()
	}
	// A leader sleeping for s (or for nobody now) wakes and re-checks.
	t.poke()
	return empty
}

func (t *topicReader) publishSubs() {
	l := make([]*Subscriber, 0, len(t.subs))
	for s := range t.subs {
		l = append(l, s)
	}
	t.subList.Store(&l)
}

func appendCopy(p *[]*cursor, c *cursor) *[]*cursor {
	var old []*cursor
	if p != nil {
		old = *p
	}
	l := make([]*cursor, len(old), len(old)+1)
	copy(l, old)
	l = append(l, c)
	return &l
}

// newCursor makes s's cursor on f: it starts at the publisher's latest
// message, or after it with OnlyNew. Caller holds t.mu.
func (f *feed) newCursor(s *Subscriber) *cursor {
	c := &cursor{f: f, s: s}
	c.mismatch = s.opts.Type != "" && s.opts.Type != f.info.Type
	c.accepts = !c.mismatch && (s.opts.Publishers == nil || s.opts.Publishers(f.info))
	head := f.mf.Head()
	switch {
	case s.opts.OnlyNew:
		c.next.Store(head + 1)
	case head == 0:
		c.next.Store(1)
	default:
		c.next.Store(head)
	}
	if c.mismatch {
		s.report(fmt.Errorf("%w: publisher of topic %q (pid %d) has type %q, subscriber wants %q; its messages are ignored",
			ErrTypeMismatch, f.t.topic, f.info.PID, f.info.Type, s.opts.Type))
	}
	return c
}

// updateAttached tells the publisher whether this process takes its
// messages at all: it waits only for processes that do. Caller holds t.mu.
func (f *feed) updateAttached() {
	for _, c := range *f.curs.Load() {
		if c.accepts {
			f.l.ack.SetAttached(proc.Self())
			return
		}
	}
	f.l.ack.SetAttached(proc.Identity{})
}

// recomputeAck publishes the newest clock that every cursor keeping up has
// consumed. It never goes back. With no cursor keeping up it stays where it
// is: the publisher then times out on this process.
func (f *feed) recomputeAck() {
	f.ackMu.Lock()
	defer f.ackMu.Unlock()
	m, any := uint64(math.MaxUint64), false
	for _, c := range *f.curs.Load() {
		if c.accepts && !c.lagging.Load() {
			m, any = min(m, c.next.Load()-1), true
		}
	}
	if !any {
		// Nobody here takes this publisher's messages (or all lag):
		// acknowledge what is there, so a process that reads nothing of it
		// never holds it back.
		if !f.anyAccepting() {
			m = f.mf.Head()
		} else {
			return
		}
	}
	if m > f.acked.Load() {
		f.acked.Store(m)
		f.l.publishAck(m, f.mf.Waiting)
	}
}

func (f *feed) anyAccepting() bool {
	for _, c := range *f.curs.Load() {
		if c.accepts {
			return true
		}
	}
	return false
}

// consumed moves c past clock (taken or skipped) and updates the process's
// acknowledgement if c was the one holding it.
func (c *cursor) consumed(clock uint64) {
	old := c.next.Swap(clock + 1)
	f := c.f
	if c.lagging.Load() {
		if clock >= f.acked.Load() {
			c.lagging.Store(false) // caught up: counts again
		}
		return
	}
	if old-1 <= f.acked.Load() {
		f.recomputeAck()
	}
}

// addFeed connects to publisher e after verifying its memory file against
// the announcement: the file's creator must be the announced process, and
// its header must name the announced publisher and topic. The subscribers'
// cursors exist before the ack event appears (with its attached word
// already set when some subscriber takes the publisher's messages): once
// the publisher sees the ack event it may count on this process, and no
// message it sends from then on can fall before a cursor. Problems are
// reported once to the topic's subscribers. Caller holds no lock.
func (t *topicReader) addFeed(e registration.Entity) {
	t.mu.Lock()
	if m, ok := t.refused[e.ID]; t.closed || t.feeds[e.ID] != nil || (ok && m == e.MemFiles[0]) {
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	f, err := t.openFeed(e)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil && (t.closed || t.feeds[e.ID] != nil) {
		f.mf.Close()
		return
	}
	if err == nil {
		var curs []*cursor
		for s := range t.subs {
			curs = append(curs, f.newCursor(s))
		}
		f.curs.Store(&curs)
		var attached proc.Identity
		if f.anyAccepting() {
			attached = proc.Self()
		}
		share := t.shareWith(f.mf.Perm())
		if f.l.ack, err = createAck(f.mf.Name(), attached, share); err != nil {
			f.mf.Close()
			err = fmt.Errorf("topic %q: %w", t.topic, err)
		}
	}
	if err != nil {
		t.refused[e.ID] = e.MemFiles[0]
		if k, ok := reportKey(e, err); ok && !t.reported[k] && len(t.reported) < maxReports {
			t.reported[k] = true
			for s := range t.subs {
				s.report(err)
			}
		}
		return
	}
	for _, c := range *f.curs.Load() {
		c.s.curs.Store(appendCopy(c.s.curs.Load(), c))
	}
	t.feeds[e.ID] = f
	// The acknowledgement starts below the cursors: the latest message,
	// which a new subscriber takes first, stays protected until it is
	// taken.
	f.recomputeAck()
	t.announceLocked()
}

// maxReports bounds the refusals a topic's subscribers are told about: a
// hostile user could otherwise announce fake publishers without end.
const maxReports = 64

// reportKey says whether a refusal is worth telling the subscribers, and
// what makes it the same refusal again: a publisher (process) of another
// user is reported once per process; an announcement that does not match
// shared memory once per memory file it named (forged announcements of one
// file in any number count once). A publisher that closed, or a memory
// file that is gone, is not news.
func reportKey(e registration.Entity, err error) (string, bool) {
	switch {
	case errors.Is(err, ErrClosed):
		return "", false
	case errors.Is(err, ErrPermission):
		return fmt.Sprintf("permission/%d/%d", e.PID, e.StartTime), true
	case errors.Is(err, ErrUnverified):
		return "unverified/" + e.MemFiles[0], true
	}
	return "other/" + e.MemFiles[0], true
}

// files returns what the topic's subscriber entities announce as their
// memory files: the bell first, then the ack event of every connection, so
// that a publisher learns at once (the change is announced immediately)
// that this process connected to it and links it. At most
// registration.MaxMemFiles names; publishers beyond that link at their
// next refresh. Caller holds t.mu.
func (t *topicReader) filesLocked() []string {
	files := []string{t.bell.Name()}
	for _, f := range t.feeds {
		if len(files) == registration.MaxMemFiles {
			break
		}
		files = append(files, f.l.ack.Name())
	}
	return files
}

// announceLocked re-announces the topic's subscribers with the current
// files. Caller holds t.mu.
func (t *topicReader) announceLocked() {
	files := t.filesLocked()
	for s := range t.subs {
		_ = t.node.agent.Update(s.entity(files))
	}
}

// openFeed opens and verifies publisher e's memory file.
func (t *topicReader) openFeed(e registration.Entity) (*feed, error) {
	mf, err := openPublisherFile(e, t.topic)
	if err != nil {
		return nil, err
	}
	who := proc.Identity{PID: e.PID, StartTime: e.StartTime}
	f := &feed{t: t, info: entityInfo(e), mf: mf, l: link{bell: t.bell, peer: who}, slots: uint64(mf.Slots())}
	f.curs.Store(&[]*cursor{})
	return f, nil
}

// openPublisherFile opens publisher e's memory file read-only and verifies
// it against the announcement (docs/protocol.md, "Registration"): the
// file's owner may be read from here and it is not world-writable (memfile),
// its creator is the announced process (instance, pid, start time), alive,
// and its header names the announced publisher and topic. Subscribers and
// monitors connect only through it.
func openPublisherFile(e registration.Entity, topic string) (*memfile.File, error) {
	name := e.MemFiles[0]
	who := proc.Identity{PID: e.PID, StartTime: e.StartTime}
	owner, err := proc.UID(int(e.PID))
	if err != nil {
		return nil, fmt.Errorf("%w: publisher %016x of topic %q: %v", ErrUnverified, e.ID, topic, err)
	}
	// The file may be owned by the publisher process's uid (the kernel's
	// word, not the announcement's); whether we take that user's messages
	// is decided below, from the file's own owner and mode.
	mf, err := memfile.Open(name, memfile.OpenOptions{ReadOnly: true, Owner: owner})
	if err != nil {
		if errors.Is(err, memfile.ErrPermission) {
			pe := openDenied(topic, name, e.PID)
			if pe.Owner == 0 && pe.Mode == 0 { // the name is gone: say what open said
				pe.Why = err.Error()
			}
			return nil, pe
		}
		return nil, shmError(fmt.Sprintf("topic %q: open publisher pid %d's memory file", topic, e.PID), err)
	}
	fail := func(err error) (*memfile.File, error) { mf.Close(); return nil, err }
	if err := checkCreator(mf.Creator(), e.Instance, who); err != nil {
		return fail(fmt.Errorf("topic %q: memory file %s (publisher %016x of topic %q): %w", topic, name, mf.Publisher(), mf.Topic(), err))
	}
	if mf.Publisher() != e.ID || mf.Topic() != topic {
		return fail(fmt.Errorf("%w: memory file %s belongs to publisher %016x of topic %q, registration announced publisher %016x of topic %q",
			ErrUnverified, name, mf.Publisher(), mf.Topic(), e.ID, topic))
	}
	if p := mf.Perm(); !trustsPublisher(p) {
		return fail(&PermissionError{Topic: topic, Owner: p.UID, Mode: p.Mode, PID: e.PID,
			Why: fmt.Sprintf("publisher pid %d is another user's and does not share the topic with a group of ours (its group %d); its messages are ignored", e.PID, p.GID)})
	}
	if mf.Closed() {
		return fail(fmt.Errorf("%w: topic %q: publisher %016x closed", ErrClosed, topic, e.ID))
	}
	return mf, nil
}

// shareWith returns the group this process's events for a publisher with
// memory file permissions p must be shared with, or -1: a publisher of
// another user (not root, who needs no permission) that shares its topic
// with a group of ours must be able to ring our bell and read our
// acknowledgements. The topic's bell is shared with the first such group;
// a publisher of another group then cannot ring it (the subscribers still
// find its messages, at their next periodic look, within a second).
// Caller holds t.mu.
func (t *topicReader) shareWith(p shm.Perm) int64 {
	if p.UID == me().UIDs[1] || p.UID == 0 {
		return -1
	}
	if bp := t.bell.Perm(); bp.Mode&0o060 == 0 {
		_ = t.bell.Share(p.GID)
	}
	return int64(p.GID)
}

// createAck creates this process's ack event for a publisher's memory file,
// shared with group share unless it is -1.
func createAck(memfileName string, attached proc.Identity, share int64) (*event.Event, error) {
	name := event.AckName(memfileName, proc.InstanceID())
	ack, err := event.Create(name, event.Options{Attached: attached})
	if err == nil && share >= 0 {
		if err = ack.Share(uint32(share)); err != nil {
			_ = ack.Destroy()
			return nil, shmError("share ack event", err)
		}
	}
	if errors.Is(err, shm.ErrExist) {
		// Left by an earlier feed of this process that could not remove
		// it: reuse it if it is ours.
		if ack, err = event.Open(name, event.Options{}); err == nil {
			if ack.Creator().Instance != proc.InstanceID() {
				ack.Close()
				return nil, fmt.Errorf("%w: %s was created by another process", ErrUnverified, name)
			}
			ack.SetAttached(attached)
		}
	}
	if err != nil {
		return nil, shmError("create ack event", err)
	}
	return ack, nil
}

// gone reports whether the publisher behind f is really gone: it closed
// its file, removed it, or died. Registration alone is not believed.
func (f *feed) gone() bool {
	return f.mf.Closed() || !f.mf.Linked() || !f.l.peer.Alive()
}

// removeFeed disconnects f: cursors go, then the mapping (once no view is in
// use) and the ack event.
func (t *topicReader) removeFeed(f *feed) {
	t.mu.Lock()
	if t.feeds[f.info.ID] != f {
		t.mu.Unlock()
		return
	}
	delete(t.feeds, f.info.ID)
	delete(t.heldSince, f)
	t.announceLocked()
	for s := range t.subs {
		var keep []*cursor
		for _, c := range *s.curs.Load() {
			if c.f != f {
				keep = append(keep, c)
			}
		}
		s.curs.Store(&keep)
	}
	t.mu.Unlock()
	f.release()
}

// release unmaps the file and removes the ack event. It waits for readers
// of the mapping; if one is inside a callback (it may be the caller itself,
// closing from inside a callback), the release finishes in the background
// once it returns.
func (f *feed) release() {
	if !f.views.TryLock() {
		go func() {
			f.views.Lock()
			f.releaseLocked()
		}()
		return
	}
	f.releaseLocked()
}

func (f *feed) releaseLocked() {
	if f.released {
		f.views.Unlock()
		return
	}
	f.released = true
	f.views.Unlock()
	f.l.ack.SetAttached(proc.Identity{})
	_ = f.l.ack.Destroy()
	_ = f.mf.Close()
}

// sync brings the feeds in line with the local publishers registration
// knows (want, by entity id): it connects to new ones and disconnects from
// those that are really gone.
func (t *topicReader) sync(want map[uint64]registration.Entity) {
	t.mu.Lock()
	for id := range t.refused {
		if _, ok := want[id]; !ok {
			delete(t.refused, id) // forget refusals registration forgot
		}
	}
	var gone []*feed
	for id, f := range t.feeds {
		if e, ok := want[id]; ok && e.MemFiles[0] == f.mf.Name() && !f.mf.Closed() {
			continue
		}
		if f.gone() {
			gone = append(gone, f)
		}
	}
	t.mu.Unlock()
	for _, f := range gone {
		t.removeFeed(f)
	}
	for _, e := range want {
		t.addFeed(e)
	}
}

// close disconnects every feed and removes the bell; the node calls it when
// the topic's last subscriber closed.
func (t *topicReader) close() {
	t.mu.Lock()
	t.closed = true
	feeds := make([]*feed, 0, len(t.feeds))
	for _, f := range t.feeds {
		feeds = append(feeds, f)
	}
	t.mu.Unlock()
	for _, f := range feeds {
		t.removeFeed(f)
	}
	t.poke()
	_ = t.bell.Destroy()
}

// wait sleeps until the bell rings after seq (the bell's sequence before
// the caller found nothing to read), ctx is done or s closes. The first
// waiter sleeps on the bell (leader); later ones wait for the leader's
// wake-up (followers). The leader also sets aside subscribers that hold a
// waiting publisher back (checkHeld) and bounds its sleep by their
// deadline.
func (t *topicReader) wait(ctx context.Context, s *Subscriber, seq uint32) error {
	t.mu.Lock()
	if t.bell.Seq() != seq || t.closed {
		t.mu.Unlock()
		return nil // rang meanwhile: read again
	}
	if t.leading {
		t.follower = true
		waking := t.waking
		t.mu.Unlock()
		select {
		case <-waking:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closed:
			return ErrClosed
		}
	}
	t.leading = true
	sleep := t.checkHeldLocked()
	pokes := t.pokes.Load()
	t.mu.Unlock()

	stop := func() bool { return ctx.Err() != nil || s.isClosed() || t.pokes.Load() != pokes }
	if ctx.Done() != nil {
		defer context.AfterFunc(ctx, t.bell.Interrupt)()
	}
	_, err := t.bell.WaitFunc(seq, sleep, stop)

	t.mu.Lock()
	t.leading = false
	if t.follower {
		close(t.waking)
		t.waking, t.follower = make(chan struct{}), false
	}
	t.mu.Unlock()
	switch {
	case err == nil, errors.Is(err, event.ErrTimeout):
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case s.isClosed(), errors.Is(err, event.ErrClosed):
		return ErrClosed
	case errors.Is(err, event.ErrInterrupted):
		return nil
	}
	return fmt.Errorf("%w: topic %q: wait: %w", ErrSystem, t.topic, err)
}

// poke wakes every waiter of the topic (the leader, and through it the
// followers): a subscriber has something to report, or closed.
func (t *topicReader) poke() {
	t.pokes.Add(1)
	t.bell.Interrupt()
}

// waitSlice bounds one sleep of the leader, so that it re-checks the
// publishers' state now and then even when nothing rings.
const waitSlice = time.Second

// checkHeldLocked looks for publishers that wait for this process's
// acknowledgement (they post the clock they wait for in their memory file
// and ring the bell). When one waits for longer than half its ack timeout
// while some subscriber here has taken the message, the subscribers that
// have not are marked lagging: the acknowledgement moves on without them,
// so that the publisher is not held back (and does not give up on the
// whole process) because of them. It returns how long the leader may
// sleep. Caller holds t.mu and is the leader.
func (t *topicReader) checkHeldLocked() time.Duration {
	sleep := waitSlice
	now := time.Now()
	for _, f := range t.feeds {
		w := f.mf.Waiting()
		if w == 0 || f.acked.Load() >= w {
			delete(t.heldSince, f)
			continue
		}
		since, ok := t.heldSince[f]
		if !ok {
			since = now
			t.heldSince[f] = now
		}
		limit := f.ackTimeout(w) / 2
		if left := since.Add(limit).Sub(now); left > 0 {
			sleep = min(sleep, left)
			continue
		}
		delete(t.heldSince, f)
		f.setAsideLaggards(w)
	}
	return sleep
}

// ackTimeout returns the ack timeout of the publisher's message clock
// (from its slot), at least 1 ms.
func (f *feed) ackTimeout(clock uint64) time.Duration {
	f.views.RLock()
	defer f.views.RUnlock()
	if f.released {
		return time.Millisecond
	}
	h, _, err := f.mf.Read(clock)
	if err != nil || h.AckTimeoutMs == 0 {
		return time.Millisecond
	}
	return time.Duration(h.AckTimeoutMs) * time.Millisecond
}

// setAsideLaggards marks lagging every accepting cursor that has not taken
// clock w, provided one has: a process whose subscribers all lag is left
// to the publisher's own timeout.
func (f *feed) setAsideLaggards(w uint64) {
	curs := *f.curs.Load()
	keeps := false
	for _, c := range curs {
		if c.accepts && !c.lagging.Load() && c.next.Load() > w {
			keeps = true
		}
	}
	if !keeps {
		return
	}
	for _, c := range curs {
		if c.accepts && !c.lagging.Load() && c.next.Load() <= w {
			c.lagging.Store(true)
			c.s.laggings.Add(1)
		}
	}
	f.recomputeAck()
}
