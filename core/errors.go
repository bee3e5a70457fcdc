package core

import (
	"errors"
	"fmt"
	"strings"

	"github.com/shmfs/shmfs/core/registration"
	"github.com/shmfs/shmfs/internal/shm"
)

// Sentinel errors. Every error returned by this package is one of these or
// wraps one (test with errors.Is), or is a context's error, or is the
// error of the caller's own function (a SendFunc fill, a ReceiveFunc
// callback), returned as it is.
var (
	// ErrClosed: the publisher, subscriber or node was closed.
	ErrClosed = errors.New("shmfs: closed")
	// ErrInvalidTopic: the topic name is empty, longer than 255 bytes, "."
	// or "..", not UTF-8, or contains '/', NUL or a control character.
	ErrInvalidTopic = errors.New("shmfs: invalid topic name")
	// ErrInvalidOption: an option value is out of range, or a node of the
	// same domain and port is already open with other settings.
	ErrInvalidOption = errors.New("shmfs: invalid option")
	// ErrTooLarge: the message exceeds the maximum message size.
	ErrTooLarge = errors.New("shmfs: message too large")
	// ErrTypeMismatch: the topic carries another type than the one asked for.
	ErrTypeMismatch = errors.New("shmfs: topic type mismatch")
	// ErrAckTimeout: in ack mode, a subscriber process held the window full
	// for longer than the ack timeout. The message was still published; the
	// process is skipped until it catches up.
	ErrAckTimeout = errors.New("shmfs: acknowledgement timed out")
	// ErrChecksum: a message's payload did not match its CRC-32C; the
	// message was dropped.
	ErrChecksum = errors.New("shmfs: message checksum mismatch")
	// ErrOverrun: a zero-copy view was overwritten while the callback ran
	// (the subscriber had fallen a whole window behind): what the callback
	// saw may be torn. The message counts as dropped.
	ErrOverrun = errors.New("shmfs: zero-copy view overwritten during the callback")
	// ErrNoSpace: /dev/shm is full.
	ErrNoSpace = errors.New("shmfs: no space left in /dev/shm")
	// ErrPermission: shared memory of another user, or with unsafe
	// permissions, was refused.
	ErrPermission = errors.New("shmfs: permission denied")
	// ErrCorrupt: shared memory failed validation.
	ErrCorrupt = errors.New("shmfs: shared memory corrupt")
	// ErrUnverified: a registration named shared memory that does not
	// belong to the entity it announced (a forged or stale datagram); it
	// was ignored.
	ErrUnverified = errors.New("shmfs: registration does not match shared memory")
	// ErrSystem: a system call on shared memory failed for another reason
	// (too many open files, out of memory, ...); the cause is wrapped.
	ErrSystem = errors.New("shmfs: system error")
	// ErrRegistration: the UDP registration could not start (port in use
	// without SO_REUSEADDR, no such interface, ...).
	ErrRegistration = errors.New("shmfs: registration failed")
)

// shmError wraps err, from internal/shm or a kind built on it, in the core
// sentinel for its cause, so that callers test causes with this package's
// sentinels alone. what says what was being done.
func shmError(what string, err error) error {
	var s error
	switch {
	case errors.Is(err, shm.ErrNoSpace):
		s = ErrNoSpace
	case errors.Is(err, shm.ErrPermission):
		s = ErrPermission
	case errors.Is(err, shm.ErrClosed), errors.Is(err, shm.ErrNotExist):
		s = ErrClosed
	case errors.Is(err, shm.ErrCorrupt), errors.Is(err, shm.ErrVersion), errors.Is(err, shm.ErrKind),
		errors.Is(err, shm.ErrForeignNamespace), errors.Is(err, shm.ErrExist):
		s = ErrCorrupt
	default:
		s = ErrSystem
	}
	return fmt.Errorf("%w: %s: %w", s, what, err)
}

// invalidTopic wraps a failed topic-name check as ErrInvalidTopic with one
// message ("shmfs: invalid topic name: topic "." is reserved") instead of
// the texts of both sentinels in a row; errors.Is finds both.
func invalidTopic(err error) error { return &topicError{err: err} }

type topicError struct{ err error }

func (e *topicError) Error() string {
	msg := e.err.Error()
	for _, s := range []error{registration.ErrBadName, registration.ErrTooLarge} {
		msg = strings.TrimPrefix(msg, s.Error()+": ")
	}
	return ErrInvalidTopic.Error() + ": " + msg
}

func (e *topicError) Unwrap() []error { return []error{ErrInvalidTopic, e.err} }
