package fs

import (
	"bufio"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/shmfs/shmfs/internal/mounttab"

	"golang.org/x/sys/unix"
)

// prepareMountpoint detaches stale mounts (a crashed daemon leaves the
// mountpoint answering ENOTCONN), refuses a live shmfs, a file and a
// directory inside a shmfs mount, and warns that a non-empty directory's
// entries are hidden while mounted.
func prepareMountpoint(mp string, logger *log.Logger) error {
	for range 8 { // stale mounts may be stacked
		// statfs, not stat: the kernel answers stat from its attribute
		// cache for a while after the daemon died; statfs always asks
		// the daemon.
		var sfs unix.Statfs_t
		err := unix.Statfs(mp, &sfs)
		if !errors.Is(err, syscall.ENOTCONN) && !errors.Is(err, syscall.ECONNABORTED) {
			break
		}
		logger.Printf("%s: detaching stale mount (%v)", mp, err)
		if derr := detach(mp); derr != nil {
			return fmt.Errorf("shmfs: mountpoint %s is a stale mount that could not be detached: %w", mp, derr)
		}
	}
	st, err := os.Stat(mp)
	if err != nil {
		return fmt.Errorf("%w: %s: %s; create the directory first", ErrMountpoint, mp, bareErr(err))
	}
	if !st.IsDir() {
		return fmt.Errorf("%w: %s is not a directory (%w); mount on a directory", ErrMountpoint, mp, syscall.ENOTDIR)
	}
	if err := CheckOutsideMounts(mp); err != nil {
		return err
	}
	if ents, err := os.ReadDir(mp); err == nil && len(ents) > 0 {
		logger.Printf("warning: mountpoint %s is not empty: its %d entries are hidden while shmfs is mounted on it", mp, len(ents))
	}
	return nil
}

// CheckOutsideMounts fails (ErrMountpoint) if path, absolute, lies inside
// a shmfs mount, which would have to serve itself, and (ErrAlreadyMounted)
// if a live shmfs is mounted on it. It does not need path to exist: call
// it before creating a missing mountpoint (inside a mount, mkdir would
// declare a topic).
func CheckOutsideMounts(path string) error {
	real := path
	if p, err := filepath.EvalSymlinks(path); err == nil {
		real = p
	}
	for _, m := range mounts() {
		if m.fstype != "fuse.shmfs" {
			continue
		}
		if m.point == path || m.point == real {
			return fmt.Errorf("%w: %s", ErrAlreadyMounted, path)
		}
		if inside(path, m.point) || inside(real, m.point) {
			return fmt.Errorf("%w: %s is inside the shmfs mount %s, which would have to serve itself; choose a directory outside it",
				ErrMountpoint, path, m.point)
		}
	}
	return nil
}

// inside reports whether path lies below dir.
func inside(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../")
}

// IsMounted reports whether a shmfs filesystem is mounted on mp (absolute),
// as this process's mount table says (the mount itself is not touched).
func IsMounted(mp string) bool {
	for _, m := range mounts() {
		if m.point == mp && m.fstype == "fuse.shmfs" {
			return true
		}
	}
	return false
}

// Detach lazily unmounts mp (a stale mount, whose server died):
// umount2(MNT_DETACH) as root, else fusermount3 -uz.
func Detach(mp string) error { return detach(mp) }

// detach lazily unmounts mp: umount2(MNT_DETACH) as root, else
// fusermount3 -uz.
func detach(mp string) error {
	if os.Geteuid() == 0 {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("umount2 %s: %w", mp, err)
		}
		return nil
	}
	bin, err := exec.LookPath("fusermount3")
	if err != nil {
		if bin, err = exec.LookPath("fusermount"); err != nil {
			return fmt.Errorf("no fusermount3: %w", err)
		}
	}
	out, err := exec.Command(bin, "-uz", mp).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s -uz %s: %w: %s", bin, mp, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// abortConnection aborts a FUSE connection through fusectl (if mounted):
// every pending request fails with ENOTCONN and the serve loop ends.
func abortConnection(conn string) {
	if conn == "" {
		return
	}
	_ = os.WriteFile(filepath.Join("/sys/fs/fuse/connections", conn, "abort"), []byte("1"), 0)
}

// connectionID returns the FUSE connection id of the mount on mp: the minor
// number of its device, from /proc/self/mountinfo (no access to the mount).
func connectionID(mp string) string {
	id := ""
	for _, m := range mounts() {
		if m.point == mp && m.fstype == "fuse.shmfs" {
			if _, minor, ok := strings.Cut(m.dev, ":"); ok {
				id = minor // the last (topmost) mount wins
			}
		}
	}
	return id
}

type mountEntry struct{ dev, point, fstype string }

// mounts parses /proc/self/mountinfo.
func mounts() []mountEntry {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		out = append(out, mountEntry{dev: fields[2], point: mounttab.Unescape(fields[4]), fstype: fields[sep+1]})
	}
	return out
}
