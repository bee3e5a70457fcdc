package registration

import (
	"container/list"
	"sync"
)

// ChangeKind says what happened to an entity.
type ChangeKind uint8

const (
	Added   ChangeKind = 1
	Updated ChangeKind = 2 // any announced field other than Seq changed (counters included)
	Removed ChangeKind = 3
)

func (k ChangeKind) String() string {
	switch k {
	case Added:
		return "added"
	case Updated:
		return "updated"
	case Removed:
		return "removed"
	}
	return "change(?)"
}

// Change is one entry of a Watch stream.
type Change struct {
	Kind   ChangeKind
	Entity Entity
}

// watcher feeds one Watch channel. The receiver never blocks on it: changes
// go into a pending queue with at most one entry per entity, and a goroutine
// moves them to the channel as fast as the consumer reads. When a change
// arrives for an entity that already has a pending change, the two merge
// into their net effect (coalescing):
//
//	pending  + new      = pending
//	Added    + Updated  = Added (new state)
//	Added    + Removed  = nothing (the consumer never saw the entity)
//	Updated  + Updated  = Updated (new state)
//	Updated  + Removed  = Removed
//	Removed  + Added    = Updated (new state)
//
// So a slow consumer misses intermediate states, never the final one, and the
// queue holds at most one entry per entity it knows or the registry holds.
type watcher struct {
	out  chan Change
	wake chan struct{} // capacity 1: "queue not empty"
	done chan struct{} // closed by stop
	once sync.Once
	c    *counters

	// mu guards pending and queue.
	mu      sync.Mutex
	pending map[key]*list.Element // of *Change, in queue
	queue   list.List
}

func newWatcher(buffer int, c *counters) *watcher {
	return &watcher{
		out:     make(chan Change, max(buffer, 0)),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		c:       c,
		pending: make(map[key]*list.Element),
	}
}

// push queues a change without blocking.
func (w *watcher) push(k key, kind ChangeKind, e *Entity) {
	w.mu.Lock()
	if el, ok := w.pending[k]; ok {
		w.c.coalesced.Add(1)
		p := el.Value.(*Change)
		switch {
		case kind == Removed && p.Kind == Added:
			w.queue.Remove(el)
			delete(w.pending, k)
		case kind == Removed:
			p.Kind, p.Entity = Removed, e.clone()
		case p.Kind == Added:
			p.Entity = e.clone()
		default:
			p.Kind, p.Entity = Updated, e.clone()
		}
	} else {
		w.pending[k] = w.queue.PushBack(&Change{Kind: kind, Entity: e.clone()})
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) pop() (Change, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	el := w.queue.Front()
	if el == nil {
		return Change{}, false
	}
	w.queue.Remove(el)
	c := el.Value.(*Change)
	delete(w.pending, entityKey(&c.Entity))
	return *c, true
}

// run delivers queued changes until stop; it closes the channel on exit.
func (w *watcher) run() {
	defer close(w.out)
	for {
		c, ok := w.pop()
		if !ok {
			select {
			case <-w.wake:
				continue
			case <-w.done:
				return
			}
		}
		select {
		case w.out <- c:
		case <-w.done:
			return
		}
	}
}

func (w *watcher) stop() { w.once.Do(func() { close(w.done) }) }
