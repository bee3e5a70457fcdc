// Package tests holds black-box tests of what README.md promises: the
// commands of its examples run as written, as child processes, against a
// real mount, plus a chaos test that SIGKILLs publishers and subscribers.
package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

var (
	// shmfsBin is the shmfs binary built once by TestMain.
	shmfsBin string
	// goDir holds the go command; it is put first on the children's PATH
	// so that the README's `go run` works as written.
	goDir string
	// repoRoot is the module root, where README.md and .ci/run live.
	repoRoot string
)

// children are the test binary's re-executed roles (testutil.StartChild).
var children = map[string]func(args []string) int{
	"reader":        readerChild,
	"chaospub":      chaosPubChild,
	"chaossub":      chaosSubChild,
	"chaosmountpub": chaosMountPubChild,
	"chaosmountsub": chaosMountSubChild,
	"attacker":      attackerChild,
}

func TestMain(m *testing.M) {
	if testutil.IsChild() {
		testutil.Main(m, children) // runs the child and exits
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := filepath.Abs("..")
	if err == nil {
		_, err = os.Stat(filepath.Join(root, "go.mod"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests: module root not found:", err)
		return 1
	}
	repoRoot = root
	// The go command puts its own GOROOT/bin first on its children's PATH.
	goCmd, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests: go command not found:", err)
		return 1
	}
	goDir = filepath.Dir(goCmd)
	dir, err := os.MkdirTemp("", "shmfs-tests")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Tests run the binary as a second user too.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	shmfsBin = filepath.Join(dir, "shmfs")
	build := exec.Command(goCmd, "build", "-o", shmfsBin, "github.com/shmfs/shmfs/cmd/shmfs")
	build.Dir = repoRoot
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "tests: build shmfs:", err)
		return 1
	}
	return testutil.RunTests(m)
}

// env is a test's private domain and registration port.
type env struct {
	domain string
	port   int
}

func newEnv(t testing.TB) env {
	return env{domain: testutil.Domain(t), port: testutil.Port(t)}
}

// vars are the environment variables that select e.
func (e env) vars() []string {
	return []string{"SHMFS_DOMAIN=" + e.domain, "SHMFS_PORT=" + strconv.Itoa(e.port)}
}

// options runs a process (sh, go run, shmfs) in dir with vars: in its own
// process group, so that signals reach everything it started; without
// shmfs settings of this process (a developer's SHMFS_DOMAIN must not leak
// into a test); with goDir first on PATH.
func options(dir string, vars []string) testutil.Options {
	path := goDir
	if p := os.Getenv("PATH"); p != "" {
		path += string(os.PathListSeparator) + p
	}
	return testutil.Options{Dir: dir, CleanEnv: true, Group: true, Env: append([]string{"PATH=" + path}, vars...)}
}

// runSh runs one shell command line in dir to completion and returns its
// stdout; it fails the test unless sh exits 0 within timeout.
func runSh(t *testing.T, dir string, vars []string, line string, timeout time.Duration) string {
	t.Helper()
	r := testutil.Run(t, timeout, options(dir, vars), "sh", "-c", line)
	if r.Code != 0 {
		t.Fatalf("sh -c %q: exit status %d; stdout:\n%s\nstderr:\n%s", line, r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}
