package fs

import "github.com/shmfs/shmfs/core"

// watchBuffer is the registry change stream's buffer; changes lost when it
// overflows only delay a directory's (dis)appearance until the short entry
// timeout, and cost events lines.
const watchBuffer = 1024

// watch follows the registry: it feeds topic events and tells the kernel to
// forget a root entry whose topic appeared or disappeared (NOTIFY_INVAL_ENTRY),
// so that `ls` and lookups see registration changes at once.
func (f *filesystem) watch() {
	ch, stop := f.be.Watch(watchBuffer)
	defer stop()
	if ch == nil {
		return
	}
	f.mu.Lock()
	for _, n := range f.namesLocked() {
		f.visible[n] = true
	}
	f.mu.Unlock()
	for {
		select {
		case <-f.ctx.Done():
			return
		case c, ok := <-ch:
			if !ok {
				return
			}
			f.onChange(c)
		}
	}
}

func (f *filesystem) onChange(c core.Change) {
	name := c.Entity.Topic
	if !validName(name) {
		return
	}
	f.mu.Lock()
	t := f.topics[name]
	f.mu.Unlock()
	if t != nil {
		t.change(c)
	}
	if c.Kind == core.Updated {
		return
	}
	f.refreshEntry(name)
}

// refreshEntry invalidates the kernel's entry for name if its existence
// changed since it was last announced.
func (f *filesystem) refreshEntry(name string) {
	vis := f.exists(name)
	f.mu.Lock()
	was := f.visible[name]
	if vis {
		f.visible[name] = true
	} else {
		delete(f.visible, name)
	}
	f.mu.Unlock()
	if vis != was {
		_ = f.root.NotifyEntry(name) // ENOENT: the kernel had no entry
	}
}
