package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	shmfs "github.com/shmfs/shmfs/fs"
)

var umountCommand = &command{
	name:  "umount",
	args:  "MOUNTPOINT",
	short: "stop the shmfs mount on MOUNTPOINT, also while readers block",
	long: `Stops the server of the shmfs mount on MOUNTPOINT as Ctrl-C on it would:
blocked reads end with end of file, the filesystem is unmounted and the
server exits; umount waits for that (at most --timeout). Unlike umount(8)
and fusermount3 -u it works while files are open. A mount whose server died
(stale: "Transport endpoint is not connected") is detached instead.`,
	examples: `  shmfs umount /tmp/shmfs`,
	run:      runUmount,
}

func runUmount(c *cli, args []string) error {
	fs := c.flags()
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the server to exit")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("want one MOUNTPOINT, got %d arguments", fs.NArg())
	}
	mp, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		return err
	}
	if !shmfs.IsMounted(mp) {
		return fmt.Errorf("no shmfs mount on %s", mp)
	}
	info, err := os.ReadFile(filepath.Join(mp, ".shmfs"))
	if errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED) {
		if err := shmfs.Detach(mp); err != nil {
			return fmt.Errorf("%s is a stale mount (its server died) and could not be detached: %w", mp, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s/.shmfs: %w", mp, err)
	}
	pid := 0
	for _, l := range strings.Split(string(info), "\n") {
		if v, ok := strings.CutPrefix(l, "pid: "); ok {
			pid, _ = strconv.Atoi(v)
		}
	}
	if pid <= 0 || !servesFUSE(pid) {
		return fmt.Errorf("%s/.shmfs names pid %d, which is not a FUSE server; stop the mount with umount or fusermount3 -u", mp, pid)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.EPERM) {
			return fmt.Errorf("the server of %s (pid %d) belongs to another user: run this as that user or as root", mp, pid)
		}
		return fmt.Errorf("signal pid %d: %w", pid, err)
	}
	deadline := time.Now().Add(*timeout)
	for shmfs.IsMounted(mp) || syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("the server of %s (pid %d) did not exit within %v", mp, pid, *timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// servesFUSE reports whether process pid has /dev/fuse open: .shmfs is
// read from the mount, and a pid in it is not sent a signal blindly.
func servesFUSE(pid int) bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if t, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && t == "/dev/fuse" {
			return true
		}
	}
	return false
}
