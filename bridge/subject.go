package bridge

import (
	"fmt"
	"strings"
)

// Subjects. A topic travels on <prefix>.<domain>.<topic>; the bridges'
// announcements on <prefix>.<domain>.%bridge, which no topic escapes to
// ('%' is always followed by two upper-case hex digits), so that one
// subscription receives both in the order each bridge sent them (a
// publisher's removal never overtakes its last messages). Domain and topic
// are escaped into one subject token each: bytes other than A-Z a-z 0-9 '-'
// '_' become %XX (upper-case hex), so '.', '*', '>', white space, '%' and
// every non-ASCII byte are escaped and the mapping is reversible:
//
//	topic "camera"         -> shmfs.default.camera
//	topic "temp.celsius"   -> shmfs.default.temp%2Ecelsius
//	domain "lab.1"         -> shmfs.lab%2E1.<topic>

// DefaultPrefix is the first token(s) of every subject a bridge uses.
const DefaultPrefix = "shmfs"

// EscapeToken escapes s into one NATS subject token.
func EscapeToken(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if !plain(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		const hex = "0123456789ABCDEF"
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

func plain(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// UnescapeToken reverses EscapeToken. A token that EscapeToken cannot have
// produced (a byte that should have been escaped, a malformed or lower-case
// %XX) is an error: subjects come from the network.
func UnescapeToken(tok string) (string, error) {
	if tok == "" {
		return "", fmt.Errorf("%w: empty subject token", ErrInvalidMessage)
	}
	if !strings.Contains(tok, "%") {
		for i := 0; i < len(tok); i++ {
			if !plain(tok[i]) {
				return "", fmt.Errorf("%w: subject token %q has an unescaped byte %#x", ErrInvalidMessage, tok, tok[i])
			}
		}
		return tok, nil
	}
	out := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case plain(c):
			out = append(out, c)
		case c == '%' && i+2 < len(tok):
			hi, ok1 := unhex(tok[i+1])
			lo, ok2 := unhex(tok[i+2])
			v := hi<<4 | lo
			if !ok1 || !ok2 || plain(v) {
				return "", fmt.Errorf("%w: subject token %q: bad escape at byte %d", ErrInvalidMessage, tok, i)
			}
			out = append(out, v)
			i += 2
		default:
			return "", fmt.Errorf("%w: subject token %q: bad byte %#x at %d", ErrInvalidMessage, tok, c, i)
		}
	}
	return string(out), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// CheckPrefix validates a subject prefix: one or more tokens of
// A-Z a-z 0-9 '-' '_' separated by single dots.
func CheckPrefix(p string) error {
	if p == "" || len(p) > 128 {
		return fmt.Errorf("%w: subject prefix %q: 1..128 characters", ErrInvalidConfig, p)
	}
	for _, tok := range strings.Split(p, ".") {
		if tok == "" {
			return fmt.Errorf("%w: subject prefix %q has an empty token", ErrInvalidConfig, p)
		}
		for i := 0; i < len(tok); i++ {
			if !plain(tok[i]) {
				return fmt.Errorf("%w: subject prefix %q: only A-Z a-z 0-9 - _ and dots between tokens", ErrInvalidConfig, p)
			}
		}
	}
	return nil
}

// controlToken is the last token of the announcement subject.
const controlToken = "%bridge"

// subjects are the subjects of one prefix and domain.
type subjects struct {
	data    string // "<prefix>.<domain>." + topic token
	control string // "<prefix>.<domain>.%bridge"
}

func newSubjects(prefix, domain string) subjects {
	d := EscapeToken(domain)
	return subjects{data: prefix + "." + d + ".", control: prefix + "." + d + "." + controlToken}
}

// Subject returns the subject of a topic.
func (s subjects) Subject(topic string) string { return s.data + EscapeToken(topic) }

// wildcard is the subscription that receives every topic of the domain
// and the announcements.
func (s subjects) wildcard() string { return s.data + "*" }

// Topic returns the topic of a data subject.
func (s subjects) Topic(subject string) (string, error) {
	tok, ok := strings.CutPrefix(subject, s.data)
	if !ok || strings.Contains(tok, ".") {
		return "", fmt.Errorf("%w: subject %q is not <prefix>.<domain>.<topic>", ErrInvalidMessage, subject)
	}
	return UnescapeToken(tok)
}
