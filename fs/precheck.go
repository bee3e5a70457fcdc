package fs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Errors of Mount that say what to fix (test with errors.Is); the message
// names the cause and the fix on one line.
var (
	// ErrMountpoint: the mountpoint cannot take a mount (not a directory,
	// inside a shmfs mount, not writable for fusermount3).
	ErrMountpoint = errors.New("shmfs: unusable mountpoint")
	// ErrFUSE: this host (or user) cannot mount FUSE filesystems now:
	// /dev/fuse, fusermount3 or /etc/fuse.conf (see Problem).
	ErrFUSE = errors.New("shmfs: FUSE unavailable")
)

// Problem is a reason this host cannot mount, and its fix. `shmfs doctor`
// prints the same checks.
type Problem struct {
	What   string // the thing checked: "/dev/fuse", "fusermount3", ...
	Detail string // what is wrong with it
	Fix    string // what to do
}

func (p *Problem) Error() string {
	return fmt.Sprintf("%s: %s; fix: %s", p.What, p.Detail, p.Fix)
}

// Is makes every Problem an ErrFUSE.
func (p *Problem) Is(target error) bool { return target == ErrFUSE }

// CheckDevFuse checks that path (normally /dev/fuse) is a character device
// this process can open for reading and writing.
func CheckDevFuse(path string) *Problem {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return &Problem{path, "missing (" + bareErr(err) + ")",
			"load the module: modprobe fuse (in a container: docker run --device /dev/fuse --cap-add SYS_ADMIN)"}
	case st.Mode()&os.ModeCharDevice == 0:
		return &Problem{path, "not a character device", "recreate it: rm " + path + " && mknod -m 666 " + path + " c 10 229"}
	}
	// Opening creates an unmounted FUSE connection; closing ends it.
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		owner := ""
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			owner = fmt.Sprintf(" (mode %v, uid %d, gid %d)", st.Mode().Perm(), sys.Uid, sys.Gid)
		}
		return &Problem{path, "cannot open: " + bareErr(err) + owner, "allow access (as root): chmod 666 " + path}
	}
	unix.Close(fd)
	return nil
}

// CheckFusermount finds fusermount3, which mounts for users other than
// root, and checks that it is setuid root; it returns its path.
func CheckFusermount() (string, *Problem) {
	bin, err := exec.LookPath("fusermount3")
	if err != nil {
		return "", &Problem{"fusermount3", "not found in PATH: mounting needs it when not root",
			"install it: apt install fuse3 (Fedora: dnf install fuse3), or mount as root"}
	}
	st, err := os.Stat(bin)
	if err != nil {
		return "", &Problem{"fusermount3", bareErr(err), "reinstall fuse3"}
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && (st.Mode()&os.ModeSetuid == 0 || sys.Uid != 0) {
		return "", &Problem{"fusermount3", bin + " is not setuid root", "chown root " + bin + " && chmod u+s " + bin}
	}
	return bin, nil
}

// fuseConf is fusermount3's configuration.
const fuseConf = "/etc/fuse.conf"

// CheckUserAllowOther checks that fusermount3 lets users other than root
// mount with allow_other (user_allow_other in /etc/fuse.conf).
func CheckUserAllowOther() *Problem {
	f, err := os.Open(fuseConf)
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "user_allow_other" {
				return nil
			}
		}
	}
	return &Problem{fuseConf, "has no line user_allow_other: fusermount3 refuses --allow-other for users other than root",
		"as root: echo user_allow_other >> " + fuseConf}
}

// checkFUSE runs the checks that make a mount fail later with a worse
// message: as root only /dev/fuse; otherwise also fusermount3, fuse.conf
// for allowOther, and write access to the mountpoint (fusermount3 mounts
// only where its user may write).
func checkFUSE(mp string, allowOther bool) error {
	if p := CheckDevFuse("/dev/fuse"); p != nil {
		return p
	}
	if os.Geteuid() == 0 {
		return nil
	}
	if _, p := CheckFusermount(); p != nil {
		return p
	}
	if allowOther {
		if p := CheckUserAllowOther(); p != nil {
			return p
		}
	}
	if err := unix.Access(mp, unix.W_OK); err != nil {
		return fmt.Errorf("%w: %s: no write permission (%s): fusermount3 mounts only on a directory its user may write; choose one you own",
			ErrMountpoint, mp, bareErr(err))
	}
	return nil
}

// bareErr is an error without Go's "op path:" wrapping.
func bareErr(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
