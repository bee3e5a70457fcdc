package ecal

import (
	"errors"

	"github.com/shmfs/shmfs/ecal/glibc"
)

// Sentinel errors. Every error of this package is one of these or wraps one
// (test with errors.Is).
var (
	// ErrUnsupported: the host or an eCAL peer uses a glibc pthread layout or
	// an eCAL build option (ECAL_USE_CLOCKLOCK_MUTEX) that the gateway does
	// not imitate; it refuses instead of corrupting the peer.
	ErrUnsupported = glibc.ErrUnsupported
	// ErrInvalidSample: a registration datagram or sample is malformed.
	ErrInvalidSample = errors.New("ecal: invalid registration sample")
	// ErrCorrupt: an eCAL memory file or synchronisation object has values
	// that do not fit its layout or its mapping.
	ErrCorrupt = errors.New("ecal: corrupt shared memory object")
	// ErrTimeout: a lock or an acknowledgement did not come in time.
	ErrTimeout = errors.New("ecal: timed out")
	// ErrClosed: the gateway or object was closed.
	ErrClosed = errors.New("ecal: closed")
	// ErrInvalidConfig: a configuration value is out of range.
	ErrInvalidConfig = errors.New("ecal: invalid configuration")
	// ErrTooLarge: a message does not fit the configured maximum.
	ErrTooLarge = errors.New("ecal: message too large")
)
