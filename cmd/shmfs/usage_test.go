package main

import (
	"strings"
	"testing"
	"time"
)

// Usage errors exit 2 with one line on stderr that names the cause.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		vars []string
		want string // in stderr
	}{
		{nil, nil, "Usage:"},
		{[]string{"bogus"}, nil, `shmfs: unknown command "bogus" (see 'shmfs help')`},
		{[]string{"pub"}, nil, "shmfs: pub: missing TOPIC"},
		{[]string{"sub", "a/b"}, nil, `shmfs: sub: invalid topic "a/b": '/' not allowed`},
		{[]string{"sub"}, nil, "shmfs: sub: missing TOPIC"},
		{[]string{"sub", "a", "b"}, nil, "too many arguments"},
		{[]string{"sub", "--count", "-1", "t"}, nil, "--count -1 is negative"},
		{[]string{"sub", "--format", "xml", "t"}, nil, `--format "xml": want text, hex or json`},
		{[]string{"sub", "--bogus", "t"}, nil, "unknown flag: --bogus"},
		{[]string{"sub", "--timeout", "soon", "t"}, nil, `invalid argument "soon"`},
		{[]string{"pub", "--file", "x", "t", "msg"}, nil, "--file and MSG arguments exclude each other"},
		{[]string{"pub", "--rate", "-1", "t", "m"}, nil, "--rate -1 must be >= 0"},
		{[]string{"pub", "--repeat", "3", "t"}, nil, "--repeat needs MSG arguments"},
		{[]string{"hz", "--window", "0", "t"}, nil, "--window 0 must be at least 1"},
		{[]string{"--domain", "bad domain", "ls"}, nil, `shmfs: ls: invalid domain "bad domain"`},
		{[]string{"ls", "--domain", "_x"}, nil, `invalid domain "_x"`},
		{[]string{"ls"}, []string{"SHMFS_PORT=abc"}, `SHMFS_PORT="abc" is not a port number`},
		{[]string{"ls", "--port", "70000"}, nil, "--port 70000 out of range"},
		// 0 and "" given explicitly are errors, as SHMFS_PORT=0 is.
		{[]string{"pub", "--port", "0", "t", "m"}, nil, "shmfs: pub: --port 0 out of range (1..65535)"},
		{[]string{"--port", "0", "ls"}, nil, "shmfs: --port 0 out of range (1..65535)"},
		{[]string{"ls"}, []string{"SHMFS_PORT=0"}, `SHMFS_PORT="0" is not a port number`},
		{[]string{"ls", "--domain", ""}, nil, `shmfs: ls: invalid domain ""`},
		{[]string{"--domain=", "ls"}, nil, `shmfs: invalid domain ""`},
		// Core's topic check, said once (no "registration: invalid: bad name").
		{[]string{"sub", "."}, nil, `shmfs: sub: subscribe to ".": invalid topic name: topic "." is reserved (see 'shmfs sub --help')`},
		{[]string{"ls", "extra"}, nil, "unexpected arguments"},
		{[]string{"mount"}, nil, "shmfs: mount: missing MOUNTPOINT"},
		{[]string{"mount", "--ecal-import", "x", "/tmp/m"}, nil, "shmfs: mount: --ecal-import needs --ecal"},
		{[]string{"mount", "--umask", "9", "/tmp/m"}, nil, `shmfs: mount: --umask "9": want an octal mode 0..777`},
		{[]string{"umount"}, nil, "shmfs: umount: want one MOUNTPOINT, got 0 arguments"},
		{[]string{"ecal", "--import", "[x"}, nil, `shmfs: ecal: --import: pattern "[x": syntax error in pattern`},
		{[]string{"ecal", "--ecal-port", "0"}, nil, "--ecal-port 0 out of range"},
		{[]string{"ecal", "--ecal-buffers", "0"}, nil, "--ecal-buffers 0 out of range (1..64)"},
		{[]string{"ecal", "--condvar-layout", "new"}, nil, `--condvar-layout "new": want auto or grefs`},
		{[]string{"ecal", "--ecal-ack-timeout", "-1s"}, nil, "must not be negative"},
		{[]string{"ecal", "extra"}, nil, "unexpected arguments"},
		{[]string{"bridge", "--import", "[x"}, nil, `shmfs: bridge: --import: pattern "[x": syntax error in pattern`},
		{[]string{"bridge", "--listen", "0.0.0.0:4222"}, nil, "no authentication is set"},
		{[]string{"bridge", "--nats", "nats://127.0.0.1:1", "--listen", "127.0.0.1:1"}, nil, "--listen configures the embedded server"},
		{[]string{"bridge", "--user", "u"}, nil, "user and password go together"},
		{[]string{"bridge", "--prefix", "a..b"}, nil, `subject prefix "a..b" has an empty token`},
		{[]string{"bridge", "--routes", "http://x"}, nil, `route "http://x": want nats-route://HOST:PORT`},
		{[]string{"bridge", "extra"}, nil, "unexpected arguments"},
		{[]string{"help", "bogus"}, nil, `unknown command "bogus"`},
		{[]string{"--nope"}, nil, "unknown flag: --nope"},
	}
	for _, tc := range cases {
		r := runShmfs(t, 10*time.Second, tc.vars, "", tc.args...)
		if r.code != exitUsage {
			t.Errorf("shmfs %q: exit %d, want %d; stderr: %s", tc.args, r.code, exitUsage, r.stderr)
		}
		if !strings.Contains(r.stderr, tc.want) {
			t.Errorf("shmfs %q: stderr %q lacks %q", tc.args, r.stderr, tc.want)
		}
		if tc.args != nil && strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("shmfs %q: error is not one line: %q", tc.args, r.stderr)
		}
		if r.stdout != "" {
			t.Errorf("shmfs %q: usage error wrote to stdout: %q", tc.args, r.stdout)
		}
	}
}

// Every command has --help with examples (exit 0, on stdout), and
// 'shmfs help CMD' shows the same.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, c := range commands {
		r := runShmfs(t, 10*time.Second, nil, "", c.name, "--help")
		if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: shmfs "+c.name) || !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("shmfs %s --help: exit %d, stdout:\n%s\nstderr: %s", c.name, r.code, r.stdout, r.stderr)
		}
		if c.name != "help" && c.name != "version" && !strings.Contains(r.stdout, "--domain") {
			t.Errorf("shmfs %s --help does not list the global flags:\n%s", c.name, r.stdout)
		}
		h := runShmfs(t, 10*time.Second, nil, "", "help", c.name)
		if h.code != 0 || h.stdout != r.stdout {
			t.Errorf("shmfs help %s differs from --help (exit %d):\n%s", c.name, h.code, h.stdout)
		}
	}
	r := runShmfs(t, 10*time.Second, nil, "", "--help")
	for _, c := range commands {
		if !strings.Contains(r.stdout, "  "+c.name+" ") {
			t.Errorf("shmfs --help does not list %s:\n%s", c.name, r.stdout)
		}
	}
	v := runShmfs(t, 10*time.Second, nil, "", "version")
	if v.code != 0 || !strings.HasPrefix(v.stdout, "shmfs ") {
		t.Errorf("shmfs version: exit %d, %q", v.code, v.stdout)
	}
}
