package fs

import (
	"context"
	"log"
	"sort"
	"sync"
	"time"
)

// handle is an open file description that must be woken at shutdown.
type handle interface {
	// shutdown makes blocked and future reads return EOF.
	shutdown()
}

// filesystem is the state shared by all nodes of one mount.
type filesystem struct {
	be     backend
	opts   MountOptions
	log    *log.Logger
	start  time.Time
	root   *rootNode
	ctx    context.Context // cancelled when the mount shuts down
	cancel context.CancelFunc

	mu       sync.Mutex
	closing  bool
	declared map[string]bool   // topics created with mkdir
	topics   map[string]*topic // topics with open files or lingering state
	handles  map[handle]struct{}
	visible  map[string]bool // root entries as last announced to the kernel (watch loop)
}

func newFilesystem(be backend, o MountOptions, logger *log.Logger) *filesystem {
	ctx, cancel := context.WithCancel(context.Background())
	f := &filesystem{
		be: be, opts: o, log: logger, start: time.Now(), ctx: ctx, cancel: cancel,
		declared: map[string]bool{},
		topics:   map[string]*topic{},
		handles:  map[handle]struct{}{},
		visible:  map[string]bool{},
	}
	f.root = &rootNode{fs: f}
	return f
}

// exists reports whether name is a directory of the root.
func (f *filesystem) exists(name string) bool {
	if !validName(name) || name == infoName {
		return false
	}
	f.mu.Lock()
	d := f.declared[name]
	f.mu.Unlock()
	if d {
		return true
	}
	_, ok := f.be.Topic(name)
	return ok
}

// names lists the root directory: every known topic with a valid file name
// plus the declared ones, sorted.
func (f *filesystem) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.namesLocked()
}

func (f *filesystem) namesLocked() []string {
	set := map[string]bool{}
	for _, ti := range f.be.Topics() {
		if validName(ti.Name) && ti.Name != infoName {
			set[ti.Name] = true
		}
	}
	for n := range f.declared {
		set[n] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// acquire returns the state of topic name with one more reference, creating
// it (and its monitor) if needed. It fails once shutdown began.
func (f *filesystem) acquire(name string) (*topic, bool) {
	f.mu.Lock()
	if f.closing {
		f.mu.Unlock()
		return nil, false
	}
	t := f.topics[name]
	if t == nil {
		t = newTopic(f, name)
		f.topics[name] = t
	}
	t.refs++
	f.mu.Unlock()
	return t, true
}

// release drops a reference taken by acquire.
func (f *filesystem) release(t *topic) {
	f.mu.Lock()
	t.refs--
	t.lastUse = time.Now()
	f.mu.Unlock()
}

// addHandle registers an open file for shutdown; false once shutdown began.
func (f *filesystem) addHandle(h handle) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return false
	}
	f.handles[h] = struct{}{}
	return true
}

func (f *filesystem) removeHandle(h handle) {
	f.mu.Lock()
	delete(f.handles, h)
	f.mu.Unlock()
}

// janitor closes the publisher and monitor of topics that nobody used for
// opts.Linger, so that the mount does not keep topics alive forever.
func (f *filesystem) janitor() {
	tick := time.NewTicker(max(f.opts.Linger/2, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-tick.C:
		}
		var idle []*topic
		f.mu.Lock()
		for name, t := range f.topics {
			if t.refs == 0 && time.Since(t.lastUse) >= f.opts.Linger {
				delete(f.topics, name)
				idle = append(idle, t)
			}
		}
		f.mu.Unlock()
		for _, t := range idle {
			t.close()
		}
	}
}

// beginShutdown refuses new opens and wakes every blocked reader: their
// reads return EOF, so that shell tools exit and the kernel can unmount.
func (f *filesystem) beginShutdown() {
	f.mu.Lock()
	f.closing = true
	hs := make([]handle, 0, len(f.handles))
	for h := range f.handles {
		hs = append(hs, h)
	}
	f.mu.Unlock()
	f.cancel()
	for _, h := range hs {
		h.shutdown()
	}
}

// finish closes every publisher, subscriber and monitor, then the backend.
func (f *filesystem) finish() error {
	f.beginShutdown()
	f.mu.Lock()
	ts := make([]*topic, 0, len(f.topics))
	for _, t := range f.topics {
		ts = append(ts, t)
	}
	f.topics = map[string]*topic{}
	f.mu.Unlock()
	for _, t := range ts {
		t.close()
	}
	return f.be.Close()
}
