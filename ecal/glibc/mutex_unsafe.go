package glibc

import (
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shmfs/shmfs/internal/futex"
)

// pthread_mutex_t on x86-64 (struct __pthread_mutex_s, 40 bytes).
const (
	MutexSize = 40

	mutexLock   = 0  // int __lock: 0 free, 1 locked, 2 locked with waiters
	mutexOwner  = 8  // int __owner: TID of the holder, 0 when free
	mutexNusers = 12 // unsigned __nusers
	mutexKind   = 16 // int __kind

	// KindPShared is __kind of a process-shared PTHREAD_MUTEX_NORMAL
	// (PTHREAD_MUTEX_PSHARED_BIT); the elision flags may be added by glibc.
	KindPShared  = 128
	kindElision  = 256 // PTHREAD_MUTEX_ELISION_NP
	kindNoElide  = 512 // PTHREAD_MUTEX_NO_ELISION_NP
	kindKnownSet = KindPShared | kindElision | kindNoElide
)

// slice bounds one futex sleep, so that deadlines and stops are noticed.
const slice = 20 * time.Millisecond

// Mutex is a process-shared, non-robust PTHREAD_MUTEX_NORMAL in shared
// memory, locked with glibc's low-level-lock protocol.
type Mutex struct {
	lock, owner, nusers *uint32
}

// MutexAt returns the mutex at the start of b after checking that it is a
// process-shared normal mutex (anything else is ErrUnsupported).
func MutexAt(b []byte) (*Mutex, error) {
	if len(b) < MutexSize {
		return nil, fmt.Errorf("%w: mutex needs %d bytes, have %d", ErrInvalid, MutexSize, len(b))
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	if uintptr(p)%8 != 0 {
		return nil, fmt.Errorf("%w: mutex not 8-byte aligned", ErrInvalid)
	}
	kind := atomic.LoadUint32((*uint32)(unsafe.Add(p, mutexKind)))
	if kind&^(kindElision|kindNoElide) != KindPShared {
		return nil, fmt.Errorf("%w: mutex kind %#x, want a process-shared normal mutex (%#x)", ErrUnsupported, kind, KindPShared)
	}
	return &Mutex{
		lock:   (*uint32)(unsafe.Add(p, mutexLock)),
		owner:  (*uint32)(unsafe.Add(p, mutexOwner)),
		nusers: (*uint32)(unsafe.Add(p, mutexNusers)),
	}, nil
}

// InitMutex writes what pthread_mutex_init with PTHREAD_PROCESS_SHARED
// writes: zeros and __kind = KindPShared.
func InitMutex(b []byte) error {
	if len(b) < MutexSize {
		return fmt.Errorf("%w: mutex needs %d bytes", ErrInvalid, MutexSize)
	}
	clear(b[:MutexSize])
	p := unsafe.Pointer(unsafe.SliceData(b))
	atomic.StoreUint32((*uint32)(unsafe.Add(p, mutexKind)), KindPShared)
	return nil
}

// Lock is pthread_mutex_lock: CAS 0 -> 1, else __lll_lock_wait, then record
// the owner and count the user. Unlike glibc it gives up at deadline
// (ErrTimeout, nothing held); a holder that died keeps the lock forever, as
// it does for every glibc process.
func (m *Mutex) Lock(deadline time.Time) error {
	if !atomic.CompareAndSwapUint32(m.lock, 0, 1) {
		if err := lockWait(m.lock, deadline); err != nil {
			return err
		}
	}
	atomic.StoreUint32(m.owner, uint32(unix.Gettid()))
	atomic.AddUint32(m.nusers, 1)
	return nil
}

// TryLock is pthread_mutex_trylock.
func (m *Mutex) TryLock() bool {
	if !atomic.CompareAndSwapUint32(m.lock, 0, 1) {
		return false
	}
	atomic.StoreUint32(m.owner, uint32(unix.Gettid()))
	atomic.AddUint32(m.nusers, 1)
	return true
}

// condLock is __pthread_mutex_cond_lock: the relock at the end of a
// condition wait. It marks the lock contended (lll_cond_lock) and does not
// count a user (the wait did not uncount it).
func (m *Mutex) condLock(deadline time.Time) error {
	if atomic.SwapUint32(m.lock, 2) != 0 {
		if err := lockWait(m.lock, deadline); err != nil {
			return err
		}
	}
	atomic.StoreUint32(m.owner, uint32(unix.Gettid()))
	return nil
}

// Unlock is pthread_mutex_unlock.
func (m *Mutex) Unlock() { m.unlockUsercnt(true) }

// unlockUsercnt is __pthread_mutex_unlock_usercnt: the owner is cleared
// before the lock word (glibc asserts __owner == 0 right after it locks).
func (m *Mutex) unlockUsercnt(decr bool) {
	atomic.StoreUint32(m.owner, 0)
	if decr {
		atomic.AddUint32(m.nusers, ^uint32(0))
	}
	if atomic.SwapUint32(m.lock, 0) > 1 {
		_, _ = futex.Wake(m.lock, 1)
	}
}

// Owner returns the TID recorded by the holder (0: free or unknown).
func (m *Mutex) Owner() int { return int(atomic.LoadUint32(m.owner)) }

// lockWait is __lll_lock_wait with a deadline: mark the lock contended
// (2) and sleep while it stays so.
func lockWait(lock *uint32, deadline time.Time) error {
	if atomic.LoadUint32(lock) == 2 {
		if err := sleep(lock, 2, deadline); err != nil {
			return err
		}
	}
	for atomic.SwapUint32(lock, 2) != 0 {
		if err := sleep(lock, 2, deadline); err != nil {
			return err
		}
	}
	return nil
}

// sleep is one bounded futex wait on addr while it holds val; ErrTimeout
// only once deadline has passed.
func sleep(addr *uint32, val uint32, deadline time.Time) error {
	d := time.Until(deadline)
	if d <= 0 {
		return ErrTimeout
	}
	_ = futex.Wait(addr, val, min(d, slice))
	return nil
}
