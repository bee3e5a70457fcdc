package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

// TestReadmeGoAPIFromAnotherModule follows README.md's "From Go" on using
// the module from another one, as written (/path/to/shmfs is this
// checkout): each ```sh block of the section is run in a fresh module
// whose program imports core and fs, which must then build. Offline:
// modules come from the module cache (GOPROXY=off, GOSUMDB=off).
func TestReadmeGoAPIFromAnotherModule(t *testing.T) {
	blocks := readmeBlocks(t, "From Go")
	if len(blocks) < 2 {
		t.Fatalf("README From Go: want the workspace and the replace blocks, got %q", blocks)
	}
	const prog = `package main

import (
	"fmt"

	"github.com/shmfs/shmfs/core"
	shmfs "github.com/shmfs/shmfs/fs"
)

func main() { fmt.Println(core.ErrClosed, shmfs.DefaultAckTimeout) }
`
	for i, block := range blocks {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(prog), 0o644); err != nil {
			t.Fatal(err)
		}
		vars := []string{"GOPROXY=off", "GOSUMDB=off", "GOFLAGS=", "GOWORK=", "HOME=" + os.Getenv("HOME"), "GOPATH=" + goEnv(t, "GOPATH"), "GOCACHE=" + goEnv(t, "GOCACHE")}
		runSh(t, dir, vars, "go mod init example.com/app", time.Minute)
		for _, line := range block {
			runSh(t, dir, vars, strings.ReplaceAll(line, "/path/to/shmfs", repoRoot), 2*time.Minute)
		}
		if r := testutil.Run(t, 3*time.Minute, options(dir, vars), "go", "build", "-o", filepath.Join(dir, "app"), "."); r.Code != 0 {
			t.Errorf("README block %d %q: go build: %s", i+1, block, r.Stderr)
		}
	}
}

// goEnv returns `go env NAME` of this test's environment.
func goEnv(t *testing.T, name string) string {
	t.Helper()
	r := testutil.Run(t, time.Minute, options(repoRoot, nil), "go", "env", name)
	return strings.TrimSpace(r.Stdout)
}
