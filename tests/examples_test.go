package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

// helpExamples returns the example lines of `shmfs CMD --help`, comments
// stripped.
func helpExamples(t *testing.T, cmd string) []string {
	t.Helper()
	r := testutil.Run(t, 10*time.Second, options(repoRoot, nil), shmfsBin, cmd, "--help")
	_, ex, ok := strings.Cut(r.Stdout, "\nExamples:\n")
	if r.Code != 0 || !ok {
		t.Fatalf("shmfs %s --help: exit %d, no Examples:\n%s", cmd, r.Code, r.Stdout)
	}
	var lines []string
	for _, l := range strings.Split(ex, "\n") {
		if !strings.HasPrefix(l, "  ") {
			break
		}
		if l = stripComment(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// docBlock returns the ```sh block of docs/FILE that follows the line
// containing marker, comments stripped.
func docBlock(t *testing.T, file, marker string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", file))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), marker)
	_, rest, ok2 := strings.Cut(rest, "```sh\n")
	block, _, ok3 := strings.Cut(rest, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatalf("docs/%s: no ```sh block after %q", file, marker)
	}
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		if l = stripComment(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// TestMountHelpExamples runs the examples of `shmfs mount --help` as
// written, with a private directory for /tmp/shmfs and /run/shmfs: the
// session from `mount --background` to `shmfs umount` line by line (a
// background `cat ... &` is waited for until it has opened its file, as
// the README's tests do), then each other mount line in the foreground
// until it serves, stopped with Ctrl-C. docs/cli.md shows the same session.
func TestMountHelpExamples(t *testing.T) {
	requireFUSE(t)
	lines := helpExamples(t, "mount")
	end := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "shmfs umount ") {
			end = i
		}
	}
	if end < 0 {
		t.Fatalf("shmfs mount --help: no session ending in shmfs umount: %q", lines)
	}
	session, variants := lines[:end+1], lines[end+1:]
	if doc := docBlock(t, "cli.md", "The examples of `shmfs mount --help`"); strings.Join(doc, "\n") != strings.Join(session, "\n") {
		t.Errorf("docs/cli.md's mount example differs from shmfs mount --help:\n%s\nvs\n%s", strings.Join(doc, "\n"), strings.Join(session, "\n"))
	}

	e := newEnv(t)
	dir := t.TempDir()
	mp := filepath.Join(dir, "shmfs")
	vars := append(e.vars(), "PATH="+filepath.Dir(shmfsBin)+":"+goDir+":"+os.Getenv("PATH"))
	t.Cleanup(func() { // a failed test may leave the background server
		if mounted(mp) {
			testutil.Run(t, 20*time.Second, options(dir, vars), shmfsBin, "umount", mp)
		}
	})
	var reader *testutil.Child
	var header string
	for _, line := range session {
		line = strings.ReplaceAll(line, "/tmp/shmfs", mp)
		if bg, ok := strings.CutSuffix(line, "&"); ok {
			reader = testutil.Start(t, options(dir, vars), "sh", "-c", strings.TrimSpace(bg))
			testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
				if done, _ := reader.Exited(); done {
					t.Fatalf("%q exited: %s", line, reader.Transcript())
				}
				if !reader.HasOpen(mp) {
					return fmt.Errorf("%q has not opened a file in the mount yet", line)
				}
				return nil
			})
			continue
		}
		out := runSh(t, dir, vars, line, 30*time.Second)
		if strings.HasPrefix(line, "cat ") && strings.HasSuffix(line, "/header") {
			header = out
		}
		if strings.HasPrefix(line, "shmfs mount --background ") && !mounted(mp) {
			t.Fatalf("%q returned, but %s is not mounted", line, mp)
		}
	}
	if reader == nil {
		t.Fatal("the session has no background reader")
	}
	if out := reader.Output(); out != "hello\n" {
		t.Errorf("the background cat printed %q, want \"hello\\n\"", out)
	}
	if code := reader.ExitCode(t, 10*time.Second); code != 0 {
		t.Errorf("the background cat: exit %d after shmfs umount, want 0 (end of file)", code)
	}
	checkHeader(t, header, "greetings")
	if mounted(mp) {
		t.Errorf("%s still mounted after the session", mp)
	}
	if left := testutil.ShmObjects(e.domain); len(left) > 0 {
		t.Errorf("the session left %v in /dev/shm", left)
	}

	for i, line := range variants {
		vmp := filepath.Join(dir, fmt.Sprintf("v%d", i))
		line = strings.ReplaceAll(strings.ReplaceAll(line, "/tmp/shmfs", vmp), "/run/shmfs", vmp)
		args := strings.Fields(strings.ReplaceAll(line, "'", ""))
		if args[0] != "shmfs" {
			t.Fatalf("example %q does not start with shmfs", line)
		}
		ve := e
		if i := indexOf(args, "--domain"); i >= 0 {
			ve.domain = args[i+1] // its own domain: the mount must find that one in .shmfs
		}
		p := startMountProcess(t, ve, vmp, dir, shmfsBin, args[1:]...)
		waitMounted(t, p, ve, vmp, 20*time.Second)
		p.Signal(syscall.SIGINT)
		if code := p.ExitCode(t, 10*time.Second); code != 0 {
			t.Errorf("%q: exit %d after Ctrl-C; output:\n%s", line, code, p.Transcript())
		}
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
