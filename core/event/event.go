// Package event is a named event shared by processes through a small object
// in /dev/shm: a sequence counter that Set increments and Wait watches.
//
// Unlike eCAL's binary auto-reset event, the counter tells a waiter how many
// Sets happened since it last looked (modulo 2^31). Set makes no system call
// unless a process sleeps in Wait; Wait never misses a Set between its
// check and its sleep (the futex call re-checks the word atomically), and
// every Wait is bounded by a timeout. Byte layout and states: layout.go and
// docs/protocol.md ("Named event").
package event

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/shmfs/shmfs/internal/futex"
	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shm"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrTimeout: Wait saw no Set within its timeout.
	ErrTimeout = errors.New("event: wait timed out")
	// ErrClosed: the handle was closed.
	ErrClosed = errors.New("event: closed")
	// ErrInterrupted: WaitFunc's stop function reported true.
	ErrInterrupted = errors.New("event: wait interrupted")
)

// Options configure Create and Open.
type Options struct {
	// Mode: permission bits at create; 0 means 0600. Never set through the
	// umask.
	Mode os.FileMode
	// Owner: one more owner uid that Open accepts besides our effective
	// uid and root (see shm.Options.Owner).
	Owner uint32
	// Attached: the attached identity a new event starts with (Create
	// only), set before the event appears under its name.
	Attached proc.Identity
}

// Event is one process's handle on a named event. Its methods are safe for
// concurrent use by several goroutines.
type Event struct {
	seg *shm.Segment
	r   region

	// state: bit closedBit set by Close; the low bits count calls in
	// progress, which Close waits for before the mapping goes away.
	state atomic.Int64
}

const closedBit = 1 << 62

// maxTimeout caps timeouts so that deadlines never overflow.
const maxTimeout = 365 * 24 * time.Hour

// wakes counts FUTEX_WAKE calls made by Set in this process (tests assert
// that Set without sleepers makes none).
var wakes atomic.Uint64

func shmOptions(o Options) shm.Options {
	so := shm.Options{Mode: o.Mode, Size: shm.HeaderSize + dataSize, Version: layoutVersion, Owner: o.Owner}
	if w := o.Attached.Pack(); w != 0 {
		so.Init = func(b []byte) error {
			binary.LittleEndian.PutUint64(b[shm.HeaderSize+offAttached:], w)
			return nil
		}
	}
	return so
}

// Create makes a new event named name (see internal/shmname); it fails with
// an error wrapping shm.ErrExist if the name exists. The counter starts at 0.
func Create(name string, o Options) (*Event, error) {
	seg, err := shm.Create(name, shm.KindEvent, shmOptions(o))
	if err != nil {
		return nil, fmt.Errorf("event: %w", err)
	}
	return attach(seg)
}

// Open opens an existing event; errors wrap the shm sentinels (ErrNotExist,
// ErrCorrupt, ErrVersion, ErrKind, ErrPermission, ErrForeignNamespace).
func Open(name string, o Options) (*Event, error) {
	seg, err := shm.Open(name, shm.KindEvent, shmOptions(o))
	if err != nil {
		return nil, fmt.Errorf("event: %w", err)
	}
	return attach(seg)
}

// CreateOrOpen opens name, creating it if it does not exist; created
// reports which. Of processes racing on one name exactly one creates.
func CreateOrOpen(name string, o Options) (e *Event, created bool, err error) {
	seg, created, err := shm.CreateOrOpen(name, shm.KindEvent, shmOptions(o))
	if err != nil {
		return nil, false, fmt.Errorf("event: %w", err)
	}
	e, err = attach(seg)
	return e, created, err
}

func attach(seg *shm.Segment) (*Event, error) {
	if v := seg.Version(); v != layoutVersion {
		seg.Close()
		return nil, fmt.Errorf("event: %s: %w: layout version %d, want %d", seg.Name(), shm.ErrVersion, v, layoutVersion)
	}
	b := seg.Bytes()
	if len(b) < shm.HeaderSize {
		seg.Close()
		return nil, fmt.Errorf("event: %s: %w: mapping of %d bytes", seg.Name(), shm.ErrCorrupt, len(b))
	}
	r, err := newRegion(b[shm.HeaderSize:])
	if err != nil {
		seg.Close()
		return nil, fmt.Errorf("event: %s: %w", seg.Name(), err)
	}
	return &Event{seg: seg, r: r}, nil
}

// enter registers a call in progress; false once Close has begun.
func (e *Event) enter() bool {
	if e.state.Add(1)&closedBit != 0 {
		e.state.Add(-1)
		return false
	}
	return true
}

func (e *Event) leave() { e.state.Add(-1) }

func (e *Event) closing() bool { return e.state.Load()&closedBit != 0 }

// Set increments the counter and wakes the processes sleeping in Wait, if
// any; with nobody asleep it makes no system call. After Close it does
// nothing.
func (e *Event) Set() {
	if !e.enter() {
		return
	}
	defer e.leave()
	for {
		s := atomic.LoadUint32(e.r.seq)
		if atomic.CompareAndSwapUint32(e.r.seq, s, (s+1)&seqMask) {
			if s&sleepers != 0 {
				wakes.Add(1)
				_, _ = futex.Wake(e.r.seq, 0)
			}
			return
		}
	}
}

// Seq returns the counter (0 after Close).
func (e *Event) Seq() uint32 {
	if !e.enter() {
		return 0
	}
	defer e.leave()
	return atomic.LoadUint32(e.r.seq) & seqMask
}

// Wait returns the counter as soon as it differs from last (at once if it
// already does). Otherwise it sleeps, at most timeout, and returns last and
// ErrTimeout (or ErrClosed when the handle is closed meanwhile). Pass the
// value returned by the previous Wait or Seq; the difference between two
// results is the number of Sets in between, modulo 2^31.
func (e *Event) Wait(last uint32, timeout time.Duration) (uint32, error) {
	return e.WaitFunc(last, timeout, nil)
}

// WaitFunc is Wait that also returns, with ErrInterrupted, once stop (if not
// nil) reports true. stop is checked before each sleep and after each
// wake-up; whoever makes it true calls Interrupt to end a sleep in progress.
func (e *Event) WaitFunc(last uint32, timeout time.Duration, stop func() bool) (uint32, error) {
	last &= seqMask
	if !e.enter() {
		return last, ErrClosed
	}
	defer e.leave()
	var deadline time.Time
	for {
		s := atomic.LoadUint32(e.r.seq)
		if s&seqMask != last {
			return s & seqMask, nil
		}
		if e.closing() {
			return last, ErrClosed
		}
		if stop != nil && stop() {
			return last, ErrInterrupted
		}
		now := time.Now()
		if deadline.IsZero() {
			deadline = now.Add(min(max(timeout, 0), maxTimeout))
		}
		rem := deadline.Sub(now)
		if rem <= 0 {
			return last, ErrTimeout
		}
		if s&sleepers == 0 {
			if !atomic.CompareAndSwapUint32(e.r.seq, s, s|sleepers) {
				continue
			}
			s |= sleepers
		}
		if err := futex.Wait(e.r.seq, s, rem); err != nil && !errors.Is(err, futex.ErrTimeout) {
			return last, fmt.Errorf("event: futex wait: %w", err)
		}
	}
}

// Interrupt wakes every process sleeping in Wait on this event without a
// Set: they check their stop functions (WaitFunc) and sleep again if those
// are false. It always makes a system call.
func (e *Event) Interrupt() {
	if !e.enter() {
		return
	}
	defer e.leave()
	_, _ = futex.Wake(e.r.seq, 0)
}

// Value returns the auxiliary word (0 after Close).
func (e *Event) Value() uint64 {
	if !e.enter() {
		return 0
	}
	defer e.leave()
	return atomic.LoadUint64(e.r.value)
}

// StoreValue sets the auxiliary word. Store it before Set: a waiter woken
// by that Set then reads it (atomics are sequentially consistent).
func (e *Event) StoreValue(v uint64) {
	if !e.enter() {
		return
	}
	defer e.leave()
	atomic.StoreUint64(e.r.value, v)
}

// SetAttached records the identity of the process that waits on this
// event, so that the setting side can check that it is alive
// (proc.AliveTag). The zero Identity clears it.
func (e *Event) SetAttached(id proc.Identity) {
	if !e.enter() {
		return
	}
	defer e.leave()
	atomic.StoreUint64(e.r.attached, id.Pack())
}

// Attached returns the PID and start-time tag recorded by SetAttached
// (0, 0 if none, or after Close). They come from shared memory: a PID of
// another process is only meaningful to proc.AliveTag with its tag.
func (e *Event) Attached() (pid int32, tag uint32) {
	if !e.enter() {
		return 0, 0
	}
	defer e.leave()
	return proc.Unpack(atomic.LoadUint64(e.r.attached))
}

// Name returns the object name.
func (e *Event) Name() string { return e.seg.Name() }

// Creator returns the process that created the event.
func (e *Event) Creator() shm.Creator { return e.seg.Creator() }

// Perm returns the file's owner, group and mode (see shm.Segment.Perm).
func (e *Event) Perm() shm.Perm { return e.seg.Perm() }

// Share gives group gid read and write access (see shm.Segment.Share).
func (e *Event) Share(gid uint32) error { return e.seg.Share(gid) }

// Linked reports whether the event's name still refers to this event (its
// creator removes it when done).
func (e *Event) Linked() bool { return e.seg.Linked() }

// Close ends Waits in progress on this handle (they return ErrClosed) and
// unmaps. A second Close returns ErrClosed.
func (e *Event) Close() error {
	if err := e.shutdown(); err != nil {
		return err
	}
	return e.seg.Close()
}

// Destroy is Close plus removing the name from /dev/shm; processes that
// have the event open keep using it.
func (e *Event) Destroy() error {
	if err := e.shutdown(); err != nil {
		return err
	}
	return e.seg.Destroy()
}

// shutdown stops new calls, then wakes sleepers until every call in
// progress has returned (waking other processes' sleepers too, which
// re-check and sleep again).
func (e *Event) shutdown() error {
	for {
		s := e.state.Load()
		if s&closedBit != 0 {
			return ErrClosed
		}
		if e.state.CompareAndSwap(s, s|closedBit) {
			break
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.state.Load() != closedBit {
		if time.Now().After(deadline) {
			// Unmapping now could fault a call still running; keep the
			// mapping (leaked) rather than crash.
			return errors.New("event: close: calls still running after 10 s")
		}
		_, _ = futex.Wake(e.r.seq, 0)
		time.Sleep(100 * time.Microsecond)
	}
	return nil
}
