// Package mutex is a named reader/writer mutex shared by processes through
// a small object in /dev/shm, robust to its holders being SIGKILLed.
//
// The lock is owned by a process, not by a goroutine: any goroutine of the
// owning process may Unlock. It is not reentrant: a process that holds it
// (exclusively, or shared while a writer waits) and asks again waits until
// its timeout. Every call that can block takes a timeout; sleeps last at
// most Options.Slice, after which the holders' liveness is checked (PID and
// start time, so a reused PID is not mistaken for the holder, and zombies
// count as dead). A dead writer's lock is taken over and the new holder
// gets ErrOwnerDied; a dead reader's hold is dropped silently.
//
// The byte layout, lock-word states and recovery are described in layout.go
// and in docs/protocol.md ("Named mutex").
package mutex

import (
	"fmt"
	"os"
	"time"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shm"
)

// DefaultSlice is the default longest sleep between two liveness checks of
// the holders: a dead holder's lock is recovered about one slice after its
// death.
const DefaultSlice = 20 * time.Millisecond

// minSlice bounds how often a waiter reads /proc to check holders.
const minSlice = time.Millisecond

// Options configure Create and Open.
type Options struct {
	// Mode: permission bits at create; 0 means 0600. Never set through the
	// umask.
	Mode os.FileMode
	// Slice: longest sleep between two liveness checks of the holders;
	// 0 means DefaultSlice, values below 1 ms are raised to 1 ms.
	Slice time.Duration
}

// Mutex is one process's handle on a named mutex. Its methods are safe for
// concurrent use by several goroutines.
type Mutex struct {
	seg *shm.Segment
	l   *locker
}

func shmOptions(o Options) shm.Options {
	return shm.Options{
		Mode:    o.Mode,
		Size:    shm.HeaderSize + dataSize,
		Version: layoutVersion,
		Init: func(b []byte) error {
			if len(b) < shm.HeaderSize+dataSize {
				return fmt.Errorf("mutex: mapping of %d bytes too small", len(b))
			}
			initRegion(b[shm.HeaderSize:])
			return nil
		},
	}
}

// Create makes a new mutex named name (see internal/shmname); it fails
// with an error wrapping shm.ErrExist if the name exists.
func Create(name string, o Options) (*Mutex, error) {
	seg, err := shm.Create(name, shm.KindMutex, shmOptions(o))
	if err != nil {
		return nil, fmt.Errorf("mutex: %w", err)
	}
	return attach(seg, o)
}

// Open opens an existing mutex; errors wrap the shm sentinels (ErrNotExist,
// ErrCorrupt, ErrVersion, ErrKind, ErrPermission, ErrForeignNamespace).
func Open(name string, o Options) (*Mutex, error) {
	seg, err := shm.Open(name, shm.KindMutex, shmOptions(o))
	if err != nil {
		return nil, fmt.Errorf("mutex: %w", err)
	}
	return attach(seg, o)
}

// CreateOrOpen opens name, creating it if it does not exist; created
// reports which. Of processes racing on one name exactly one creates.
func CreateOrOpen(name string, o Options) (m *Mutex, created bool, err error) {
	seg, created, err := shm.CreateOrOpen(name, shm.KindMutex, shmOptions(o))
	if err != nil {
		return nil, false, fmt.Errorf("mutex: %w", err)
	}
	m, err = attach(seg, o)
	return m, created, err
}

// attach validates the segment's layout and builds the handle.
func attach(seg *shm.Segment, o Options) (*Mutex, error) {
	if v := seg.Version(); v != layoutVersion {
		seg.Close()
		return nil, fmt.Errorf("mutex: %s: %w: layout version %d, want %d", seg.Name(), shm.ErrVersion, v, layoutVersion)
	}
	b := seg.Bytes()
	if len(b) < shm.HeaderSize {
		seg.Close()
		return nil, fmt.Errorf("mutex: %s: %w: mapping of %d bytes", seg.Name(), shm.ErrCorrupt, len(b))
	}
	// Others judge this process's holds by its PID and start time in
	// /proc; if this process cannot verify itself there, neither can they,
	// and they would take its locks away.
	if !proc.AliveTag(self.PID, self.Tag()) {
		seg.Close()
		return nil, fmt.Errorf("mutex: %s: cannot verify this process's identity (%v) in /proc", seg.Name(), self)
	}
	r, err := newRegion(b[shm.HeaderSize:])
	if err != nil {
		seg.Close()
		return nil, fmt.Errorf("mutex: %s: %w", seg.Name(), err)
	}
	slice := o.Slice
	if slice <= 0 {
		slice = DefaultSlice
	}
	return &Mutex{seg: seg, l: newLocker(r, max(slice, minSlice))}, nil
}

// Lock takes the mutex exclusively, waiting at most timeout (timeout <= 0:
// one attempt, which still checks a holder's liveness). It returns nil,
// ErrTimeout, ErrClosed, or ErrOwnerDied: the lock IS held, but a writer
// died holding it and no Unlock has happened since, so the protected data
// may be half-written; the caller repairs or discards it, and its Unlock
// declares the data consistent again.
//
// A writer that holds W keeps new readers out (writer preference) while it
// waits for the current ones to leave.
func (m *Mutex) Lock(timeout time.Duration) error { return m.l.lock(timeout) }

// TryLock takes the mutex exclusively if that is possible without waiting.
// When it finds holders it checks whether they are alive (one read of
// /proc/PID/stat each) and takes a dead writer's lock over, returning
// true, ErrOwnerDied.
func (m *Mutex) TryLock() (bool, error) { return m.l.tryLock() }

// Unlock releases the exclusive lock held by this process; ErrNotOwner if
// this process does not hold it exclusively.
func (m *Mutex) Unlock() error { return m.l.unlock() }

// RLock takes the mutex shared, waiting at most timeout. Shared holders
// never wait for each other: several goroutines and processes hold it at
// once, up to 64 in all (the 65th waits for a free slot). It returns nil,
// ErrTimeout, ErrClosed, or ErrOwnerDied (held shared; a writer died
// holding the lock and no writer has unlocked since: the data may be
// half-written).
func (m *Mutex) RLock(timeout time.Duration) error { return m.l.rlock(timeout) }

// RUnlock releases one shared hold taken through this handle (which of
// them does not matter: holds are per process); ErrNotOwner if there is
// none.
func (m *Mutex) RUnlock() error { return m.l.runlock() }

// Name returns the object name.
func (m *Mutex) Name() string { return m.seg.Name() }

// Close ends calls in progress on this handle (they return ErrClosed),
// releases the holds taken through it (an exclusive hold is released as if
// its holder had died: the next holder gets ErrOwnerDied), and unmaps.
// A second Close returns ErrClosed.
func (m *Mutex) Close() error {
	if err := m.l.shutdown(); err != nil {
		return err
	}
	return m.seg.Close()
}

// Destroy is Close plus removing the name from /dev/shm; processes that
// have the mutex open keep using it.
func (m *Mutex) Destroy() error {
	if err := m.l.shutdown(); err != nil {
		return err
	}
	return m.seg.Destroy()
}
