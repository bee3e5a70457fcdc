package testutil

import (
	"bytes"
	"strings"
	"sync"
	"time"
)

// stream is one output (stdout or stderr) of a Child: every byte it
// printed, split into lines that Line-like readers take one by one. It
// never blocks the writer and keeps everything (no line is dropped however
// many pile up unread), so a chatty process never stalls on a full pipe.
type stream struct {
	log        func(line string) // called with each line (stderr: the test log), or nil
	transcript *transcript       // gets each line too, for failure messages
	prefix     string            // of this stream's lines in the transcript

	mu      sync.Mutex
	raw     bytes.Buffer
	partial []byte // the unterminated last line so far
	lines   []string
	next    int           // index of the first line not taken yet
	eof     bool          // the output ended
	changed chan struct{} // closed (and replaced) when a line arrives or the output ends
}

func newStream(tr *transcript, prefix string, log func(string)) *stream {
	return &stream{log: log, transcript: tr, prefix: prefix, changed: make(chan struct{})}
}

// Write is the process's output arriving.
func (s *stream) Write(p []byte) (int, error) {
	n := len(p)
	s.mu.Lock()
	s.raw.Write(p)
	var got []string
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.partial = append(s.partial, p...)
			break
		}
		got = append(got, string(append(s.partial, p[:i]...)))
		s.partial = s.partial[:0]
		p = p[i+1:]
	}
	s.add(got)
	s.mu.Unlock()
	s.forward(got)
	return n, nil
}

// close marks the end of the output; an unterminated last line counts as a
// line.
func (s *stream) close() {
	s.mu.Lock()
	var got []string
	if len(s.partial) > 0 {
		got = []string{string(s.partial)}
		s.partial = nil
	}
	s.add(got)
	s.eof = true
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	s.forward(got)
}

// add appends lines and wakes waiting readers; s.mu is held.
func (s *stream) add(lines []string) {
	if len(lines) == 0 {
		return
	}
	s.lines = append(s.lines, lines...)
	for _, l := range lines {
		s.transcript.add(s.prefix + l)
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *stream) forward(lines []string) {
	if s.log == nil {
		return
	}
	for _, l := range lines {
		s.log(l)
	}
}

// take returns the next line not taken yet. ok is false when the output
// ended without one (eof) or when stop fired first (!eof).
func (s *stream) take(stop <-chan time.Time, abandon <-chan struct{}) (line string, ok, eof bool) {
	for {
		s.mu.Lock()
		if s.next < len(s.lines) {
			l := s.lines[s.next]
			s.next++
			s.mu.Unlock()
			return l, true, false
		}
		if s.eof {
			s.mu.Unlock()
			return "", false, true
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-stop:
			return "", false, false
		case <-abandon:
			return "", false, false
		}
	}
}

// text returns everything printed so far, byte for byte.
func (s *stream) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.raw.String()
}

// transcript is stdout and stderr line by line in the order they arrived,
// for failure messages.
type transcript struct {
	mu sync.Mutex
	b  strings.Builder
}

func (tr *transcript) add(line string) {
	tr.mu.Lock()
	tr.b.WriteString(line + "\n")
	tr.mu.Unlock()
}

func (tr *transcript) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.b.String()
}
