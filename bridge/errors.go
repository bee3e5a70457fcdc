package bridge

import "errors"

// Sentinel errors. Every error of this package is one of these or wraps one
// (test with errors.Is).
var (
	// ErrInvalidConfig: a configuration value is malformed or unsafe.
	ErrInvalidConfig = errors.New("bridge: invalid configuration")
	// ErrInvalidMessage: a NATS message or announcement that no bridge
	// sends (bad subject, header or body); it is dropped and counted.
	ErrInvalidMessage = errors.New("bridge: invalid message")
	// ErrNATS: the NATS server could not be started or reached.
	ErrNATS = errors.New("bridge: NATS")
	// ErrTooLarge: a message exceeds the limit (64 MiB, or what an
	// external server allows when splitting is off).
	ErrTooLarge = errors.New("bridge: message too large")
	// ErrClosed: the bridge was closed.
	ErrClosed = errors.New("bridge: closed")
)
