package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
)

// The attacks of issue 10, by a second local user (created by the test)
// with real datagrams to the registration port, against root's shmfs
// commands: what each one gets now.

// asUser runs a command as u in e's domain.
func asUser(e env, u *testutil.User) testutil.Options {
	o := options("/", e.vars())
	o.User = u
	return o
}

// shmfsCmd starts a long-running shmfs command as root in e's domain.
func shmfsCmd(t *testing.T, e env, args ...string) *testutil.Child {
	t.Helper()
	return testutil.Start(t, options("", e.vars()), shmfsBin, args...)
}

// startAttacker runs attackerChild as u against e.
func startAttacker(t *testing.T, e env, u *testutil.User, args ...string) *testutil.Child {
	t.Helper()
	return testutil.StartChildWith(t, testutil.Options{User: u}, "attacker",
		append([]string{"-port", strconv.Itoa(e.port), "-domain", e.domain}, args...)...)
}

// expectLine reads c's stdout lines until one has prefix, or fails.
func expectLine(t *testing.T, c *testutil.Child, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if l := c.Line(t, time.Until(deadline)); strings.HasPrefix(l, prefix) {
			return l
		}
	}
}

// countLines counts the lines of s equal to line.
func countLines(s, line string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if l == line {
			n++
		}
	}
	return n
}

// A forged unregistration (seq 2^64-1), or a sample with no memory files,
// of root's live publisher cuts root's subscriber off neither in ack mode
// nor in fire-and-forget mode; the publisher keeps no deleted file mapped
// and nothing is left in /dev/shm afterwards (testutil.Domain).
func TestSpoofedUnregistrationCutsNobodyOff(t *testing.T) {
	u := testutil.NewUser(t)
	for _, ack := range []string{"1s", "0"} {
		for _, mode := range []string{"unregister", "nomem"} {
			t.Run(mode+"/ack-timeout="+ack, func(t *testing.T) {
				e := newEnv(t)
				sub := shmfsCmd(t, e, "sub", "-v", "victim")
				sub.ExpectStderr(t, "subscribed", 20*time.Second)
				pub := shmfsCmd(t, e, "pub", "--rate", "20", "--repeat", "0", "--ack-timeout", ack, "victim", "V")
				sub.Expect(t, "V", 10*time.Second)
				atk := startAttacker(t, e, u, "-mode", mode, "-topic", "victim", "-for", "3s")
				atk.Expect(t, "sniffed", 10*time.Second)
				before := countLines(sub.Output(), "V")
				expectLine(t, atk, "done", 30*time.Second)
				during := countLines(sub.Output(), "V") - before
				testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
					if n := countLines(sub.Output(), "V") - before - during; n < 20 {
						return fmt.Errorf("subscriber received %d messages after the forgeries (%d during them), want 20", n, during)
					}
					return nil
				})
				t.Logf("subscriber received %d messages during 3 s of forgeries", during)
				if gone := unlinkedMappings(t, pub.PID(), e.domain); len(gone) > 0 {
					t.Errorf("publisher maps objects that are gone from /dev/shm: %v", gone)
				}
				pub.Stop(t, 10*time.Second)
				sub.Stop(t, 10*time.Second)
				if strings.Contains(sub.Stderr(), "missed") {
					t.Errorf("subscriber lost messages: %s", sub.Stderr())
				}
			})
		}
	}
}

// unlinkedMappings returns the shmfs objects of domain that process pid
// maps although no name in /dev/shm refers to them any more (the issue's
// "..._snd (deleted)"). Objects are created under a temporary name and
// linked to their real one, so maps may show the temporary name as
// deleted: the inode decides.
func unlinkedMappings(t *testing.T, pid int, domain string) []string {
	t.Helper()
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	linked := map[uint64]bool{}
	for _, n := range testutil.ShmObjects(domain) {
		var st syscall.Stat_t
		if syscall.Stat(shmname.Path(n), &st) == nil {
			linked[st.Ino] = true
		}
	}
	var gone []string
	for _, l := range strings.Split(string(maps), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || !strings.Contains(f[5], shmname.Prefix+domain+"_") {
			continue
		}
		if ino, err := strconv.ParseUint(f[4], 10, 64); err == nil && !linked[ino] {
			gone = append(gone, l)
		}
	}
	return gone
}

// A fake publisher of "commands" that names root's "camera" memory file
// (claiming the camera's process, or the attacker's own) redirects
// nothing: root's "commands" subscriber reports the mismatch once and gets
// no camera frame; a genuine "commands" publisher still reaches it.
func TestRedirectToAnotherTopicRefused(t *testing.T) {
	u := testutil.NewUser(t)
	e := newEnv(t)
	sub := shmfsCmd(t, e, "sub", "-v", "commands")
	sub.ExpectStderr(t, "subscribed", 20*time.Second)
	cam := shmfsCmd(t, e, "pub", "--rate", "20", "--repeat", "0", "camera", "CAMERA-FRAME")
	atk := startAttacker(t, e, u, "-mode", "redirect", "-topic", "camera", "-target", "commands", "-for", "3s")
	atk.Expect(t, "sniffed", 10*time.Second)
	sub.ExpectStderr(t, "registration does not match shared memory", 10*time.Second)
	expectLine(t, atk, "done", 30*time.Second)
	if r := testutil.Run(t, 20*time.Second, options("", e.vars()), shmfsBin, "pub", "commands", "GENUINE"); r.Code != 0 {
		t.Fatalf("pub commands: exit %d: %s", r.Code, r.Stderr)
	}
	sub.Expect(t, "GENUINE", 10*time.Second)
	cam.Stop(t, 10*time.Second)
	sub.Stop(t, 10*time.Second)
	if strings.Contains(sub.Output(), "CAMERA-FRAME") {
		t.Fatalf("the commands subscriber printed camera frames:\n%s", sub.Output())
	}
}

// rss returns a process's resident set size in bytes.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				return kb << 10
			}
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// floodGrowthLimit bounds how much three floods of 2300 fake publishers
// each may grow a process: the attacker's uid holds at most MaxSourceBytes
// (4 MiB, counted as encoded size + 256 per entity) of each registry; the
// rest of the growth is the garbage of decoding what is then dropped,
// which the Go runtime gives back to the system only lazily. Before the
// bound, one such flood added about 100 MB to every process (issue 10).
const floodGrowthLimit = 48 << 20

// 2300 large fake publisher samples (the issue saw +100 MB in every
// process, and a hidden topic): every registry keeps the attacker's uid to
// its quota, and root's topics are neither crowded out nor hidden.
func TestRegistrationFloodBounded(t *testing.T) {
	u := testutil.NewUser(t)
	e := newEnv(t)
	procs := map[string]*testutil.Child{}
	if _, err := os.Stat("/dev/fuse"); err == nil && os.Geteuid() == 0 {
		mp := filepath.Join(t.TempDir(), "mnt")
		mount := startMount(t, e, mp)
		defer stopMount(t, mount, e, mp)
		procs["mount"] = mount
	} else {
		testutil.RequireCI(t, "FUSE unavailable: the flood is also measured against a mount")
	}
	sub := shmfsCmd(t, e, "sub", "-v", "dos")
	sub.ExpectStderr(t, "subscribed", 20*time.Second)
	procs["sub"] = sub
	rssAll := func() map[string]int64 {
		m := map[string]int64{}
		for name, c := range procs {
			m[name] = rss(t, c.PID())
		}
		return m
	}
	// flood sends 2300 samples, then a message of topic msg that the
	// subscriber prints: datagrams are handled in order, so once it has
	// the new publisher's message it has handled the flood before it. The
	// publisher repeats its message: the kernel may drop registration
	// datagrams of anyone while the flood fills the sockets' buffers, so
	// the two may find each other only at the next refresh.
	flood := func(msg string) {
		atk := startAttacker(t, e, u, "-mode", "flood", "-n", "2300")
		expectLine(t, atk, "done 2300", 60*time.Second)
		pub := shmfsCmd(t, e, "pub", "--rate", "10", "--repeat", "0", "dos", msg)
		sub.Expect(t, msg, 20*time.Second)
		pub.Stop(t, 10*time.Second)
	}
	before := rssAll()
	var after []map[string]int64
	for _, msg := range []string{"first", "second", "third"} {
		flood(msg)
		after = append(after, rssAll())
	}
	for name := range procs {
		t.Logf("%s: RSS %d MiB before the floods, %d, %d and %d MiB after each of three",
			name, before[name]>>20, after[0][name]>>20, after[1][name]>>20, after[2][name]>>20)
		if grew := after[2][name] - before[name]; grew > floodGrowthLimit {
			t.Errorf("%s grew by %d MiB under three floods (limit %d MiB): the registry is not bounded", name, grew>>20, floodGrowthLimit>>20)
		}
	}
	// `shmfs ls` during a flood lists root's topic and says that the
	// registry had no room for everything.
	pub := shmfsCmd(t, e, "pub", "--rate", "20", "--repeat", "0", "dos", "x")
	sub.Expect(t, "x", 20*time.Second)
	ls := testutil.Start(t, options("", e.vars()), shmfsBin, "ls", "--wait", "3s")
	flood("fourth")
	if code := ls.ExitCode(t, 20*time.Second); code != 0 || !strings.Contains(ls.Output(), "dos") ||
		!strings.Contains(ls.Stderr(), "warning: the registry had no room for") {
		t.Fatalf("shmfs ls during the flood: exit %d, stdout:\n%s\nstderr:\n%s", code, ls.Output(), ls.Stderr())
	}
	pub.Stop(t, 10*time.Second)
	sub.Stop(t, 10*time.Second)
}

// Fake subscriber announcements (of the attacker's process and of the
// publisher's own) make root's publisher create no file at all; a genuine
// subscriber still attaches.
func TestFakeSubscribersCreateNoFiles(t *testing.T) {
	u := testutil.NewUser(t)
	e := newEnv(t)
	pub := shmfsCmd(t, e, "pub", "--rate", "50", "--repeat", "0", "t", "x")
	atk := startAttacker(t, e, u, "-mode", "fakesubs", "-topic", "t", "-n", "500")
	atk.Expect(t, "sniffed", 10*time.Second)
	before := testutil.ShmObjects(e.domain)
	expectLine(t, atk, "done 1000", 30*time.Second)
	// The genuine subscriber announces after the forgeries: once it gets
	// messages, the publisher has handled them all.
	sub := shmfsCmd(t, e, "sub", "t")
	sub.Expect(t, "x", 10*time.Second)
	sub.Stop(t, 10*time.Second)
	after := testutil.ShmObjects(e.domain)
	if len(before) != 1 || strings.Join(after, " ") != strings.Join(before, " ") {
		t.Fatalf("/dev/shm objects of the domain: %v before the 1000 fake subscribers, %v after (want only the memory file)", before, after)
	}
	pub.Stop(t, 10*time.Second)
}

// Another user's `shmfs sub` of root's 0600 topic says once per publisher
// why it gets nothing; root's short-lived `shmfs pub` names the subscriber
// that could not read (exit status 0: the messages were published).
func TestPermissionDeniedIsReported(t *testing.T) {
	u := testutil.NewUser(t)
	e := newEnv(t)
	pub := shmfsCmd(t, e, "pub", "--rate", "20", "--repeat", "0", "secret", "S")
	other := testutil.Start(t, asUser(e, u), shmfsBin, "sub", "-v", "secret")
	other.ExpectStderr(t, `shmfs: sub: permission denied: topic "secret" is owned by uid 0 (mode 0600)`, 10*time.Second)
	r := testutil.Run(t, 20*time.Second, options("", e.vars()), shmfsBin, "pub", "secret", "one", "two")
	want := fmt.Sprintf("shmfs: pub: warning: subscriber pid %d (uid %d) cannot read the topic: permission denied: topic \"secret\" is owned by uid 0 (mode 0600)", other.PID(), u.UID)
	if r.Code != 0 || !strings.Contains(r.Stderr, want) {
		t.Fatalf("pub: exit %d, stderr %q, want it to contain %q", r.Code, r.Stderr, want)
	}
	other.ExpectStderr(t, "permission denied", 10*time.Second) // the second publisher's
	pub.Stop(t, 10*time.Second)
	other.Stop(t, 10*time.Second)
	if n := strings.Count(other.Stderr(), "permission denied"); n != 2 || other.Output() != "" {
		t.Fatalf("other user's sub: %d permission lines (want one per publisher: 2), stdout %q, stderr:\n%s", n, other.Output(), other.Stderr())
	}
}

// `shmfs sub` that sees no publisher says so (and keeps waiting): in a
// domain where nothing runs (a typo), and in one with other topics.
func TestSubSaysNoPublisher(t *testing.T) {
	e := newEnv(t)
	sub := shmfsCmd(t, e, "sub", "nothing-here")
	sub.ExpectStderr(t, `shmfs: sub: no publisher of "nothing-here" after`, 10*time.Second)
	if !strings.Contains(sub.Stderr(), fmt.Sprintf("nothing else runs in domain %q (port %d); still waiting (check --domain and --port)", e.domain, e.port)) {
		t.Errorf("stderr: %s", sub.Stderr())
	}
	sub.Stop(t, 10*time.Second)

	other := shmfsCmd(t, e, "pub", "--rate", "10", "--repeat", "0", "elsewhere", "x")
	typo := shmfsCmd(t, e, "sub", "elsewher")
	typo.ExpectStderr(t, `no publisher of "elsewher" in domain`, 10*time.Second)
	if !strings.Contains(typo.Stderr(), "'shmfs ls' lists its 1 other topics") {
		t.Errorf("stderr: %s", typo.Stderr())
	}
	typo.Stop(t, 10*time.Second)
	other.Stop(t, 10*time.Second)
}

// Root's /dev/shm objects are out of another user's reach: it can neither
// read, write nor remove them.
func TestOtherUserCannotTouchObjects(t *testing.T) {
	u := testutil.NewUser(t)
	e := newEnv(t)
	pub := shmfsCmd(t, e, "pub", "--rate", "20", "--repeat", "0", "secret", "S")
	sub := shmfsCmd(t, e, "sub", "secret")
	sub.Expect(t, "S", 10*time.Second)
	objs := testutil.ShmObjects(e.domain)
	if len(objs) < 3 { // memory file, the subscriber's bell and ack event
		t.Fatalf("objects: %v", objs)
	}
	for _, n := range objs {
		p := shmname.Path(n)
		for _, cmd := range []string{"cat " + p + " >/dev/null", "printf x >> " + p, "rm -f " + p, "truncate -s 0 " + p} {
			r := testutil.Run(t, 10*time.Second, asUser(e, u), "sh", "-c", cmd)
			if r.Code == 0 || !strings.Contains(r.Stderr, "ermission denied") && !strings.Contains(r.Stderr, "not permitted") {
				t.Errorf("as uid %d: %s: exit %d, stderr %q", u.UID, cmd, r.Code, r.Stderr)
			}
		}
	}
	sub.Expect(t, "S", 10*time.Second)
	sub.Stop(t, 10*time.Second)
	pub.Stop(t, 10*time.Second)
}

// Another user's publisher of a topic root reads through its mount: the
// mount's events file shows the refusal (once) and readers of data go on
// with root's messages, never the other user's.
func TestMountReportsRefusedPublisher(t *testing.T) {
	requireFUSE(t)
	u := testutil.NewUser(t)
	e := newEnv(t)
	mp := filepath.Join(t.TempDir(), "mnt")
	mount := startMount(t, e, mp)
	dir := filepath.Join(mp, "commands")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	eventsPath := filepath.Join(dir, "events")
	events := testutil.Start(t, options("", e.vars()), "cat", eventsPath)
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if !events.HasOpen(eventsPath) {
			return fmt.Errorf("cat has not opened %s", eventsPath)
		}
		return nil
	})
	reader := testutil.StartChild(t, "reader", nil, filepath.Join(dir, "data"))
	reader.Expect(t, "ready", 10*time.Second)
	evil := testutil.Start(t, asUser(e, u), shmfsBin, "pub", "--rate", "20", "--repeat", "0", "commands", "EVIL")
	want := fmt.Sprintf("error permission denied: topic %q is owned by uid %d (mode 0600)", "commands", u.UID)
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !strings.Contains(events.Output(), want) {
			return fmt.Errorf("events so far:\n%s", events.Output())
		}
		return nil
	})
	if r := testutil.Run(t, 20*time.Second, options("", e.vars()), shmfsBin, "pub", "commands", "GOOD"); r.Code != 0 {
		t.Fatalf("pub commands GOOD: exit %d: %s", r.Code, r.Stderr)
	}
	expectRead(t, reader, []byte("GOOD"))
	evil.Stop(t, 10*time.Second)
	if n := strings.Count(events.Output(), want); n != 1 {
		t.Errorf("the refusal is in the events file %d times, want once:\n%s", n, events.Output())
	}
	reader.Kill()
	events.Kill()
	<-reader.Done()
	<-events.Done()
	stopMount(t, mount, e, mp)
}

// Root's mount (without --allow-other) is closed to another user: the
// kernel refuses it every access, so it can neither list, read, write nor
// create topics there. (With --allow-other the mount must enforce the
// modes it shows itself: issue 13.)
func TestOtherUserLockedOutOfTheMount(t *testing.T) {
	requireFUSE(t)
	u := testutil.NewUser(t)
	e := newEnv(t)
	parent := t.TempDir()
	if err := os.Chmod(parent, 0o755); err != nil { // the mountpoint's directory: reachable by u
		t.Fatal(err)
	}
	mp := filepath.Join(parent, "mnt")
	mount := startMount(t, e, mp)
	pub := shmfsCmd(t, e, "pub", "--rate", "20", "--repeat", "0", "secret", "S")
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if r := testutil.Run(t, 10*time.Second, options("", e.vars()), "ls", mp); !strings.Contains(r.Stdout, "secret") {
			return fmt.Errorf("root's ls %s: %q %q", mp, r.Stdout, r.Stderr)
		}
		return nil
	})
	for _, cmd := range []string{
		"ls " + mp,
		"cat " + mp + "/secret/header",
		"cat " + mp + "/secret/data",
		"echo x > " + mp + "/secret/data",
		"mkdir " + mp + "/planted",
	} {
		r := testutil.Run(t, 10*time.Second, asUser(e, u), "sh", "-c", cmd)
		if r.Code == 0 || !strings.Contains(r.Stderr, "ermission denied") {
			t.Errorf("as uid %d: %s: exit %d, stdout %q, stderr %q", u.UID, cmd, r.Code, r.Stdout, r.Stderr)
		}
	}
	if r := testutil.Run(t, 10*time.Second, options("", e.vars()), "ls", mp); strings.Contains(r.Stdout, "planted") {
		t.Errorf("the other user created a topic: %q", r.Stdout)
	}
	pub.Stop(t, 10*time.Second)
	stopMount(t, mount, e, mp)
}
