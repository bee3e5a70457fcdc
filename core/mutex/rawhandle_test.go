package mutex

import (
	"testing"
	"time"
)

// Temporary: the algorithms over a plain test map, until internal/shm exists.

type rawHandle struct{ *locker }

func (h rawHandle) Lock(d time.Duration) error  { return h.lock(d) }
func (h rawHandle) RLock(d time.Duration) error { return h.rlock(d) }
func (h rawHandle) Unlock() error               { return h.unlock() }
func (h rawHandle) RUnlock() error              { return h.runlock() }
func (h rawHandle) TryLock() (bool, error)      { return h.tryLock() }
func (h rawHandle) Close() error                { return h.shutdown() }

type handle interface {
	Lock(time.Duration) error
	RLock(time.Duration) error
	Unlock() error
	RUnlock() error
	TryLock() (bool, error)
	Close() error
}

func newShared(t *testing.T, domain string) (string, handle) {
	name, b := newTestMap(t, domain)
	initRegion(b[64:])
	h, err := openShared(name)
	if err != nil {
		t.Fatal(err)
	}
	return name, h
}

func openShared(name string) (handle, error) {
	b, err := openTestMap(name)
	if err != nil {
		return nil, err
	}
	r, err := newRegion(b[64:])
	if err != nil {
		return nil, err
	}
	return rawHandle{newLocker(r, 20*time.Millisecond)}, nil
}

func regionOf(h handle) region { return h.(rawHandle).r }
