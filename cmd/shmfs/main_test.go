package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

// shmfsBin is the shmfs binary built once by TestMain; the tests run it as
// child processes, the way users do.
var shmfsBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shmfs-cmd-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shmfsBin = filepath.Join(dir, "shmfs")
	build := exec.Command("go", "build", "-o", shmfsBin, "github.com/shmfs/shmfs/cmd/shmfs")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build shmfs:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := testutil.RunTests(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is a test's domain and port, passed as environment variables.
type env struct {
	domain string
	port   int
}

func newEnv(t *testing.T) env {
	return env{domain: testutil.Domain(t), port: testutil.Port(t)}
}

func (e env) vars() []string {
	return []string{"SHMFS_DOMAIN=" + e.domain, "SHMFS_PORT=" + strconv.Itoa(e.port)}
}

// flags passes the domain and port as flags instead.
func (e env) flags() []string {
	return []string{"--domain", e.domain, "--port", strconv.Itoa(e.port)}
}

// result of a finished shmfs run.
type result struct {
	stdout, stderr string
	code           int
}

// runShmfs runs shmfs to completion (failing the test after timeout) with
// extra environment variables and stdin.
func runShmfs(t *testing.T, timeout time.Duration, vars []string, stdin string, args ...string) result {
	t.Helper()
	r := testutil.Run(t, timeout, testutil.Options{Env: vars, CleanEnv: true, Stdin: strings.NewReader(stdin)}, shmfsBin, args...)
	return result{r.Stdout, r.Stderr, r.Code}
}

// startShmfs starts shmfs in the background. At test cleanup it gets
// SIGTERM (so that it releases its shared memory) and, if it does not exit
// within 10 s (which fails the test), SIGKILL.
func startShmfs(t *testing.T, vars []string, args ...string) *testutil.Child {
	t.Helper()
	return testutil.Start(t, testutil.Options{Env: vars, CleanEnv: true, StopSignal: syscall.SIGTERM}, shmfsBin, args...)
}
