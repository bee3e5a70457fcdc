package fs

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestListingAndModes: ls -a shows "." and ".."; the root has inode 1;
// the modes follow the umask (022 by default: others and the group read).
func TestListingAndModes(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.sh(`mkdir "$M/t"`, 5*time.Second)
		if out := e.sh(`ls -a "$M/t"`, 5*time.Second); out != ".\n..\ndata\nevents\nheader\nwhole\n" {
			t.Errorf("ls -a of a topic: %q", out)
		}
		if out := e.sh(`stat -c %i "$M"`, 5*time.Second); out != "1\n" {
			t.Errorf("inode of the root: %q, want 1", out)
		}
		out := e.sh(`cd "$M" && stat -c '%n %A' . t t/data t/whole t/header t/events .shmfs`, 5*time.Second)
		want := ". drwxr-xr-x\nt drwxr-xr-x\nt/data -rw-r--r--\nt/whole --w-------\nt/header -r--r--r--\nt/events -r--r--r--\n.shmfs -r--r--r--\n"
		if out != want {
			t.Errorf("modes:\n%swant:\n%s", out, want)
		}
	})
	zero := uint32(0)
	e := newEnv(t, "fake", MountOptions{Umask: &zero})
	e.sh(`mkdir "$M/t"`, 5*time.Second)
	if out := e.sh(`stat -c %A "$M/t/data" "$M/t"`, 5*time.Second); out != "-rw-rw-rw-\ndrwxrwxrwx\n" {
		t.Errorf("modes with umask 0: %q", out)
	}
}

// TestMtimeIsLastPublish: a topic's directory, data and header carry the
// time of its newest message, so ls -t, find -newer and stat show
// activity; before any message they carry the mount's start.
func TestMtimeIsLastPublish(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		start := e.srv.fs.start
		e.sh(`mkdir "$M/a" "$M/b"`, 5*time.Second)
		mtime := func(path string) time.Time {
			t.Helper()
			out := strings.TrimSpace(e.sh(`stat -c %.9Y "`+path+`"`, 5*time.Second))
			s, ns, _ := strings.Cut(out, ".")
			sec, err1 := strconv.ParseInt(s, 10, 64)
			nsec, err2 := strconv.ParseInt(ns, 10, 64)
			if err1 != nil || err2 != nil || len(ns) != 9 {
				t.Fatalf("stat %s: %q", path, out)
			}
			return time.Unix(sec, nsec)
		}
		near := func(a, b time.Time) bool { d := a.Sub(b); return d < time.Millisecond && d > -time.Millisecond }
		if m := mtime(e.path("a", "data")); !near(m, start) {
			t.Errorf("mtime of a/data before any message: %v, want the mount's start %v", m, start)
		}
		e.sh(`echo 1 > "$M/a/data"`, 10*time.Second)
		e.sh(`echo 2 > "$M/b/data"`, 10*time.Second)
		if out := e.sh(`ls -t "$M"`, 5*time.Second); out != "b\na\n" {
			t.Errorf("ls -t: %q, want b (newest message) before a", out)
		}
		if out := e.sh(`cd "$M" && find . -newer a/data -name data`, 5*time.Second); out != "./b/data\n" {
			t.Errorf("find -newer a/data: %q, want ./b/data", out)
		}
		hdr := e.sh(`cat "$M/b/header"`, 5*time.Second)
		ts, err := field(hdr, "time")
		if err != nil {
			t.Fatal(err)
		}
		sent, err := time.Parse("2006-01-02T15:04:05.000Z07:00", ts)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{e.path("b", "data"), e.path("b", "header"), e.path("b")} {
			if m := mtime(p); !m.Truncate(time.Millisecond).Equal(sent) {
				t.Errorf("mtime of %s: %v, want the newest message's time %v", p, m, sent)
			}
		}
	})
}

// TestNoFilesInTopics: making a file, directory or link where shmfs has
// none fails with EPERM ("Operation not permitted"), not EROFS; touch of
// an existing file works.
func TestNoFilesInTopics(t *testing.T) {
	each(t, func(t *testing.T, e *env) {
		e.sh(`mkdir "$M/t"`, 5*time.Second)
		out := e.python(`
import os, errno
M = os.environ["M"]
def err(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
for path in (M + "/t/newfile", M + "/newfile"):
    print("create", err(lambda: os.close(os.open(path, os.O_CREAT | os.O_WRONLY))))
    print("symlink", err(lambda: os.symlink("data", path)))
    print("mknod", err(lambda: os.mkfifo(path)))
print("mkdir", err(lambda: os.mkdir(M + "/t/sub")))
print("link", err(lambda: os.link(M + "/t/data", M + "/t/data2")))
print("touch", err(lambda: os.utime(M + "/t/data")))
`, 10*time.Second)
		want := strings.Repeat("create EPERM\nsymlink EPERM\nmknod EPERM\n", 2) + "mkdir EPERM\nlink EPERM\ntouch ok\n"
		if out != want {
			t.Errorf("python printed:\n%swant:\n%s", out, want)
		}
		if msg, err := e.shErr(`touch "$M/t/newfile"`, 5*time.Second); err == nil || !strings.Contains(msg, "Operation not permitted") {
			t.Errorf("touch T/newfile: %v %q", err, msg)
		}
	})
}
