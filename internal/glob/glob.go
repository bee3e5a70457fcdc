// Package glob selects topics by shell patterns, for the forwarders (the
// NATS bridge, the eCAL gateway): `--export 'camera*' --import cmd`.
package glob

import (
	"fmt"
	"path"
	"strings"
)

// Patterns select names: shell globs as path.Match understands them ('*',
// '?', '[...]'), except that '*' and '?' also match '/' (eCAL topic names
// may contain it). No pattern matches nothing; {"*"} matches everything.
type Patterns []string

// Check reports the first malformed pattern.
func (p Patterns) Check() error {
	for _, s := range p {
		if _, err := path.Match(s, ""); err != nil {
			return fmt.Errorf("pattern %q: %w", s, err)
		}
	}
	return nil
}

// Match reports whether name matches any pattern.
func (p Patterns) Match(name string) bool {
	// path.Match treats '/' as a separator that no wildcard crosses: hide
	// it behind a byte no topic name or pattern holds.
	name = strings.ReplaceAll(name, "/", "\x01")
	for _, s := range p {
		if ok, _ := path.Match(strings.ReplaceAll(s, "/", "\x01"), name); ok {
			return true
		}
	}
	return false
}
