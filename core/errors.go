package core

import "errors"

// Sentinel errors. Every error returned by this package is one of these or
// wraps one (test with errors.Is), or wraps a context error.
var (
	// ErrClosed: the publisher, subscriber or node was closed.
	ErrClosed = errors.New("shmfs: closed")
	// ErrInvalidTopic: the topic name is empty, longer than 255 bytes, "."
	// or "..", not UTF-8, or contains '/', NUL or a control character.
	ErrInvalidTopic = errors.New("shmfs: invalid topic name")
	// ErrInvalidOption: an option value is out of range.
	ErrInvalidOption = errors.New("shmfs: invalid option")
	// ErrTooLarge: the message exceeds the maximum message size.
	ErrTooLarge = errors.New("shmfs: message too large")
	// ErrTypeMismatch: the topic carries another type than the one asked for.
	ErrTypeMismatch = errors.New("shmfs: topic type mismatch")
	// ErrAckTimeout: in ack mode, at least one subscriber did not acknowledge
	// within the ack timeout. The message was still published.
	ErrAckTimeout = errors.New("shmfs: acknowledgement timed out")
	// ErrChecksum: a message's payload did not match its CRC-32C; the
	// message was dropped.
	ErrChecksum = errors.New("shmfs: message checksum mismatch")
	// ErrLockTimeout: a memory file's mutex could not be taken in time.
	ErrLockTimeout = errors.New("shmfs: memory file lock timed out")
)
