package mutex

import (
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/shmfs/shmfs/internal/futex"
	"github.com/shmfs/shmfs/internal/proc"
)

// locker runs the lock algorithms over one mapped region on behalf of one
// handle. The shared state is in r; the fields below it are this handle's.
type locker struct {
	r     region
	me    uint64        // this process's identity word, proc.Self().Pack()
	slice time.Duration // longest sleep between two liveness checks

	// state: bit closedBit set by Close; the low bits count calls in
	// progress, which Close waits for before the mapping goes away.
	state atomic.Int64
	// mine: bit i set while slot i is held shared through this handle.
	mine atomic.Uint64
	// excl: the exclusive lock was taken through this handle and not released.
	excl atomic.Bool
}

const closedBit = 1 << 62

// maxTimeout caps timeouts so that deadlines never overflow.
const maxTimeout = 365 * 24 * time.Hour

// self is this process's identity; selfWord its packed form.
var (
	self     = proc.Self()
	selfWord = self.Pack()
)

func newLocker(r region, slice time.Duration) *locker {
	return &locker{r: r, me: selfWord, slice: slice}
}

// enter registers a call in progress; false once Close has begun.
func (l *locker) enter() bool {
	if l.state.Add(1)&closedBit != 0 {
		l.state.Add(-1)
		return false
	}
	return true
}

func (l *locker) leave() { l.state.Add(-1) }

func (l *locker) closing() bool { return l.state.Load()&closedBit != 0 }

// alive reports whether the process named by identity word v (W or a slot)
// is running. Flag bits are ignored; a word without a PID is dead.
func alive(v uint64) bool {
	pid, tag := int32(v&pidMask), uint32(v>>32)
	if pid == self.PID && tag == self.Tag() {
		return true
	}
	return proc.AliveTag(pid, tag)
}

// owner returns the identity part of W.
func owner(w uint64) uint64 { return w &^ wSleepers }

// waiter paces one blocking call: sleeps last at most one slice, and the
// holders' liveness is checked once per slice and once more at the deadline
// (so even a call with a timeout shorter than a slice recovers a dead
// holder's lock). The clock is read only once the call has to wait.
type waiter struct {
	timeout, slice time.Duration
	deadline, last time.Time
	started        bool
}

// tick reports whether the holders should be checked now and whether the
// deadline has passed.
func (wt *waiter) tick() (check, expired bool) {
	now := time.Now()
	if !wt.started {
		wt.started = true
		wt.deadline = now.Add(min(max(wt.timeout, 0), maxTimeout))
		wt.last = now
	}
	expired = !now.Before(wt.deadline)
	if expired || now.Sub(wt.last) >= wt.slice {
		wt.last = now
		check = true
	}
	return check, expired
}

// sleep returns how long the next futex wait may last.
func (wt *waiter) sleep() time.Duration { return min(time.Until(wt.deadline), wt.slice) }

func (l *locker) newWaiter(timeout time.Duration) waiter {
	return waiter{timeout: timeout, slice: l.slice}
}

// wait sleeps on addr while it holds val; wake-ups, value changes and
// timeouts all return nil (the caller re-checks), other errors are returned.
func wait(addr *uint32, val uint32, d time.Duration) error {
	if err := futex.Wait(addr, val, d); err != nil && !errors.Is(err, futex.ErrTimeout) {
		return fmt.Errorf("mutex: futex wait: %w", err)
	}
	return nil
}

// wakes counts FUTEX_WAKE calls made by this process's lock operations
// (tests assert that uncontended ones make none).
var wakes atomic.Uint64

func wakeAll(addr *uint32) {
	wakes.Add(1)
	_, _ = futex.Wake(addr, 0)
}

// lock takes the lock exclusively: first W, then it waits for the shared
// holders announced in the readers word to leave.
func (l *locker) lock(timeout time.Duration) error {
	if !l.enter() {
		return ErrClosed
	}
	defer l.leave()
	wt := l.newWaiter(timeout)
	if atomic.LoadInt64(l.r.turn) != 0 {
		l.yieldTurn()
	}
	if !atomic.CompareAndSwapUint64(l.r.w, unlocked, l.me) {
		if err := l.acquireW(&wt); err != nil {
			return err
		}
	}
	reaped := false
	if atomic.LoadUint64(l.r.readers) != 0 {
		var err error
		if reaped, err = l.drain(&wt); err != nil {
			l.releaseW()
			return err
		}
	}
	if err := l.acquired(); err != nil || !reaped {
		return err
	}
	return ErrReaderDied
}

// yieldTurn lets readers woken by the last Unlock take their slots first
// (see "readers' turn" in layout.go): it waits, yielding the processor,
// until a shared holder shows up or the turn expires, then clears the turn.
func (l *locker) yieldTurn() {
	t := atomic.LoadInt64(l.r.turn)
	for t != 0 && atomic.LoadUint64(l.r.readers) == 0 && atomic.LoadUint64(l.r.w) == unlocked {
		now := time.Now().UnixNano()
		if now >= t || t-now > int64(turnGrace) { // expired, or a lying value
			break
		}
		runtime.Gosched()
	}
	atomic.CompareAndSwapInt64(l.r.turn, t, 0)
}

// acquired finishes a successful exclusive acquisition.
func (l *locker) acquired() error {
	l.excl.Store(true)
	if atomic.LoadUint32(l.r.dirty) != 0 {
		return ErrOwnerDied
	}
	return nil
}

// acquireW waits until W can be set to this process: it is free, or its
// owner is dead (then dirty is set before the take-over, so that nobody can
// acquire the lock in between without learning that the owner died).
func (l *locker) acquireW(wt *waiter) error {
	for {
		w := atomic.LoadUint64(l.r.w)
		if w == unlocked {
			if atomic.CompareAndSwapUint64(l.r.w, unlocked, l.me) {
				return nil
			}
			continue
		}
		if l.closing() {
			return ErrClosed
		}
		check, expired := wt.tick()
		if check && !alive(w) {
			atomic.StoreUint32(l.r.dirty, 1)
			if atomic.CompareAndSwapUint64(l.r.w, w, l.me|w&wSleepers) {
				return nil
			}
			continue
		}
		if expired {
			return ErrTimeout
		}
		if err := l.sleepW(w, wt.sleep()); err != nil {
			return err
		}
	}
}

// sleepW sleeps on W (which was w, with an owner) after announcing itself
// with wSleepers, so that the owner's Unlock wakes it.
func (l *locker) sleepW(w uint64, d time.Duration) error {
	if w&wSleepers == 0 {
		if !atomic.CompareAndSwapUint64(l.r.w, w, w|wSleepers) {
			return nil // W changed: re-check
		}
		w |= wSleepers
	}
	return wait(l.r.wLow, uint32(w), d)
}

// drain waits, holding W, until no slot announces a shared holder. It sets
// dSleepers before its last look at the readers word; a releasing reader
// clears its bit before it looks at D (Dekker: Go atomics are sequentially
// consistent, so one of the two sees the other). It reports whether it
// removed a dead shared holder on the way.
func (l *locker) drain(wt *waiter) (reaped bool, err error) {
	for {
		d := atomic.LoadUint32(l.r.d)
		if atomic.LoadUint64(l.r.readers) == 0 {
			return reaped, nil
		}
		if l.closing() {
			return reaped, ErrClosed
		}
		check, expired := wt.tick()
		if check && l.reap(atomic.LoadUint64(l.r.readers)) {
			reaped = true
			continue
		}
		if expired {
			return reaped, ErrTimeout
		}
		if d&dSleepers == 0 {
			if !atomic.CompareAndSwapUint32(l.r.d, d, d|dSleepers) {
				continue
			}
			d |= dSleepers
			if atomic.LoadUint64(l.r.readers) == 0 {
				return reaped, nil
			}
		}
		if err := wait(l.r.d, d, wt.sleep()); err != nil {
			return reaped, err
		}
	}
}

// reap removes the dead holders among the slots flagged in rd and reports
// whether it removed any.
func (l *locker) reap(rd uint64) bool {
	cleaned := false
	for rd != 0 {
		i := bits.TrailingZeros64(rd)
		rd &= rd - 1
		// A flagged slot is never 0 unless the segment is corrupt; then
		// the flag is removed too.
		if v := atomic.LoadUint64(&l.r.slots[i]); (v == 0 || !alive(v)) && l.clean(i, v) {
			cleaned = true
		}
	}
	return cleaned
}

// reapAll removes dead holders from every slot (readers waiting for a free
// slot use it) and reports whether it removed any.
func (l *locker) reapAll() bool {
	cleaned := false
	for i := range l.r.slots {
		if v := atomic.LoadUint64(&l.r.slots[i]); v != 0 && !alive(v) && l.clean(i, v) {
			cleaned = true
		}
	}
	return cleaned
}

// clean takes slot i over from the dead holder v, clears its readers bit
// and frees it. Marking the slot first makes this process the only one that
// may touch bit i, so a slow cleaner never clears a new holder's bit.
func (l *locker) clean(i int, v uint64) bool {
	if !atomic.CompareAndSwapUint64(&l.r.slots[i], v, l.me|slotCleaning) {
		return false
	}
	atomic.AndUint64(l.r.readers, ^(uint64(1) << i))
	atomic.StoreUint64(&l.r.slots[i], 0)
	l.notifyD()
	return true
}

// notifyD wakes D's sleepers if there are any: no system call otherwise.
func (l *locker) notifyD() {
	for {
		d := atomic.LoadUint32(l.r.d)
		if d&dSleepers == 0 {
			return
		}
		if atomic.CompareAndSwapUint32(l.r.d, d, (d+1)&dSeqMask) {
			wakeAll(l.r.d)
			return
		}
	}
}

// releaseW sets W to 0 if this process owns it and wakes W's sleepers.
func (l *locker) releaseW() bool {
	for {
		w := atomic.LoadUint64(l.r.w)
		if owner(w) != l.me {
			return false
		}
		if atomic.CompareAndSwapUint64(l.r.w, w, unlocked) {
			if w&wSleepers != 0 {
				if atomic.SwapUint32(l.r.rwait, 0) != 0 {
					atomic.StoreInt64(l.r.turn, time.Now().Add(turnGrace).UnixNano())
				}
				wakeAll(l.r.wLow)
			}
			return true
		}
	}
}

func (l *locker) unlock() error {
	if !l.enter() {
		return ErrClosed
	}
	defer l.leave()
	if owner(atomic.LoadUint64(l.r.w)) != l.me {
		return ErrNotOwner
	}
	// The holder that saw ErrOwnerDied has repaired the data by now.
	if atomic.LoadUint32(l.r.dirty) != 0 {
		atomic.StoreUint32(l.r.dirty, 0)
	}
	l.excl.Store(false)
	if !l.releaseW() {
		return ErrNotOwner
	}
	return nil
}

func (l *locker) tryLock() (bool, error) {
	if !l.enter() {
		return false, ErrClosed
	}
	defer l.leave()
	if w := atomic.LoadUint64(l.r.w); w != unlocked {
		if alive(w) {
			return false, nil
		}
		atomic.StoreUint32(l.r.dirty, 1)
		if !atomic.CompareAndSwapUint64(l.r.w, w, l.me|w&wSleepers) {
			return false, nil
		}
	} else if !atomic.CompareAndSwapUint64(l.r.w, unlocked, l.me) {
		return false, nil
	}
	reaped := false
	if rd := atomic.LoadUint64(l.r.readers); rd != 0 {
		reaped = l.reap(rd)
		if atomic.LoadUint64(l.r.readers) != 0 {
			l.releaseW()
			return false, nil
		}
	}
	if err := l.acquired(); err != nil || !reaped {
		return true, err
	}
	return true, ErrReaderDied
}

// rlock takes the lock shared: it claims a free slot (CAS 0 -> me), sets
// the slot's bit in the readers word, then checks that W is still 0. If a
// writer appeared meanwhile it backs off (writer preference) and waits on W.
func (l *locker) rlock(timeout time.Duration) error {
	if !l.enter() {
		return ErrClosed
	}
	defer l.leave()
	wt := l.newWaiter(timeout)
	for {
		if w := atomic.LoadUint64(l.r.w); w != unlocked {
			if err := l.waitWriter(&wt, w); err != nil {
				return err
			}
			continue
		}
		i := l.claim()
		if i < 0 {
			if err := l.waitSlot(&wt); err != nil {
				return err
			}
			continue
		}
		bit := uint64(1) << i
		atomic.OrUint64(l.r.readers, bit)
		if atomic.LoadUint64(l.r.w) != unlocked {
			if err := l.release(i); err != nil {
				return err
			}
			if _, expired := wt.tick(); expired {
				return ErrTimeout
			}
			continue
		}
		l.mine.Or(bit)
		if atomic.LoadUint32(l.r.dirty) != 0 {
			return ErrOwnerDied
		}
		return nil
	}
}

// waitWriter waits for W (seen as w) to be released; a dead owner's W is
// cleared after dirty was set.
func (l *locker) waitWriter(wt *waiter, w uint64) error {
	if l.closing() {
		return ErrClosed
	}
	check, expired := wt.tick()
	if check && !alive(w) {
		atomic.StoreUint32(l.r.dirty, 1)
		if atomic.CompareAndSwapUint64(l.r.w, w, unlocked) && w&wSleepers != 0 {
			wakeAll(l.r.wLow)
		}
		return nil
	}
	if expired {
		return ErrTimeout
	}
	atomic.StoreUint32(l.r.rwait, 1) // ask the writer for a turn when it unlocks
	return l.sleepW(w, wt.sleep())
}

// waitSlot waits until a slot may be free (all 64 were taken).
func (l *locker) waitSlot(wt *waiter) error {
	d := atomic.LoadUint32(l.r.d)
	if l.closing() {
		return ErrClosed
	}
	check, expired := wt.tick()
	if check && l.reapAll() {
		return nil
	}
	if expired {
		return ErrTimeout
	}
	if d&dSleepers == 0 {
		if !atomic.CompareAndSwapUint32(l.r.d, d, d|dSleepers) {
			return nil
		}
		d |= dSleepers
	}
	for i := range l.r.slots {
		if atomic.LoadUint64(&l.r.slots[i]) == 0 {
			return nil
		}
	}
	return wait(l.r.d, d, wt.sleep())
}

// claim takes a free slot and returns its index, or -1 if all are taken.
// Processes start their search at different slots to avoid collisions.
func (l *locker) claim() int {
	start := int(uint32(l.me)*11) % numSlots
	for k := range numSlots {
		i := (start + k) % numSlots
		s := &l.r.slots[i]
		if atomic.LoadUint64(s) == 0 && atomic.CompareAndSwapUint64(s, 0, l.me) {
			return i
		}
	}
	return -1
}

// release gives slot i up: bit first, then the slot, then wake a writer
// draining (or a reader waiting for a slot) if one sleeps.
func (l *locker) release(i int) error {
	s := &l.r.slots[i]
	if atomic.LoadUint64(s) != l.me {
		return fmt.Errorf("%w: reader slot %d was taken from this process", ErrNotOwner, i)
	}
	atomic.AndUint64(l.r.readers, ^(uint64(1) << i))
	atomic.CompareAndSwapUint64(s, l.me, 0)
	l.notifyD()
	return nil
}

func (l *locker) runlock() error {
	if !l.enter() {
		return ErrClosed
	}
	defer l.leave()
	for {
		m := l.mine.Load()
		if m == 0 {
			return ErrNotOwner
		}
		i := bits.TrailingZeros64(m)
		if l.mine.CompareAndSwap(m, m&^(uint64(1)<<i)) {
			return l.release(i)
		}
	}
}

// shutdown stops new calls, wakes this handle's sleepers (and, harmlessly,
// other processes' ones, which re-check and sleep again), waits for calls
// in progress to return, then releases what this handle still holds: its
// slots, and W (marking the data dirty: the holder gave up mid-update).
// It returns ErrClosed if Close already ran.
func (l *locker) shutdown() error {
	for {
		s := l.state.Load()
		if s&closedBit != 0 {
			return ErrClosed
		}
		if l.state.CompareAndSwap(s, s|closedBit) {
			break
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.state.Load() != closedBit {
		if time.Now().After(deadline) {
			// Unmapping now could fault a call still running; keep the
			// mapping (leaked) rather than crash.
			return errors.New("mutex: close: calls still running after 10 s")
		}
		wakeAll(l.r.wLow)
		wakeAll(l.r.d)
		time.Sleep(100 * time.Microsecond)
	}
	m := l.mine.Swap(0)
	for m != 0 {
		i := bits.TrailingZeros64(m)
		m &= m - 1
		_ = l.release(i)
	}
	if l.excl.Swap(false) && owner(atomic.LoadUint64(l.r.w)) == l.me {
		atomic.StoreUint32(l.r.dirty, 1)
		l.releaseW()
	}
	return nil
}
