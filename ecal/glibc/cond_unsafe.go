package glibc

import (
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/shmfs/shmfs/internal/futex"
)

// pthread_cond_t of glibc 2.25-2.37 on x86-64 (struct __pthread_cond_s, 48
// bytes, LayoutGRefs). Offsets from the start of the condvar.
const (
	CondSize = 48

	condWseq      = 0  // u64: waiter sequence << 1 | index of G2
	condG1Start   = 8  // u64: start of G1 << 1 | index of G1 ^ 1
	condGRefs     = 16 // [2]u32: futex waiters per group << 1 | wake-request
	condGSize     = 24 // [2]u32: waiters per group not yet signalled
	condG1OrigSz  = 32 // u32: G1's original size << 2 | internal lock (2 bits)
	condWrefs     = 36 // u32: waiters << 3 | destroy-wake | shared | monotonic
	condGSignals  = 40 // [2]u32: signals << 1 | group-closed flag
	wrefsClock    = 1  // __PTHREAD_COND_CLOCK_MONOTONIC_MASK
	wrefsShared   = 2  // __PTHREAD_COND_SHARED_MASK
	maxGroupSize  = 1 << 29
	refsWaitBound = 200 * time.Millisecond
)

// Cond is a process-shared condition variable of LayoutGRefs.
type Cond struct {
	wseq, g1Start      *uint64
	gRefs, gSize, gSig [2]*uint32
	origSize, wrefs    *uint32
	staleRefs          atomic.Uint64 // quiesce waits that ended at refsWaitBound
}

// CondAt returns the condition variable at the start of b after checking
// that it is process-shared (the __wrefs flags say so).
func CondAt(b []byte) (*Cond, error) {
	if len(b) < CondSize {
		return nil, fmt.Errorf("%w: condvar needs %d bytes, have %d", ErrInvalid, CondSize, len(b))
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	if uintptr(p)%8 != 0 {
		return nil, fmt.Errorf("%w: condvar not 8-byte aligned", ErrInvalid)
	}
	u32 := func(off uintptr) *uint32 { return (*uint32)(unsafe.Add(p, off)) }
	c := &Cond{
		wseq:     (*uint64)(unsafe.Add(p, condWseq)),
		g1Start:  (*uint64)(unsafe.Add(p, condG1Start)),
		gRefs:    [2]*uint32{u32(condGRefs), u32(condGRefs + 4)},
		gSize:    [2]*uint32{u32(condGSize), u32(condGSize + 4)},
		origSize: u32(condG1OrigSz),
		wrefs:    u32(condWrefs),
		gSig:     [2]*uint32{u32(condGSignals), u32(condGSignals + 4)},
	}
	if w := atomic.LoadUint32(c.wrefs); w&wrefsShared == 0 {
		return nil, fmt.Errorf("%w: condvar __wrefs %#x lacks the process-shared flag (not a glibc 2.25-2.37 process-shared condvar?)", ErrUnsupported, w)
	}
	return c, nil
}

// InitCond writes what pthread_cond_init writes for a process-shared
// condvar on CLOCK_MONOTONIC: zeros and __wrefs = shared | monotonic.
func InitCond(b []byte) error {
	if len(b) < CondSize {
		return fmt.Errorf("%w: condvar needs %d bytes", ErrInvalid, CondSize)
	}
	clear(b[:CondSize])
	p := unsafe.Pointer(unsafe.SliceData(b))
	atomic.StoreUint32((*uint32)(unsafe.Add(p, condWrefs)), wrefsShared|wrefsClock)
	return nil
}

// StaleRefs counts signals that stopped waiting for a group's futex
// waiters to leave after refsWaitBound (a waiter died while blocked).
func (c *Cond) StaleRefs() uint64 { return c.staleRefs.Load() }

// Signal is pthread_cond_signal. glibc waits without a bound for blocked
// waiters of a closing group to leave; a waiter that died while blocked
// never leaves, so here that wait ends after refsWaitBound and the switch
// goes on (counted in StaleRefs). It returns ErrTimeout, having signalled
// nobody, if the condvar's internal lock stays taken until deadline.
func (c *Cond) Signal(deadline time.Time) error {
	if atomic.LoadUint32(c.wrefs)>>3 == 0 {
		return nil
	}
	if err := c.acquireLock(deadline); err != nil {
		return err
	}
	wseq := atomic.LoadUint64(c.wseq)
	g1 := uint32(wseq&1) ^ 1
	wseq >>= 1
	wake := false
	if atomic.LoadUint32(c.gSize[g1]) != 0 || c.quiesceAndSwitchG1(wseq, &g1) {
		atomic.AddUint32(c.gSig[g1], 2)
		atomic.AddUint32(c.gSize[g1], ^uint32(0))
		wake = true
	}
	c.releaseLock()
	if wake {
		_, _ = futex.Wake(c.gSig[g1], 1)
	}
	return nil
}

// Broadcast is pthread_cond_broadcast (same bound as Signal).
func (c *Cond) Broadcast(deadline time.Time) error {
	if atomic.LoadUint32(c.wrefs)>>3 == 0 {
		return nil
	}
	if err := c.acquireLock(deadline); err != nil {
		return err
	}
	wseq := atomic.LoadUint64(c.wseq)
	g2 := uint32(wseq & 1)
	g1 := g2 ^ 1
	wseq >>= 1
	wake := false
	if n := atomic.LoadUint32(c.gSize[g1]); n != 0 {
		atomic.AddUint32(c.gSig[g1], n<<1)
		atomic.StoreUint32(c.gSize[g1], 0)
		_, _ = futex.Wake(c.gSig[g1], 0)
	}
	if c.quiesceAndSwitchG1(wseq, &g1) {
		atomic.AddUint32(c.gSig[g1], atomic.LoadUint32(c.gSize[g1])<<1)
		atomic.StoreUint32(c.gSize[g1], 0)
		wake = true
	}
	c.releaseLock()
	if wake {
		_, _ = futex.Wake(c.gSig[g1], 0)
	}
	return nil
}

// Wait is pthread_cond_clockwait with the caller holding m: it registers as
// a waiter, unlocks m, waits for a signal until deadline (or until stop is
// closed, which counts as a timeout), and relocks m. woken is true when it
// was woken (spuriously too, as glibc may) and false on timeout. A non-nil
// error means m could not be relocked by relockBy: m is then not held.
func (c *Cond) Wait(m *Mutex, deadline time.Time, stop <-chan struct{}, relockBy time.Time) (woken bool, err error) {
	wseq := atomic.AddUint64(c.wseq, 2) - 2
	g := uint32(wseq & 1)
	seq := wseq >> 1
	atomic.AddUint32(c.wrefs, 8)
	m.unlockUsercnt(false)

	woken = true
	signals := atomic.LoadUint32(c.gSig[g])
wait:
	for {
		for {
			if signals&1 != 0 {
				break wait // group closed: counts as woken
			}
			if signals != 0 {
				break
			}
			atomic.AddUint32(c.gRefs[g], 2)
			if atomic.LoadUint32(c.gSig[g])&1 != 0 || seq < atomic.LoadUint64(c.g1Start)>>1 {
				c.decGRefs(g)
				break wait
			}
			timedOut := false
			if d := time.Until(deadline); d <= 0 || stopped(stop) {
				timedOut = true
			} else if futex.Wait(c.gSig[g], 0, min(d, slice)) == futex.ErrTimeout &&
				(!time.Now().Before(deadline) || stopped(stop)) {
				timedOut = true
			}
			c.decGRefs(g)
			if timedOut {
				c.cancelWaiting(seq, g, deadline.Add(time.Second))
				woken = false
				break wait
			}
			signals = atomic.LoadUint32(c.gSig[g])
		}
		if atomic.CompareAndSwapUint32(c.gSig[g], signals, signals-2) {
			c.undoSteal(seq, g)
			break
		}
		signals = atomic.LoadUint32(c.gSig[g])
	}
	c.confirmWakeup()
	if err := m.condLock(relockBy); err != nil {
		return false, err
	}
	return woken, nil
}

// undoSteal is the end of a successful wait: if our group was closed
// meanwhile, the signal we took may have been meant for a newer group in the
// same slot; put one back and wake a waiter.
func (c *Cond) undoSteal(seq uint64, g uint32) {
	g1Start := atomic.LoadUint64(c.g1Start)
	if seq >= g1Start>>1 || uint32(g1Start&1)^1 != g {
		return
	}
	s := atomic.LoadUint32(c.gSig[g])
	for atomic.LoadUint64(c.g1Start) == g1Start {
		if s&1 != 0 || atomic.CompareAndSwapUint32(c.gSig[g], s, s+2) {
			_, _ = futex.Wake(c.gSig[g], 1)
			return
		}
		s = atomic.LoadUint32(c.gSig[g])
	}
}

func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// cancelWaiting is __condvar_cancel_waiting: after a timeout, shrink our
// group, or, if our group already got its signal, pass a signal on. If the
// internal lock cannot be had by deadline the registration stays counted
// (as if this waiter had died: at most one signal is absorbed).
func (c *Cond) cancelWaiting(seq uint64, g uint32, deadline time.Time) {
	if err := c.acquireLock(deadline); err != nil {
		return
	}
	consumed := false
	g1Start := atomic.LoadUint64(c.g1Start) >> 1
	switch {
	case g1Start > seq:
		consumed = true
	case g1Start+uint64(atomic.LoadUint32(c.origSize)>>2) <= seq:
		// In G2: its size is zero or negative (unsigned wrap).
		if atomic.LoadUint32(c.gSize[g])+maxGroupSize > 0 {
			atomic.AddUint32(c.gSize[g], ^uint32(0))
		} else {
			c.releaseLock()
			_ = c.Broadcast(deadline)
			return
		}
	default:
		// In G1.
		if atomic.LoadUint32(c.gSize[g]) == 0 {
			consumed = true
		} else {
			atomic.AddUint32(c.gSize[g], ^uint32(0))
		}
	}
	c.releaseLock()
	if consumed {
		_ = c.Signal(deadline)
	}
}

// decGRefs is __condvar_dec_grefs.
func (c *Cond) decGRefs(g uint32) {
	if atomic.AddUint32(c.gRefs[g], ^uint32(1))+2 == 3 {
		atomic.AndUint32(c.gRefs[g], ^uint32(1))
		_, _ = futex.Wake(c.gRefs[g], 0)
	}
}

// confirmWakeup is __condvar_confirm_wakeup.
func (c *Cond) confirmWakeup() {
	if (atomic.AddUint32(c.wrefs, ^uint32(7))+8)>>2 == 3 {
		_, _ = futex.Wake(c.wrefs, 0)
	}
}

// acquireLock is __condvar_acquire_lock (the two low bits of __g1_orig_size:
// 0 free, 1 taken, 2 taken with waiters) with a deadline.
func (c *Cond) acquireLock(deadline time.Time) error {
	s := atomic.LoadUint32(c.origSize)
	for s&3 == 0 {
		if atomic.CompareAndSwapUint32(c.origSize, s, s|1) {
			return nil
		}
		s = atomic.LoadUint32(c.origSize)
	}
	for {
		for s&3 != 2 {
			if atomic.CompareAndSwapUint32(c.origSize, s, s&^3|2) {
				if s&3 == 0 {
					return nil
				}
				break
			}
			s = atomic.LoadUint32(c.origSize)
		}
		if err := sleep(c.origSize, s&^3|2, deadline); err != nil {
			return err
		}
		s = atomic.LoadUint32(c.origSize)
	}
}

// releaseLock is __condvar_release_lock.
func (c *Cond) releaseLock() {
	if atomic.AndUint32(c.origSize, ^uint32(3))&3 == 2 {
		_, _ = futex.Wake(c.origSize, 1)
	}
}

// setOrigSize is __condvar_set_orig_size (lock held).
func (c *Cond) setOrigSize(size uint32) {
	s := atomic.LoadUint32(c.origSize)&3 | size<<2
	if atomic.SwapUint32(c.origSize, s)&3 != s&3 {
		atomic.StoreUint32(c.origSize, size<<2|2)
	}
}

// quiesceAndSwitchG1 is __condvar_quiesce_and_switch_g1 (lock held): close
// G1, wait for its blocked waiters to leave (bounded, see Signal), make it
// the new G2 and the old G2 the new G1. It reports whether the new G1 has
// waiters to signal.
func (c *Cond) quiesceAndSwitchG1(wseq uint64, g1index *uint32) bool {
	g1 := *g1index
	oldOrigSize := atomic.LoadUint32(c.origSize) >> 2
	oldG1Start := atomic.LoadUint64(c.g1Start) >> 1
	if uint32(wseq-oldG1Start-uint64(oldOrigSize))+atomic.LoadUint32(c.gSize[g1^1]) == 0 {
		return false
	}
	atomic.OrUint32(c.gSig[g1], 1)
	r := atomic.OrUint32(c.gRefs[g1], 0)
	bound := time.Now().Add(refsWaitBound)
	for r>>1 > 0 {
		r = atomic.OrUint32(c.gRefs[g1], 1) | 1
		if r>>1 > 0 {
			if sleep(c.gRefs[g1], r, bound) != nil {
				c.staleRefs.Add(1)
				break
			}
		}
		r = atomic.LoadUint32(c.gRefs[g1])
	}
	var step uint32 = 0xffffffff // -1
	if g1 == 1 {
		step = 1
	}
	atomic.AddUint64(c.g1Start, uint64(oldOrigSize<<1+step))
	atomic.StoreUint32(c.gSig[g1], 0)
	wseq = xor64(c.wseq, 1) >> 1
	g1 ^= 1
	*g1index ^= 1
	orig := uint32(wseq - (oldG1Start + uint64(oldOrigSize)))
	c.setOrigSize(orig)
	atomic.AddUint32(c.gSize[g1], orig)
	return atomic.LoadUint32(c.gSize[g1]) != 0
}

// xor64 is an atomic fetch-xor (Go has none for 64 bits).
func xor64(p *uint64, v uint64) uint64 {
	for {
		old := atomic.LoadUint64(p)
		if atomic.CompareAndSwapUint64(p, old, old^v) {
			return old
		}
	}
}
