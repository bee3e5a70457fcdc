package testutil_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

// Two simulated hosts have their own host names, /dev/shm and addresses,
// . (That they reach each other over their link: the bridge tests in
// tests/.)
func TestHosts(t *testing.T) {
	t.Parallel()
	a, b := testutil.NewHost(t, "a"), testutil.NewHost(t, "b")
	testutil.LinkHosts(t, a, b)
	r := a.Run(t, 10*time.Second, testutil.Options{}, "sh", "-c", "hostname; touch /dev/shm/hostmarker; ls /dev/shm; ip -o -4 addr show")
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, a.Name+"\n") || !strings.Contains(r.Stdout, "hostmarker") || !strings.Contains(r.Stdout, a.Addr+"/24") {
		t.Fatalf("host a: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if _, err := os.Stat("/dev/shm/hostmarker"); err == nil {
		t.Error("host a's /dev/shm is the test's")
	}
	r = b.Run(t, 10*time.Second, testutil.Options{}, "sh", "-c", "hostname; ls /dev/shm")
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, b.Name+"\n") || strings.Contains(r.Stdout, "hostmarker") {
		t.Fatalf("host b: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}
