package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

// Ctrl-C stops `shmfs mount` while another mount namespace holds a copy of
// the mount (a process that unshared its mount namespace meanwhile: a
// container, `unshare -m`): unmounting here leaves the kernel serving the
// copy, and go-fuse would wait for its request loops without end. The
// mount aborts its connection instead: it exits, unmounted and clean.
func TestMountStopsWhileAnotherNamespaceHoldsACopy(t *testing.T) {
	requireFUSE(t)
	if os.Geteuid() != 0 {
		testutil.RequireCI(t, "unshare -m needs root")
	}
	e := newEnv(t)
	mp := filepath.Join(t.TempDir(), "mnt")
	mount := startMount(t, e, mp)
	copyHolder := testutil.Start(t, options("", e.vars()), "unshare", "-m", "--propagation", "private", "sleep", "120")
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", copyHolder.PID()))
		if err != nil {
			return err
		}
		self, err := os.Readlink("/proc/self/ns/mnt")
		if err != nil {
			return err
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", copyHolder.PID())); err != nil || ns == self {
			return fmt.Errorf("not in a namespace of its own yet (%s, %v)", ns, err)
		}
		if !strings.Contains(string(b), " "+mp+" ") {
			return fmt.Errorf("its namespace has no copy of %s", mp)
		}
		return nil
	})
	stopMount(t, mount, e, mp)
	copyHolder.Kill()
	<-copyHolder.Done()
}
