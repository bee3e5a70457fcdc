package registration

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shmfs/shmfs/internal/shmname"
)

// Kind says what an entity is.
type Kind uint8

// Entity kinds. Other values are reserved: a receiver skips samples of kinds
// it does not know (forward compatibility) and counts them.
const (
	KindPublisher  Kind = 1
	KindSubscriber Kind = 2
)

func (k Kind) String() string {
	switch k {
	case KindPublisher:
		return "publisher"
	case KindSubscriber:
		return "subscriber"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Sample flags. Unknown bits are carried unchanged.
const (
	// FlagUnregister: the entity is gone; receivers forget it at once.
	FlagUnregister uint32 = 1 << 0
	// FlagQuery: a new entity asks everyone to re-announce now. Sent only in
	// the first announcement of an entity; never stored in a registry.
	FlagQuery uint32 = 1 << 1
)

// Entity is one publisher or subscriber as announced in one sample.
// Slices in entities returned by the package are copies; callers may keep them.
type Entity struct {
	Domain string
	// Host identity. "Same host" is decided by MachineID, never by HostName.
	HostName, MachineID string
	// BootID is the kernel boot id of the owner's host; liveness checks by
	// PID apply only when machine id, boot id and PID namespace all match
	// (cloned machines share /etc/machine-id but not the boot id).
	BootID string
	// Instance is the owner process's proc.InstanceID().
	Instance uint64
	PID      int32
	// StartTime is the owner's start time (clock ticks since boot).
	StartTime uint64
	// PIDNamespace is the inode of the owner's PID namespace: its PID means
	// something to a receiver only in the same namespace.
	PIDNamespace uint64
	ProcessName  string
	UID          uint32

	Kind                  Kind
	ID                    uint64
	Topic, Type, Encoding string
	MemFiles              []string
	BufferCount           uint32
	// Origin says where a forwarded entity's messages come from (a bridge
	// or gateway sets it); empty for an entity of this host.
	Origin                     string
	Sent, Dropped, AckTimeouts uint64
	Seq                        uint64
	Flags                      uint32

	Local    bool      // set by the receiver: same machine id
	LastSeen time.Time // set by the receiver
}

func (e Entity) String() string {
	return fmt.Sprintf("%s %016x/%016x topic %q (pid %d on %s)", e.Kind, e.Instance, e.ID, e.Topic, e.PID, e.HostName)
}

// clone returns e with its own copy of MemFiles.
func (e Entity) clone() Entity {
	e.MemFiles = slices.Clone(e.MemFiles)
	return e
}

// Limits on announced fields. Every string and count is checked against
// them before anything is allocated for it.
const (
	MaxTopic       = 255
	MaxHostName    = 255
	MaxMachineID   = 64 // machine id and boot id
	MaxProcessName = 255
	MaxType        = 1024
	MaxEncoding    = 255
	MaxMemFiles    = 256 // memory files per entity; also the bound of BufferCount
	MaxOrigin      = 255
)

// Errors. Every decoding or validation error wraps ErrInvalid and one of the
// more specific errors below, so callers may test either with errors.Is.
var (
	ErrInvalid  = errors.New("registration: invalid")
	ErrClosed   = errors.New("registration: agent closed")
	ErrNotFound = errors.New("registration: entity not registered")

	ErrTruncated = fmt.Errorf("%w: truncated", ErrInvalid)                // a length or count points past the end
	ErrTooLarge  = fmt.Errorf("%w: too large", ErrInvalid)                // a datagram, string or count above its limit
	ErrVersion   = fmt.Errorf("%w: unknown magic or version", ErrInvalid) // not a shmfs v1 datagram
	ErrBadName   = fmt.Errorf("%w: bad name", ErrInvalid)                 // domain, topic, memory file or text field
	ErrBadValue  = fmt.Errorf("%w: bad value", ErrInvalid)                // zero id, bad kind, pid <= 0, ...
)

// CheckTopic returns an error wrapping ErrBadName (and ErrInvalid) unless
// topic is a valid topic name: valid UTF-8, 1..255 bytes, no NUL or other
// control character, no '/', and not "." or "..". Topics become directory
// names in the filesystem; these rules make that safe.
func CheckTopic(topic string) error {
	if len(topic) == 0 || len(topic) > MaxTopic {
		return fmt.Errorf("%w: topic must be 1..%d bytes, got %d", ErrBadName, MaxTopic, len(topic))
	}
	if topic == "." || topic == ".." {
		return fmt.Errorf("%w: topic %q is reserved", ErrBadName, topic)
	}
	if strings.IndexByte(topic, '/') >= 0 {
		return fmt.Errorf("%w: topic %q contains '/'", ErrBadName, trunc(topic))
	}
	return checkText("topic", topic, MaxTopic)
}

// checkText accepts valid UTF-8 of at most max bytes without control
// characters (C0 and DEL): such strings are shown in files and terminals.
func checkText(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%w: %s is %d bytes, limit %d", ErrTooLarge, what, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s %q is not valid UTF-8", ErrBadName, what, trunc(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: %s %q contains control character %#x", ErrBadName, what, trunc(s), c)
		}
	}
	return nil
}

// sanitize turns a local string of unknown origin (host name, command name)
// into one that passes checkText.
func sanitize(s string, max int) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	for len(s) > max {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return s
}

// validate checks every field of an entity of a known kind.
func validate(e *Entity) error {
	if err := shmname.CheckDomain(e.Domain); err != nil {
		return fmt.Errorf("%w: %w", ErrBadName, err)
	}
	if e.Kind != KindPublisher && e.Kind != KindSubscriber {
		return fmt.Errorf("%w: kind %d", ErrBadValue, e.Kind)
	}
	if e.Instance == 0 || e.ID == 0 {
		return fmt.Errorf("%w: zero instance or entity id", ErrBadValue)
	}
	if e.PID <= 0 {
		return fmt.Errorf("%w: pid %d", ErrBadValue, e.PID)
	}
	if err := CheckTopic(e.Topic); err != nil {
		return err
	}
	for _, f := range []struct {
		what string
		s    string
		max  int
	}{
		{"host name", e.HostName, MaxHostName},
		{"machine id", e.MachineID, MaxMachineID},
		{"boot id", e.BootID, MaxMachineID},
		{"process name", e.ProcessName, MaxProcessName},
		{"type", e.Type, MaxType},
		{"encoding", e.Encoding, MaxEncoding},
		{"origin", e.Origin, MaxOrigin},
	} {
		if err := checkText(f.what, f.s, f.max); err != nil {
			return err
		}
	}
	if len(e.MemFiles) > MaxMemFiles {
		return fmt.Errorf("%w: %d memory files, limit %d", ErrTooLarge, len(e.MemFiles), MaxMemFiles)
	}
	if e.BufferCount > MaxMemFiles {
		return fmt.Errorf("%w: buffer count %d, limit %d", ErrBadValue, e.BufferCount, MaxMemFiles)
	}
	for _, m := range e.MemFiles {
		p, err := shmname.Parse(m)
		if err != nil {
			return fmt.Errorf("%w: memory file: %w", ErrBadName, err)
		}
		if p.Domain != e.Domain {
			return fmt.Errorf("%w: memory file %q is not in domain %q", ErrBadName, m, e.Domain)
		}
	}
	return nil
}

// trunc shortens hostile input before it goes into an error message.
func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
