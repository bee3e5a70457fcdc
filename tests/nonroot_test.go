package tests

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
	"golang.org/x/sys/unix"
)

// The non-root path and --allow-other, with real users (testutil.NewUser):
// u mounts through fusermount3, v is another user.
//
// fusermount3 reads /etc/fuse.conf and opens /dev/fuse as its caller. So
// that the test changes nothing on the host, it gives each scenario a
// private mount namespace (a holder process made with unshare) in which a
// copy of fuse.conf and a /dev/fuse node of the mode the scenario needs
// are bind-mounted; the users' processes run in it through nsenter and
// setpriv. The host's /etc/fuse.conf and /dev/fuse are never touched.

// nsUser runs processes as a user inside a holder's mount namespace.
type nsUser struct {
	holder int
	u      *testutil.User
}

func (n nsUser) argv(args ...string) []string {
	return append([]string{"nsenter", "-t", strconv.Itoa(n.holder), "-m", "--",
		"setpriv", "--reuid", strconv.Itoa(int(n.u.UID)), "--regid", strconv.Itoa(int(n.u.GID)), "--clear-groups", "--"}, args...)
}

// holder starts a process in a new mount namespace where /dev/fuse is a
// node of mode fuseMode and /etc/fuse.conf holds conf; it returns its pid.
func holder(t *testing.T, dir string, fuseMode uint32, conf string) int {
	t.Helper()
	node := filepath.Join(dir, fmt.Sprintf("fuse%o", fuseMode))
	if err := unix.Mknod(node, unix.S_IFCHR|fuseMode, int(unix.Mkdev(10, 229))); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	if err := os.Chmod(node, os.FileMode(fuseMode)); err != nil {
		t.Fatal(err)
	}
	cf, err := os.CreateTemp(dir, "fuse.conf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cf.WriteString(conf); err != nil {
		t.Fatal(err)
	}
	cf.Close()
	os.Chmod(cf.Name(), 0o644)
	script := fmt.Sprintf("mount --bind %s /dev/fuse && mount --bind %s /etc/fuse.conf && echo ready && exec sleep 3600", node, cf.Name())
	h := testutil.Start(t, testutil.Options{}, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	h.Expect(t, "ready", 10*time.Second)
	return h.PID()
}

func TestNonRootMountAndAllowOther(t *testing.T) {
	requireFUSE(t)
	if os.Geteuid() != 0 {
		testutil.RequireCI(t, "needs root to make users and namespaces")
	}
	for _, tool := range []string{"unshare", "nsenter", "setpriv", "fusermount3"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.RequireCI(t, tool+" not installed (Debian: util-linux, fuse3)")
		}
	}
	u, v := testutil.NewUser(t), testutil.NewUser(t)
	e := newEnv(t)
	dir, err := os.MkdirTemp("", "shmfs-nonroot")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "shmfs")
	if r := testutil.Run(t, time.Minute, testutil.Options{}, "cp", shmfsBin, bin); r.Err != nil {
		t.Fatal(r.Stderr)
	}
	mkdirAs := func(name string, owner *testutil.User) string {
		p := filepath.Join(dir, name)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, int(owner.UID), int(owner.GID)); err != nil {
			t.Fatal(err)
		}
		return p
	}
	vars := e.vars()
	run := func(n nsUser, script string) testutil.Result {
		t.Helper()
		argv := n.argv("sh", "-c", script)
		return testutil.Run(t, 30*time.Second, testutil.Options{Env: vars, CleanEnv: true}, argv[0], argv[1:]...)
	}
	oneLine := func(what string, r testutil.Result, want ...string) {
		t.Helper()
		if r.Code != 1 || strings.Count(r.Stderr, "\n") != 1 || r.Stdout != "" {
			t.Errorf("%s: exit %d, want 1 and one line on stderr: %q", what, r.Code, r.Stderr)
		}
		for _, w := range want {
			if !strings.Contains(r.Stderr, w) {
				t.Errorf("%s: stderr %q lacks %q", what, r.Stderr, w)
			}
		}
	}

	// No access to /dev/fuse (the host's is often 0600): one line, cause
	// and fix.
	denied := nsUser{holder(t, dir, 0o600, "# nothing\n"), u}
	mp := mkdirAs("nofuse", u)
	oneLine("mount without /dev/fuse access", run(denied, bin+" mount "+mp),
		"shmfs: mount: mount "+mp+": /dev/fuse: cannot open: permission denied", "fix: allow access (as root): chmod 666 /dev/fuse")

	// /dev/fuse usable, but fuse.conf without user_allow_other.
	noOther := nsUser{holder(t, dir, 0o666, "# mount_max = 1000\n"), u}
	mp = mkdirAs("noallow", u)
	oneLine("mount --allow-other without user_allow_other", run(noOther, bin+" mount --allow-other "+mp),
		"/etc/fuse.conf: has no line user_allow_other", "fix: as root: echo user_allow_other >> /etc/fuse.conf")
	// A mountpoint u may not write (fusermount3's rule).
	oneLine("mount on root's directory", run(noOther, bin+" mount "+mkdirAs("rootsdir", &testutil.User{})),
		"no write permission", "choose one you own")

	// The working case: u mounts with --allow-other through fusermount3.
	ok := nsUser{holder(t, dir, 0o666, "user_allow_other\n"), u}
	asV := nsUser{ok.holder, v}
	mp = mkdirAs("mnt", u)
	argv := ok.argv(bin, "mount", "--allow-other", mp)
	m := testutil.Start(t, testutil.Options{Env: vars, CleanEnv: true, StopSignal: syscall.SIGTERM}, argv[0], argv[1:]...)
	m.ExpectStderr(t, "mounted domain", 20*time.Second)
	if !strings.Contains(m.Stderr(), "fusermount3 -u works only while no file is open") {
		t.Errorf("the banner of a non-root mount should name fusermount3 -u: %q", m.Stderr())
	}
	if r := run(ok, "mkdir "+mp+"/t && ls -la "+mp+"/t"); r.Code != 0 || !strings.Contains(r.Stdout, "-rw-r--r-- 1 "+u.Name+" "+u.Name+" 0") {
		t.Fatalf("u: mkdir and ls: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	// v reads (subscribes) ...
	argv = asV.argv("cat", mp+"/t/data")
	cat := testutil.Start(t, testutil.Options{Env: vars, CleanEnv: true}, argv[0], argv[1:]...)
	testutil.WaitBlockedInRead(t, cat.PID(), 10*time.Second)
	if r := run(ok, "echo hello > "+mp+"/t/data"); r.Code != 0 {
		t.Fatalf("u: publish: %s", r.Stderr)
	}
	if l := cat.Line(t, 10*time.Second); l != "hello" {
		t.Fatalf("v's cat printed %q", l)
	}
	if r := run(asV, "head -n2 "+mp+"/t/header"); r.Code != 0 || r.Stdout != "topic: t\ntype: raw\n" {
		t.Errorf("v: header: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	// ... but may not publish or declare topics (the modes shown).
	for _, script := range []string{"echo x > " + mp + "/t/data", "mkdir " + mp + "/mine", "cat /dev/null > " + mp + "/t/whole"} {
		if r := run(asV, script); r.Code == 0 || !strings.Contains(r.Stderr, "Permission denied") {
			t.Errorf("v: %q: exit %d, stderr %q; want Permission denied", script, r.Code, r.Stderr)
		}
	}
	// u stops it while v's cat blocks; the cat ends with end of file.
	testutil.WaitBlockedInRead(t, cat.PID(), 10*time.Second)
	if r := run(ok, bin+" umount "+mp); r.Code != 0 {
		t.Fatalf("u: shmfs umount: exit %d: %s", r.Code, r.Stderr)
	}
	if code := cat.ExitCode(t, 10*time.Second); code != 0 {
		t.Errorf("v's cat: exit %d after the unmount, want 0", code)
	}
	if code := m.ExitCode(t, 10*time.Second); code != 0 {
		t.Errorf("the mount: exit %d after shmfs umount; output:\n%s", code, m.Transcript())
	}
}

// TestAllowOtherEnforcesModes: root mounts with --allow-other; another
// user may read what the modes let everyone read, and nothing more: no
// topic declared in the root-owned 0755 root, no message published
// (issue 10). With --umask 0 everyone may publish.
func TestAllowOtherEnforcesModes(t *testing.T) {
	requireFUSE(t)
	if os.Geteuid() != 0 {
		testutil.RequireCI(t, "the mount of this test is root's")
	}
	v := testutil.NewUser(t)
	e := newEnv(t)
	dir, err := os.MkdirTemp("", "shmfs-allowother")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	asV := func(script string) testutil.Result {
		return testutil.Run(t, 20*time.Second, testutil.Options{User: v, Env: e.vars(), CleanEnv: true}, "sh", "-c", script)
	}
	for _, umask := range []string{"022", "0"} {
		mp := filepath.Join(dir, "mnt"+umask)
		m := startMountProcess(t, e, mp, dir, shmfsBin, "mount", "--allow-other", "--umask", umask, mp)
		waitMounted(t, m, e, mp, 20*time.Second)
		if err := os.Mkdir(filepath.Join(mp, "t"), 0o755); err != nil { // as root
			t.Fatal(err)
		}
		r := asV("cat " + mp + "/t/header >/dev/null && echo read; echo x > " + mp + "/t/data && echo wrote; mkdir " + mp + "/v && echo declared")
		want := "read\n"
		if umask == "0" {
			want = "read\nwrote\ndeclared\n"
		}
		if r.Stdout != want {
			t.Errorf("umask %s: the other user did %q, want %q (stderr %q)", umask, r.Stdout, want, r.Stderr)
		}
		m.Signal(syscall.SIGINT)
		if code := m.ExitCode(t, 10*time.Second); code != 0 {
			t.Errorf("mount: exit %d; output:\n%s", code, m.Transcript())
		}
	}
}
