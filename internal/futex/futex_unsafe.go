// Package futex wraps the Linux futex(2) system call for words that live in
// shared memory mapped by several processes.
//
// The calls never use FUTEX_PRIVATE_FLAG: the words are shared between
// processes, and a private futex is keyed by the caller's address space.
// Every wait is bounded by a timeout; there is no untimed wait here.
package futex

import (
	"errors"
	"math"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrTimeout is returned by Wait when the timeout elapsed before a wake-up.
var ErrTimeout = errors.New("futex: wait timed out")

const (
	opWait = 0 // FUTEX_WAIT (shared)
	opWake = 1 // FUTEX_WAKE (shared)
)

// Wait sleeps while *addr == val, for at most timeout. It returns nil when it
// was woken, when *addr != val at the time of the call (EAGAIN), or on a
// spurious wake-up (EINTR); callers re-check their condition in a loop.
// It returns ErrTimeout when the timeout elapsed. A timeout <= 0 returns
// ErrTimeout at once without sleeping.
//
// The call goes through unix.Syscall6, not RawSyscall, so the Go scheduler
// hands the P to another thread while this one sleeps in the kernel.
func Wait(addr *uint32, val uint32, timeout time.Duration) error {
	if timeout <= 0 {
		return ErrTimeout
	}
	ts := unix.NsecToTimespec(int64(timeout))
	_, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)),
		opWait, uintptr(val), uintptr(unsafe.Pointer(&ts)), 0, 0)
	switch errno {
	case 0, unix.EAGAIN, unix.EINTR:
		return nil
	case unix.ETIMEDOUT:
		return ErrTimeout
	default:
		return errno
	}
}

// Wake wakes at most n waiters sleeping on addr and returns how many it woke.
// n <= 0 or n > MaxInt32 wakes all of them.
func Wake(addr *uint32, n int) (int, error) {
	if n <= 0 || n > math.MaxInt32 {
		n = math.MaxInt32
	}
	r, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)),
		opWake, uintptr(n), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}
