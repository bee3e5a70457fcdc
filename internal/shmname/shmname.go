// Package shmname builds and checks the names of shmfs objects in /dev/shm.
//
// Every object is named
//
//	shmfs_<domain>_<id>[_<suffix>...]
//
// where domain matches [A-Za-z0-9][A-Za-z0-9.-]{0,31}, id is 16 lowercase hex
// digits of a random 64-bit number, and each suffix is [a-z0-9]{1,16}.
// Topic names never become file names; PIDs never appear in names (processes
// in different PID namespaces may share /dev/shm).
package shmname

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

const (
	// Prefix starts every shmfs object name.
	Prefix = "shmfs_"
	// Dir is where POSIX shared memory lives on Linux.
	Dir = "/dev/shm"
	// MaxDomainLen bounds a domain name.
	MaxDomainLen = 32
	// MaxLen bounds a whole object name (well under NAME_MAX 255).
	MaxLen = 128
	// DefaultDomain is used when neither a flag nor SHMFS_DOMAIN names one.
	DefaultDomain = "default"
)

// ErrInvalid reports a malformed domain, id, suffix or object name.
var ErrInvalid = errors.New("shmname: invalid name")

// CheckDomain returns an error wrapping ErrInvalid unless d is a valid domain.
func CheckDomain(d string) error {
	if len(d) == 0 || len(d) > MaxDomainLen {
		return fmt.Errorf("%w: domain %q must be 1..%d characters", ErrInvalid, trunc(d), MaxDomainLen)
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		ok := isAlnum(c) || (i > 0 && (c == '.' || c == '-'))
		if !ok {
			return fmt.Errorf("%w: domain %q: character %q not allowed (use A-Z a-z 0-9 . -)", ErrInvalid, trunc(d), c)
		}
	}
	return nil
}

// Object returns the name of an object of domain d with id and suffixes.
// It panics only on programming errors (invalid suffix); domains must have
// been checked with CheckDomain.
func Object(domain string, id uint64, suffixes ...string) string {
	var b strings.Builder
	b.WriteString(Prefix)
	b.WriteString(domain)
	b.WriteByte('_')
	b.WriteString(Hex(id))
	for _, s := range suffixes {
		b.WriteByte('_')
		b.WriteString(s)
	}
	return b.String()
}

// Hex formats an id as exactly 16 lowercase hex digits.
func Hex(id uint64) string {
	s := strconv.FormatUint(id, 16)
	return strings.Repeat("0", 16-len(s)) + s
}

// Parsed is a name split into its parts.
type Parsed struct {
	Domain   string
	ID       uint64
	Suffixes []string
}

// Parse splits and validates an object name (without directory). Any name
// received from another process (registration, directory listings) goes
// through Parse before it is used.
func Parse(name string) (Parsed, error) {
	var p Parsed
	if len(name) > MaxLen {
		return p, fmt.Errorf("%w: name longer than %d bytes", ErrInvalid, MaxLen)
	}
	rest, ok := strings.CutPrefix(name, Prefix)
	if !ok {
		return p, fmt.Errorf("%w: %q lacks prefix %q", ErrInvalid, trunc(name), Prefix)
	}
	parts := strings.Split(rest, "_")
	if len(parts) < 2 {
		return p, fmt.Errorf("%w: %q has no id", ErrInvalid, trunc(name))
	}
	if err := CheckDomain(parts[0]); err != nil {
		return p, err
	}
	id, err := parseHex(parts[1])
	if err != nil {
		return p, fmt.Errorf("%w: %q: id: %v", ErrInvalid, trunc(name), err)
	}
	for _, s := range parts[2:] {
		if err := CheckSuffix(s); err != nil {
			return p, err
		}
	}
	p.Domain, p.ID, p.Suffixes = parts[0], id, parts[2:]
	return p, nil
}

// CheckSuffix validates one suffix: 1..16 characters of [a-z0-9].
func CheckSuffix(s string) error {
	if len(s) == 0 || len(s) > 16 {
		return fmt.Errorf("%w: suffix %q must be 1..16 characters", ErrInvalid, trunc(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return fmt.Errorf("%w: suffix %q: character %q not allowed", ErrInvalid, trunc(s), c)
		}
	}
	return nil
}

// Path returns the absolute path of a validated name.
func Path(name string) string { return Dir + "/" + name }

func parseHex(s string) (uint64, error) {
	if len(s) != 16 {
		return 0, errors.New("want 16 hex digits")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return 0, errors.New("want lowercase hex digits")
		}
	}
	return strconv.ParseUint(s, 16, 64)
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// trunc shortens hostile input before it goes into an error message.
func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
