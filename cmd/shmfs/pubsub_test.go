package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

// A sub that is already running receives every message of a pub started
// after it, although pub exits right after sending: from arguments and
// from standard input.
func TestPubSubRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sub := startShmfs(t, e.vars(), "sub", "-v", "--count", "5", "--timeout", "60s", "greetings")
	sub.ExpectStderr(t, "subscribed", 20*time.Second)

	r := runShmfs(t, 30*time.Second, e.vars(), "", "pub", "greetings", "hello", "big world", "")
	if r.code != 0 {
		t.Fatalf("pub: exit %d: %s", r.code, r.stderr)
	}
	r = runShmfs(t, 30*time.Second, nil, "line one\nline two\n", append(e.flags(), "pub", "greetings")...)
	if r.code != 0 {
		t.Fatalf("pub from stdin: exit %d: %s", r.code, r.stderr)
	}
	got := sub.ReadLines(t, 5, 20*time.Second)
	want := []string{"hello", "big world", "", "line one", "line two"}
	if !slices.Equal(got, want) {
		t.Errorf("sub got %q, want %q", got, want)
	}
	if code := sub.ExitCode(t, 20*time.Second); code != 0 {
		t.Errorf("sub exit %d after --count, want 0; output:\n%s", code, sub.Transcript())
	}
}

// sub --format json prints one object per line with the header fields.
func TestSubJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bin := []byte{0xff, 0x00, 0xfe, 'x'}
	file := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(file, bin, 0o600); err != nil {
		t.Fatal(err)
	}
	sub := startShmfs(t, e.vars(), "sub", "-v", "--format", "json", "--count", "2", "--timeout", "60s", "--type", "blob", "data")
	sub.ExpectStderr(t, "subscribed", 20*time.Second)
	if r := runShmfs(t, 30*time.Second, e.vars(), "", "pub", "--type", "blob", "--id", "7", "data", "héllo"); r.code != 0 {
		t.Fatalf("pub: exit %d: %s", r.code, r.stderr)
	}
	if r := runShmfs(t, 30*time.Second, e.vars(), "", "pub", "--type", "blob", "--file", file, "data"); r.code != 0 {
		t.Fatalf("pub --file: exit %d: %s", r.code, r.stderr)
	}
	hex16 := regexp.MustCompile(`^[0-9a-f]{16}$`)
	var pubs []string
	for i, l := range sub.ReadLines(t, 2, 20*time.Second) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d %q is not JSON: %v", i, l, err)
		}
		for _, k := range []string{"topic", "publisher", "id", "clock", "time", "size", "hash", "dropped", "generation", "zero_copy", "ack_timeout_ms"} {
			if _, ok := m[k]; !ok {
				t.Errorf("line %d lacks %q: %s", i, k, l)
			}
		}
		var got struct {
			Topic      string    `json:"topic"`
			Publisher  string    `json:"publisher"`
			ID         int64     `json:"id"`
			Clock      uint64    `json:"clock"`
			Time       time.Time `json:"time"`
			Size       int       `json:"size"`
			AckTimeout int64     `json:"ack_timeout_ms"`
			Data       *string   `json:"data"`
			DataBase64 *string   `json:"data_base64"`
		}
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			t.Fatal(err)
		}
		if got.Topic != "data" || !hex16.MatchString(got.Publisher) || got.Clock != 1 || got.AckTimeout != 1000 {
			t.Errorf("line %d: topic %q publisher %q clock %d ack_timeout_ms %d", i, got.Topic, got.Publisher, got.Clock, got.AckTimeout)
		}
		if d := time.Since(got.Time); d < 0 || d > time.Minute {
			t.Errorf("line %d: time %v is not recent", i, got.Time)
		}
		pubs = append(pubs, got.Publisher)
		switch i {
		case 0:
			if got.ID != 7 || got.Data == nil || *got.Data != "héllo" || got.Size != len("héllo") || got.DataBase64 != nil {
				t.Errorf("text message decoded as %+v", got)
			}
		case 1:
			if got.DataBase64 == nil || got.Data != nil || got.Size != len(bin) {
				t.Fatalf("binary message decoded as %+v", got)
			}
			if b, err := base64.StdEncoding.DecodeString(*got.DataBase64); err != nil || !bytes.Equal(b, bin) {
				t.Errorf("data_base64 decodes to %x (%v), want %x", b, err, bin)
			}
		}
	}
	if len(pubs) == 2 && pubs[0] == pubs[1] {
		t.Errorf("two pub processes reported the same publisher id %s", pubs[0])
	}
	if code := sub.ExitCode(t, 20*time.Second); code != 0 {
		t.Errorf("sub exit %d", code)
	}
}

// sub --timeout with --count fails (exit 1) when too few messages came;
// --timeout alone is a listening period (exit 0).
func TestSubTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := runShmfs(t, 30*time.Second, e.vars(), "", "sub", "--count", "1", "--timeout", "300ms", "quiet")
	if r.code != 1 || !strings.Contains(r.stderr, "shmfs: sub: timed out after 300ms: received 0 of 1 messages") {
		t.Errorf("sub --count 1 --timeout: exit %d, stderr %q", r.code, r.stderr)
	}
	r = runShmfs(t, 30*time.Second, e.vars(), "", "sub", "--timeout", "300ms", "quiet")
	if r.code != 0 || r.stdout != "" {
		t.Errorf("sub --timeout: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// Ack mode makes every message reach every running subscriber process, in
// order, even when pub sends as fast as it can.
func TestPubSubEveryMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 2000
	var in strings.Builder
	want := make([]string, n)
	for i := range want {
		want[i] = strconv.Itoa(i)
		in.WriteString(want[i] + "\n")
	}
	var subs []*testutil.Child
	for range 2 {
		s := startShmfs(t, e.vars(), "sub", "-v", "--count", strconv.Itoa(n), "--timeout", "60s", "bulk")
		s.ExpectStderr(t, "subscribed", 20*time.Second)
		subs = append(subs, s)
	}
	if r := runShmfs(t, 60*time.Second, e.vars(), in.String(), "pub", "bulk"); r.code != 0 || r.stderr != "" {
		t.Fatalf("pub: exit %d: %s", r.code, r.stderr)
	}
	for i, s := range subs {
		if got := s.ReadLines(t, n, 30*time.Second); !slices.Equal(got, want) {
			t.Errorf("sub %d got %d messages, first difference at %d", i, len(got), firstDiff(got, want))
		}
		if code := s.ExitCode(t, 20*time.Second); code != 0 {
			t.Errorf("sub %d: exit %d", i, code)
		}
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
