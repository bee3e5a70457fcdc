package mutex

import "errors"

// Sentinel errors; test with errors.Is.
var (
	// ErrTimeout: the lock was not acquired within the timeout.
	ErrTimeout = errors.New("mutex: lock timed out")
	// ErrOwnerDied: the lock IS held (exclusively after Lock/TryLock,
	// shared after RLock), but a writer died holding it and no writer has
	// unlocked it since: the protected data may be half-written.
	ErrOwnerDied = errors.New("mutex: previous owner died holding the lock")
	// ErrReaderDied: the lock IS held exclusively (after Lock/TryLock), and
	// a process that held it shared died and was removed on the way. The
	// protected data is intact (shared holders write nothing); the caller
	// learns of the death, e.g. to stop waiting for that process.
	ErrReaderDied = errors.New("mutex: a shared holder died holding the lock")
	// ErrNotOwner: Unlock without holding the lock exclusively, or RUnlock
	// without a shared hold taken through this handle.
	ErrNotOwner = errors.New("mutex: not held by this process")
	// ErrClosed: the handle was closed.
	ErrClosed = errors.New("mutex: closed")
)
