package main

import (
	"strings"
	"testing"
	"time"
)

// An unreachable NATS server is a failure (exit 1) with one line that
// names it and the way out.
func TestBridgeUnreachable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := runShmfs(t, 30*time.Second, e.vars(), "", "bridge", "--nats", "nats://127.0.0.1:1")
	if r.code != exitFail || !strings.Contains(r.stderr, "nats://127.0.0.1:1") || !strings.Contains(r.stderr, "without --nats") ||
		strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

// The command starts, reports where it listens, and stops on SIGTERM with
// exit status 0 and its counters. (Bridging itself: the bridge package,
// and tests/ between two simulated hosts.)
func TestBridgeStartStop(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := startShmfs(t, e.vars(), "bridge", "--listen", "127.0.0.1:0")
	b.ExpectStderr(t, "via NATS embedded server nats://127.0.0.1:", 20*time.Second)
	b.Stop(t, 20*time.Second)
	if !strings.Contains(b.Stderr(), "out 0 messages") {
		t.Errorf("no counters at exit: %s", b.Stderr())
	}
}
