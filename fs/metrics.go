package fs

import "time"

// Observer is told what only the mount sees, for metrics (internal/metrics
// implements it): the messages written through a topic's files, and each
// message a reader of data gets with its age (now − Header.Time: from the
// publisher's commit to the read(2), FUSE round trip included). Its
// methods run on the FUSE request path: they must not block.
type Observer interface {
	Published(topic string, bytes int)
	Delivered(topic string, bytes int, age time.Duration)
}

// The hooks, called by the data and whole files; no-ops without an Observer.

func (f *filesystem) observePublished(topic string, n int) {
	if o := f.opts.Observer; o != nil {
		o.Published(topic, n)
	}
}

func (f *filesystem) observeDelivered(topic string, n int, committed time.Time) {
	if o := f.opts.Observer; o != nil {
		o.Delivered(topic, n, time.Since(committed))
	}
}
