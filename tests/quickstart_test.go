package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

// TestReadmeQuickStart runs README.md's "Quick start" as written: the main
// job (`go run ./cmd/shmfs mount /tmp/shmfs`) from the repository root on a
// mountpoint that does not exist yet, then the "With the mount running"
// block line by line inside the mount, then Ctrl-C. It also checks that
// .ci/run calls the README's test command.
func TestReadmeQuickStart(t *testing.T) {
	blocks := readmeBlocks(t, "Quick start")
	if len(blocks) < 2 || len(blocks[0]) < 2 {
		t.Fatalf("README Quick start: want a ```sh block with the main job and the test command, then the shell block; got %q", blocks)
	}
	mainCmd, testCmd := blocks[0][0], blocks[0][1]

	ci, err := os.ReadFile(filepath.Join(repoRoot, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	if !callsCommand(string(ci), testCmd) {
		t.Errorf(".ci/run does not run the README's test command %q verbatim (README: \"what .ci/run runs\")", testCmd)
	}

	requireFUSE(t)
	const readmeMP = "/tmp/shmfs"
	if !strings.HasPrefix(mainCmd, "go run ./cmd/shmfs mount ") || !strings.Contains(mainCmd, readmeMP) {
		t.Fatalf("README main job %q: want `go run ./cmd/shmfs mount %s`", mainCmd, readmeMP)
	}
	e := newEnv(t)
	mp := filepath.Join(t.TempDir(), "shmfs") // does not exist: mount creates it
	// exec: like an interactive shell, whose foreground job gets Ctrl-C
	// directly (a non-interactive sh in between would die of the SIGINT
	// itself instead of reporting the job's exit status).
	mount := startMountProcess(t, e, mp, repoRoot, "sh", "-c", "exec "+strings.ReplaceAll(mainCmd, readmeMP, mp))
	start := time.Now()
	waitMounted(t, mount, e, mp, 90*time.Second) // go run compiles first
	t.Logf("go run: mounted after %v", time.Since(start).Round(time.Millisecond))

	var reader *testutil.Child
	var header string
	for _, line := range blocks[1] {
		line = strings.ReplaceAll(line, readmeMP, mp)
		if bg, ok := strings.CutSuffix(line, "&"); ok {
			if reader != nil {
				t.Fatalf("test handles one background command, README has another: %q", line)
			}
			reader = testutil.Start(t, options(mp, e.vars()), "sh", "-c", strings.TrimSpace(bg))
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
		out := runSh(t, mp, e.vars(), line, 10*time.Second)
		if strings.HasPrefix(line, "cat greetings/header") {
			header = out
		}
	}
	if reader == nil {
		t.Fatal("README block has no background subscriber (`cat greetings/data &`)")
	}
	if got := reader.Line(t, 5*time.Second); got != "hello" {
		t.Errorf("background cat printed %q, want \"hello\"", got)
	}
	checkHeader(t, header, "greetings")

	// Ctrl-C: the terminal signals the whole foreground group (go run and
	// the mount it started). The background cat still reads.
	mount.Signal(syscall.SIGINT)
	code := mount.ExitCode(t, 10*time.Second)
	// go run itself exits 1 after an interrupt whatever its program did
	// (cmd/go's builder sets exit status 1 on SIGINT); it reports a
	// program's failure as "exit status N" on stderr.
	if strings.Contains(mount.Transcript(), "exit status") {
		t.Errorf("the mount failed after SIGINT; output:\n%s", mount.Transcript())
	}
	t.Logf("%q exited with status %d after SIGINT", mainCmd, code)
	if mounted(mp) {
		t.Errorf("%s still mounted after Ctrl-C", mp)
	}
	if left := testutil.ShmObjects(e.domain); len(left) > 0 {
		t.Errorf("after Ctrl-C %d objects are left in /dev/shm: %v", len(left), left)
	}
	// Its blocked read ended with the mount (end of file or an error).
	t.Logf("background cat exited with status %d after the unmount", reader.ExitCode(t, 10*time.Second))
}

// callsCommand reports whether a non-comment line of script contains cmd.
func callsCommand(script, cmd string) bool {
	for _, l := range strings.Split(script, "\n") {
		if strings.Contains(stripComment(l), cmd) {
			return true
		}
	}
	return false
}

var headerLine = regexp.MustCompile(`^[a-z][a-z-]*: \S`)

// checkHeader checks a T/header text: key: value lines naming the topic
// and the latest message.
func checkHeader(t *testing.T, text, topic string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	keys := map[string]string{}
	for _, l := range lines {
		if !headerLine.MatchString(l) {
			t.Errorf("header line %q is not `key: value`; header:\n%s", l, text)
			continue
		}
		k, v, _ := strings.Cut(l, ": ")
		keys[k] = v
	}
	if keys["topic"] != topic {
		t.Errorf("header: topic %q, want %q; header:\n%s", keys["topic"], topic, text)
	}
	if keys["size"] != "6" { // "hello\n"
		t.Errorf("header: size %q of the latest message, want 6 (hello\\n); header:\n%s", keys["size"], text)
	}
}
