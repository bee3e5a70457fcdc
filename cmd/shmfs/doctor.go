package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmfs/shmfs/core/registration"
	shmfs "github.com/shmfs/shmfs/fs"
	"github.com/shmfs/shmfs/internal/mounttab"
	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shm"
	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/udpsock"
)

var doctorCommand = &command{
	name:  "doctor",
	short: "check this host for what shmfs needs",
	long: `Checks, and prints the fix for each problem found:
  /dev/shm       exists, is tmpfs, is writable, has free space
  /dev/fuse      exists and opens (needed by 'shmfs mount' only)
  fusermount3    installed and setuid root (needed by 'shmfs mount' when not root)
  port           the registration port can be bound beside other shmfs
                 processes and a broadcast to 127.255.255.255 comes back
  stale objects  shared memory of dead processes in the domain ('shmfs clean')
  stale mounts   shmfs mounts whose daemon died (stat gives ENOTCONN)

Exit status 1 if any check failed; warnings do not fail.

For tests and unusual hosts, SHMFS_DEV_SHM, SHMFS_DEV_FUSE and
SHMFS_PROC_MOUNTS replace the paths /dev/shm, /dev/fuse and /proc/mounts.`,
	examples: `  shmfs doctor
  shmfs doctor --domain robot --port 15000`,
	run: runDoctor,
}

// Status of one doctor check.
type status int

const (
	statusOK status = iota
	statusWarn
	statusFail
)

func (s status) String() string {
	return [...]string{"ok", "warn", "FAIL"}[s]
}

// finding is the outcome of one check.
type finding struct {
	status status
	what   string // the thing checked, e.g. "/dev/fuse"
	detail string
	fix    string // how to fix it (warn and fail)
}

// Thresholds of the /dev/shm check.
const (
	shmMinFree    = 16 << 20  // less free space than this fails
	shmSmallTotal = 256 << 20 // a smaller /dev/shm warns (Docker's default is 64 MiB)
)

// doctorPaths are the paths doctor inspects; tests replace them.
type doctorPaths struct {
	devShm, devFuse, procMounts string
}

func doctorPathsFromEnv() doctorPaths {
	get := func(env, def string) string {
		if v := os.Getenv(env); v != "" {
			return v
		}
		return def
	}
	return doctorPaths{
		devShm:     get("SHMFS_DEV_SHM", shmname.Dir),
		devFuse:    get("SHMFS_DEV_FUSE", "/dev/fuse"),
		procMounts: get("SHMFS_PROC_MOUNTS", "/proc/mounts"),
	}
}

func runDoctor(c *cli, args []string) error {
	fs := c.flags()
	all := fs.Bool("all-domains", false, "look for stale objects of every domain, not only --domain")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected arguments %q", fs.Args())
	}
	paths := doctorPathsFromEnv()
	domain := c.domain
	if *all {
		domain = ""
	}
	port := c.effectivePort()
	fds := []finding{
		checkDevShm(paths.devShm),
		checkDevFuse(paths.devFuse),
		checkFusermount(os.Geteuid()),
		checkPort(port),
		checkStaleObjects(domain),
		checkStaleMounts(paths.procMounts, statfs),
	}
	failed := printFindings(c.stdout, fds)
	if failed > 0 {
		return fmt.Errorf("%d problem(s) found; see the fixes above", failed)
	}
	return nil
}

// printFindings prints one line per finding, plus its fix; it returns the
// number of failures.
func printFindings(w io.Writer, fds []finding) int {
	failed := 0
	for _, f := range fds {
		fmt.Fprintf(w, "%-4s  %s: %s\n", f.status, f.what, f.detail)
		if f.status != statusOK && f.fix != "" {
			for _, l := range strings.Split(f.fix, "\n") {
				fmt.Fprintf(w, "      fix: %s\n", l)
			}
		}
		if f.status == statusFail {
			failed++
		}
	}
	return failed
}

func checkDevShm(dir string) finding {
	f := finding{what: dir}
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		f.status, f.detail = statusFail, fmt.Sprintf("cannot stat: %v", err)
		f.fix = "mount a tmpfs there: mount -t tmpfs -o size=1G,mode=1777 tmpfs " + dir
		return f
	}
	total := uint64(sfs.Blocks) * uint64(sfs.Bsize)
	free := uint64(sfs.Bavail) * uint64(sfs.Bsize)
	f.detail = fmt.Sprintf("%s free of %s", formatBytes(float64(free)), formatBytes(float64(total)))
	resize := "enlarge it: mount -o remount,size=1G " + dir + " (in Docker: docker run --shm-size=1g)"
	switch {
	case unix.Access(dir, unix.W_OK) != nil:
		f.status, f.detail = statusFail, "not writable by this user"
		f.fix = "make it world-writable with the sticky bit: chmod 1777 " + dir
	case free < shmMinFree:
		f.status = statusFail
		f.detail += ": almost full (a publisher cannot create or grow its memory files)"
		f.fix = "remove stale objects: shmfs clean --all-domains\n" + resize
	case sfs.Type != unix.TMPFS_MAGIC:
		f.status = statusWarn
		f.detail += fmt.Sprintf("; not a tmpfs (type %#x): shared memory may be written to disk", sfs.Type)
		f.fix = "mount a tmpfs there: mount -t tmpfs -o size=1G,mode=1777 tmpfs " + dir
	case total < shmSmallTotal:
		f.status = statusWarn
		f.detail += ": small for large messages (a publisher needs about 1.5x its largest message per buffer)"
		f.fix = resize
	}
	return f
}

func checkDevFuse(path string) finding {
	if p := shmfs.CheckDevFuse(path); p != nil {
		return finding{status: statusFail, what: path, detail: p.Detail + ": 'shmfs mount' cannot work (pub, sub and the Go API do not need it)", fix: p.Fix}
	}
	return finding{what: path, detail: "present"}
}

func checkFusermount(euid int) finding {
	f := finding{what: "fusermount3"}
	if euid == 0 {
		f.detail = "not needed (running as root)"
		return f
	}
	bin, p := shmfs.CheckFusermount()
	if p != nil {
		f.status, f.detail, f.fix = statusFail, p.Detail, p.Fix
		return f
	}
	f.detail = bin
	if shmfs.CheckUserAllowOther() != nil {
		f.detail += " (--allow-other would need user_allow_other in /etc/fuse.conf, not set)"
	}
	return f
}

// checkPort binds the registration address the way core/registration does
// (127.255.255.255:port with SO_REUSEADDR), sends a probe broadcast and
// waits for it to come back. Agents on the port drop the probe: it lacks
// the registration magic.
func checkPort(port int) finding {
	f := finding{what: fmt.Sprintf("registration port %d", port)}
	fixPort := "pick another port for every process of the domain: --port P or SHMFS_PORT=P"
	addr := net.JoinHostPort(registration.LocalBroadcast, strconv.Itoa(port))
	pc, err := udpsock.ListenShared(net.ParseIP(registration.LocalBroadcast), port, nil)
	if err != nil {
		f.status, f.detail = statusFail, fmt.Sprintf("cannot bind %s: %v", addr, errText(err))
		if errors.Is(err, unix.EADDRINUSE) {
			f.detail += " (another program holds the port without SO_REUSEADDR)"
		}
		f.fix = fixPort
		return f
	}
	defer pc.Close()
	send, err := udpsock.BroadcastSender(nil)
	if err != nil {
		f.status, f.detail = statusFail, "cannot open a UDP socket: "+errText(err)
		return f
	}
	defer send.Close()
	probe := fmt.Appendf(nil, "shmfs-doctor-probe %016x", proc.RandomID())
	dst := &net.UDPAddr{IP: net.ParseIP(registration.LocalBroadcast), Port: port}
	if _, err := send.WriteTo(probe, dst); err != nil {
		f.status, f.detail = statusFail, fmt.Sprintf("cannot broadcast to %v: %v", dst, errText(err))
		f.fix = "bring up the loopback interface: ip link set lo up"
		return f
	}
	deadline := time.Now().Add(time.Second)
	_ = pc.SetReadDeadline(deadline)
	buf := make([]byte, 64<<10)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			f.status, f.detail = statusFail, fmt.Sprintf("own broadcast to %v did not come back within 1s (%v)", dst, errText(err))
			f.fix = "bring up the loopback interface (ip link set lo up) and allow UDP to 127.255.255.255 in the firewall"
			return f
		}
		if bytes.Equal(buf[:n], probe) {
			break
		}
	}
	f.detail = "bound beside other shmfs processes; own broadcast received"
	return f
}

func checkStaleObjects(domain string) finding {
	f := finding{what: "stale objects"}
	where, flag := fmt.Sprintf("domain %q", domain), "--domain "+domain
	if domain == "" {
		where, flag = "any domain", "--all-domains"
	}
	stale, err := shm.Sweep(domain, true)
	if err != nil {
		f.status, f.detail = statusFail, errText(err)
		return f
	}
	if len(stale) == 0 {
		f.detail = "none in " + where
		return f
	}
	var size int64
	for _, s := range stale {
		size += s.Size
	}
	f.status = statusFail
	f.detail = fmt.Sprintf("%d objects (%s) of dead processes in %s", len(stale), formatBytes(float64(size)), where)
	f.fix = "shmfs clean " + flag + "   (list them first with --dry-run)"
	return f
}

// mountInfo is one shmfs line of /proc/mounts.
type mountInfo struct{ source, point, fstype string }

// shmfsMounts returns the shmfs FUSE mounts listed in a /proc/mounts file.
func shmfsMounts(r io.Reader) ([]mountInfo, error) {
	var out []mountInfo
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		m := mountInfo{source: mounttab.Unescape(fields[0]), point: mounttab.Unescape(fields[1]), fstype: fields[2]}
		if m.fstype == "fuse.shmfs" || (strings.HasPrefix(m.fstype, "fuse") && strings.HasPrefix(m.source, "shmfs")) {
			out = append(out, m)
		}
	}
	return out, sc.Err()
}

// statfs asks a mount's daemon (stat may be answered from the kernel's
// attribute cache for a while after the daemon died).
func statfs(path string) error {
	var sfs unix.Statfs_t
	return unix.Statfs(path, &sfs)
}

// mountAnswerTimeout bounds how long doctor waits for a mount's daemon to
// answer a stat: a stopped or stuck daemon never answers.
const mountAnswerTimeout = 2 * time.Second

// errNoAnswer: a mount's daemon did not answer within mountAnswerTimeout.
var errNoAnswer = errors.New("no answer")

// statAll stats every path at once and waits at most d for the answers;
// a path whose stat has not returned by then gets errNoAnswer (its stat
// goroutine stays blocked in the kernel until the daemon answers or dies).
func statAll(paths []string, stat func(string) error, d time.Duration) []error {
	type result struct {
		i   int
		err error
	}
	done := make(chan result, len(paths))
	for i, p := range paths {
		go func() {
			done <- result{i, stat(p)}
		}()
	}
	errs := make([]error, len(paths))
	for i := range errs {
		errs[i] = errNoAnswer
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	for range paths {
		select {
		case r := <-done:
			errs[r.i] = r.err
		case <-timer.C:
			return errs
		}
	}
	return errs
}

// checkStaleMounts finds shmfs mounts whose daemon died (stat on them gives
// ENOTCONN, or ECONNABORTED after an abort through fusectl) or does not
// answer (stopped or stuck: stat waits).
func checkStaleMounts(procMounts string, stat func(string) error) finding {
	f := finding{what: "shmfs mounts"}
	file, err := os.Open(procMounts)
	if err != nil {
		f.status, f.detail = statusWarn, "cannot read mount table: "+errText(err)
		return f
	}
	defer file.Close()
	ms, err := shmfsMounts(file)
	if err != nil {
		f.status, f.detail = statusWarn, "cannot read mount table: "+errText(err)
		return f
	}
	points := make([]string, len(ms))
	for i, m := range ms {
		points[i] = m.point
	}
	var stale, hung, unknown []string
	for i, err := range statAll(points, stat, mountAnswerTimeout) {
		m := ms[i]
		switch {
		case err == nil:
		case errors.Is(err, syscall.ENOTCONN), errors.Is(err, syscall.ECONNABORTED):
			stale = append(stale, m.point)
		case errors.Is(err, errNoAnswer):
			hung = append(hung, m.point)
		default:
			unknown = append(unknown, fmt.Sprintf("%s (%s)", m.point, errText(err)))
		}
	}
	switch {
	case len(stale) > 0:
		f.status = statusFail
		f.detail = fmt.Sprintf("%d stale (daemon gone): %s", len(stale), strings.Join(stale, ", "))
		f.fix = detachCommands(stale)
	case len(hung) > 0:
		f.status = statusFail
		f.detail = fmt.Sprintf("%d not answering within %v (daemon stopped or stuck): %s", len(hung), mountAnswerTimeout, strings.Join(hung, ", "))
		f.fix = "# continue or kill the daemon (ps -C shmfs -o pid,stat,args), or detach:\n" + detachCommands(hung)
	case len(unknown) > 0:
		f.status = statusWarn
		f.detail = fmt.Sprintf("%d mounted, cannot check: %s", len(ms), strings.Join(unknown, ", "))
		f.fix = "run doctor as the user who mounted them, or as root"
	default:
		f.detail = fmt.Sprintf("%d mounted, none stale", len(ms))
	}
	return f
}

// detachCommands returns the commands that detach the mounts at points,
// one per line (lazy: they work without the daemon's answer).
func detachCommands(points []string) string {
	var cmds []string
	for _, p := range points {
		if os.Geteuid() == 0 {
			cmds = append(cmds, "umount -l "+quotePath(p))
		} else {
			cmds = append(cmds, "fusermount3 -uz "+quotePath(p))
		}
	}
	return strings.Join(cmds, "\n")
}

// quotePath quotes a path for a shell command line when needed.
func quotePath(p string) string {
	if strings.ContainsAny(p, " \t\n'\"\\$`;&|<>()*?[]#~") {
		return "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
	}
	return p
}

// errText is an error without Go's "op path:" wrapping noise.
func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err.Error()
	}
	return err.Error()
}
