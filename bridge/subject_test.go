package bridge

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestEscapeToken(t *testing.T) {
	for in, want := range map[string]string{
		"camera":       "camera",
		"temp.celsius": "temp%2Ecelsius",
		"a b*c>d":      "a%20b%2Ac%3Ed",
		"100%":         "100%25",
		"grüße":        "gr%C3%BC%C3%9Fe",
		"x_y-z":        "x_y-z",
	} {
		if got := EscapeToken(in); got != want {
			t.Errorf("EscapeToken(%q) = %q, want %q", in, got, want)
		}
		back, err := UnescapeToken(want)
		if err != nil || back != in {
			t.Errorf("UnescapeToken(%q) = %q, %v", want, back, err)
		}
	}
	for _, bad := range []string{"", "a.b", "a%2", "a%2e", "a%41", "a b", "%zz", "*", ">"} {
		if _, err := UnescapeToken(bad); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("UnescapeToken(%q): %v, want ErrInvalidMessage", bad, err)
		}
	}
	s := newSubjects("shmfs", "lab.1")
	if got := s.Subject("a.b"); got != "shmfs.lab%2E1.a%2Eb" {
		t.Errorf("subject %q", got)
	}
	if topic, err := s.Topic("shmfs.lab%2E1.a%2Eb"); err != nil || topic != "a.b" {
		t.Errorf("topic %q %v", topic, err)
	}
	for _, bad := range []string{"shmfs.lab%2E1.a.b", "shmfs.other.a", "shmfs.lab%2E1."} {
		if _, err := s.Topic(bad); err == nil {
			t.Errorf("Topic(%q) accepted", bad)
		}
	}
	for _, p := range []string{"shmfs", "site-1.shmfs", "a_b"} {
		if err := CheckPrefix(p); err != nil {
			t.Errorf("CheckPrefix(%q): %v", p, err)
		}
	}
	for _, p := range []string{"", "a..b", ".a", "a.", "a*", "a b", "a>"} {
		if err := CheckPrefix(p); err == nil {
			t.Errorf("CheckPrefix(%q) accepted", p)
		}
	}
}

// Every token unescapes to what it was made from, and no escaped token
// holds a byte NATS subjects cannot carry.
func FuzzEscapeToken(f *testing.F) {
	for _, s := range []string{"camera", "a.b", "%", "\x00\xff", "grüße"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok := EscapeToken(s)
		for i := 0; i < len(tok); i++ {
			if !plain(tok[i]) && tok[i] != '%' {
				t.Fatalf("EscapeToken(%q) = %q holds %q", s, tok, tok[i])
			}
		}
		back, err := UnescapeToken(tok)
		if s != "" && (err != nil || back != s) {
			t.Fatalf("round trip of %q: %q, %v", s, back, err)
		}
		_, _ = UnescapeToken(s) // never panics
	})
}

func TestParseMeta(t *testing.T) {
	good := meta{bridge: 1, origin: "a", publisher: 2, typ: "text", id: -3, clock: 4, time: 5, sent: 6, lost: 7}
	m, err := parseMeta(good.header(), 10)
	if err != nil || m != good {
		t.Fatalf("round trip: %+v, %v", m, err)
	}
	split := good
	split.part, split.of, split.size = 1, 3, 3000
	if m, err := parseMeta(split.header(), 1000); err != nil || m != split {
		t.Fatalf("split round trip: %+v, %v", m, err)
	}
	mutate := func(k string, v ...string) nats.Header {
		h := split.header()
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
		return h
	}
	for name, h := range map[string]nats.Header{
		"no clock":      mutate(hClock),
		"clock 0":       mutate(hClock, "0"),
		"two clocks":    mutate(hClock, "1", "2"),
		"bad publisher": mutate(hPublisher, "xyz"),
		"zero bridge":   mutate(hBridge, "0000000000000000"),
		"empty origin":  mutate(hOrigin, ""),
		"bad part":      mutate(hPart, "3/3"),
		"part spaces":   mutate(hPart, " 1/3"),
		"one part":      mutate(hPart, "0/1"),
		"huge size":     mutate(hSize, "999999999999"),
		"no size":       mutate(hSize),
		"negative lost": mutate(hLost, "-1"),
		"bad id":        mutate(hID, "1.5"),
		"nil":           nil,
	} {
		if _, err := parseMeta(h, 1000); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: %v, want ErrInvalidMessage", name, err)
		}
	}
	if _, err := parseMeta(good.header(), MaxMessage+1); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized message: %v", err)
	}
}
