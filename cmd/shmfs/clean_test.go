package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/shm"
	"github.com/shmfs/shmfs/internal/testutil"
)

// objectsOfPID returns the names of the domain's objects created by pid.
func objectsOfPID(t *testing.T, domain string, pid int) []string {
	t.Helper()
	infos, err := shm.List(domain)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, in := range infos {
		if int(in.Creator.ID.PID) == pid {
			out = append(out, in.Name)
		}
	}
	return out
}

// clean --dry-run lists the objects of a SIGKILLed publisher, doctor
// reports them, and clean removes exactly those while a live publisher's
// objects stay.
func TestClean(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	live := startShmfs(t, e.vars(), "pub", "--rate", "10", "--repeat", "0", "alive", "x")
	dead := startShmfs(t, e.vars(), "pub", "--rate", "10", "--repeat", "0", "doomed", "y")
	var liveObjs, deadObjs []string
	testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		liveObjs = objectsOfPID(t, e.domain, live.PID())
		deadObjs = objectsOfPID(t, e.domain, dead.PID())
		if len(liveObjs) == 0 || len(deadObjs) == 0 {
			return fmt.Errorf("publishers have %d and %d objects", len(liveObjs), len(deadObjs))
		}
		return nil
	})
	dead.Kill()
	if code := dead.ExitCode(t, 10*time.Second); code != -9 {
		t.Fatalf("killed pub: exit %d, want signal 9", code)
	}

	listed := func(out, verb string) []string {
		var names []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if rest, ok := strings.CutPrefix(l, verb+" "); ok {
				names = append(names, strings.Fields(rest)[0])
			} else if l != "" {
				t.Errorf("unexpected line %q", l)
			}
		}
		slices.Sort(names)
		return names
	}
	r := runShmfs(t, 30*time.Second, e.vars(), "", "clean", "--dry-run")
	if got := listed(r.stdout, "would remove"); r.code != 0 || !slices.Equal(got, deadObjs) {
		t.Fatalf("clean --dry-run: exit %d, listed %q, want %q; stderr %s", r.code, got, deadObjs, r.stderr)
	}
	if now := objectsOfPID(t, e.domain, dead.PID()); !slices.Equal(now, deadObjs) {
		t.Fatalf("--dry-run removed objects: %q left of %q", now, deadObjs)
	}

	r = runShmfs(t, 30*time.Second, e.vars(), "", "doctor")
	want := fmt.Sprintf("FAIL  stale objects: %d objects", len(deadObjs))
	if r.code != 1 || !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, "fix: shmfs clean --domain "+e.domain) {
		t.Errorf("doctor: exit %d, stdout lacks %q and its fix:\n%s", r.code, want, r.stdout)
	}

	r = runShmfs(t, 30*time.Second, e.vars(), "", "clean")
	if got := listed(r.stdout, "removed"); r.code != 0 || !slices.Equal(got, deadObjs) {
		t.Fatalf("clean: exit %d, removed %q, want %q; stderr %s", r.code, got, deadObjs, r.stderr)
	}
	if left := objectsOfPID(t, e.domain, dead.PID()); len(left) != 0 {
		t.Errorf("clean left %q", left)
	}
	if now := objectsOfPID(t, e.domain, live.PID()); !slices.Equal(now, liveObjs) {
		t.Errorf("live publisher's objects changed: %q, were %q", now, liveObjs)
	}
	r = runShmfs(t, 30*time.Second, e.vars(), "", "clean")
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "nothing to clean") {
		t.Errorf("second clean: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	live.Stop(t, 15*time.Second)
}
