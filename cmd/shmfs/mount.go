package main

import (
	"bufio"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shmfs/shmfs/cmd/shmfs/internal/metrics"
	"github.com/shmfs/shmfs/ecal"
	shmfs "github.com/shmfs/shmfs/fs"
)

var mountCommand = &command{
	name:  "mount",
	args:  "MOUNTPOINT",
	short: "mount the shmfs filesystem (runs until stopped)",
	long: `Mounts the domain as a filesystem on MOUNTPOINT (created if missing) and
serves it until interrupted (Ctrl-C, SIGTERM), stopped with 'shmfs umount
MOUNTPOINT', or unmounted from outside (umount, fusermount3 -u: refused
while a file is open). Stopping ends blocked reads with end of file. Every
topic is a directory with the files data (write: publish one message per
write; read: block for the next message published after the open), whole,
header and events; 'mkdir' declares a topic.

In the foreground by default; with --background it returns once the
filesystem is mounted (exit 0; or 1 with the reason) and serves in a
process of its own, whose diagnostics are discarded.

As root the kernel is asked directly; other users need fusermount3 (package
fuse3) and access to /dev/fuse, and --allow-other needs user_allow_other in
/etc/fuse.conf. The permissions shown are enforced for every user
(default_permissions). A stale mount left on MOUNTPOINT by a crashed shmfs
is detached first. 'shmfs doctor' checks all of it.

With --ecal the process also runs the eCAL gateway ('shmfs ecal --help'):
eCAL 5.x topics of this host appear in the mount, and the domain's topics
in eCAL.`,
	examples: `  shmfs mount --background /tmp/shmfs         # returns once mounted
  mkdir /tmp/shmfs/greetings                  # declare a topic
  cat /tmp/shmfs/greetings/data &             # subscribe: prints what is published from now on
  echo hello > /tmp/shmfs/greetings/data      # publish: the cat prints hello
  cat /tmp/shmfs/greetings/header             # the newest message's header
  shmfs umount /tmp/shmfs                     # stop: the cat gets end of file
  shmfs mount --allow-other --domain robot /run/shmfs
  shmfs mount --ecal /tmp/shmfs               # eCAL topics appear as directories too
  shmfs mount --metrics 127.0.0.1:9464 /tmp/shmfs   # Prometheus scrapes http://127.0.0.1:9464/metrics
  shmfs mount --ecal --ecal-import 'camera*' --ecal-export cmd /tmp/shmfs`,
	run: runMount,
}

// readyFDEnv names the descriptor on which a background mount's server
// process reports "ok" or its error to the process that started it.
const readyFDEnv = "SHMFS_MOUNT_READY_FD"

func runMount(c *cli, args []string) error {
	fs := c.flags()
	allowOther := fs.Bool("allow-other", false, "let other users use the mount (non-root: needs user_allow_other in /etc/fuse.conf); the modes shown are enforced")
	umask := fs.String("umask", "022", "permission bits cleared from every file and directory (octal): 022 lets only you publish and declare topics, others read; 0 lets everyone")
	background := fs.BoolP("background", "b", false, "return once mounted and serve in a background process")
	debug := fs.Bool("debug", false, "log every FUSE request on standard error")
	ackTimeout := fs.Duration("ack-timeout", shmfs.DefaultAckTimeout, "how long a write through the mount (or a message imported from eCAL) waits for every subscriber to take the message; 0 = fire and forget (a fast writer may then overwrite messages a slow reader has not read)")
	metricsAddr := fs.String("metrics", "", metricsFlagHelp)
	withECAL := fs.Bool("ecal", false, "also run the eCAL gateway (as 'shmfs ecal' does), with the --ecal-* flags")
	ef := addECALFlags(fs, true)
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if !*withECAL {
		for _, name := range []string{"ecal-import", "ecal-export", "ecal-port", "ecal-host-group", "ecal-ack-timeout", "ecal-buffers", "condvar-layout"} {
			if fs.Changed(name) {
				return usageErrorf("--%s needs --ecal", name)
			}
		}
	}
	switch fs.NArg() {
	case 0:
		return usageErrorf("missing MOUNTPOINT")
	case 1:
	default:
		return usageErrorf("too many arguments: %q (want one MOUNTPOINT)", fs.Args()[1:])
	}
	if *ackTimeout < 0 {
		return usageErrorf("--ack-timeout %v is negative (0 means fire and forget)", *ackTimeout)
	}
	um, err := strconv.ParseUint(*umask, 8, 32)
	if err != nil || um > 0o777 {
		return usageErrorf("--umask %q: want an octal mode 0..777, e.g. 022", *umask)
	}
	mp, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		return err
	}
	ready := readyWriter()
	if *background && ready == nil {
		return startBackground(c, mp)
	}
	o := shmfs.MountOptions{Config: c.config(), AllowOther: *allowOther, Debug: *debug, Umask: ptr(uint32(um))}
	err = serveMount(c, mp, ready, o, *ackTimeout, *metricsAddr, *withECAL, ef)
	if ready != nil {
		// Still unreported (a failure before the mount): the starter
		// prints it.
		ready.fail(err)
	}
	return err
}

// serveMount mounts mp and serves it until stopped.
func serveMount(c *cli, mp string, ready *readyPipe, o shmfs.MountOptions, ackTimeout time.Duration, metricsAddr string, withECAL bool, ef *ecalFlags) error {
	// Before a missing mountpoint is created (inside a mount, mkdir would
	// declare a topic). A shmfs already on mp is left to Mount: a stale
	// one (its daemon died) is detached there, a live one refused.
	if err := shmfs.CheckOutsideMounts(mp); err != nil && !errors.Is(err, shmfs.ErrAlreadyMounted) {
		return mountError(mp, err)
	}
	if _, err := os.Stat(mp); errors.Is(err, os.ErrNotExist) {
		// A missing mountpoint is created, so that 'shmfs mount /tmp/shmfs'
		// works on a fresh machine.
		if err := os.MkdirAll(mp, 0o755); err != nil {
			return fmt.Errorf("create mountpoint: %w", err)
		}
	}
	o.AckTimeout = ackTimeout
	if o.AckTimeout == 0 {
		o.AckTimeout = -1 // MountOptions: negative means fire and forget
	}
	o.Logger = log.New(c.stderr, "shmfs: mount: ", 0)
	var gw *ecal.Gateway
	if withECAL {
		cfg, err := ef.config(c, c.stderr, ackTimeout)
		if err != nil {
			return err
		}
		if gw, err = startGateway(cfg); err != nil {
			return err
		}
		defer gw.Close()
	}
	if metricsAddr != "" {
		m := metrics.NewMount()
		stopMetrics, err := serveMetrics(c, metricsAddr, m)
		if err != nil {
			return err
		}
		defer stopMetrics()
		o.Observer = m
	}
	ctx, stop := signalContext()
	defer stop()
	srv, err := shmfs.Mount(ctx, mp, o)
	if err != nil {
		return mountError(mp, err)
	}
	if ready != nil {
		ready.ok()
	} else {
		fmt.Fprintf(c.stderr, "shmfs: mounted domain %q on %s (pid %d); stop: Ctrl-C or %s\n", c.domain, mp, os.Getpid(), stopHint(mp))
	}
	if gw != nil {
		fmt.Fprintf(c.stderr, "shmfs: ecal: bridging eCAL (glibc %v) and domain %q\n", gw.Glibc(), c.domain)
	}
	if err := srv.Wait(); err != nil && !errors.Is(err, shmfs.ErrBusy) {
		return fmt.Errorf("unmount: %w", err)
	}
	return nil
}

// stopHint says how to stop the mount on mp from another shell: shmfs
// umount works while readers block; umount(8) and fusermount3 -u are
// refused then ("target is busy").
func stopHint(mp string) string {
	un := "fusermount3 -u"
	if os.Geteuid() == 0 {
		un = "umount"
	}
	return fmt.Sprintf("'shmfs umount %s' (%s works only while no file is open)", quotePath(mp), un)
}

// mountError turns a failed mount into one line with the cause and the
// fix; only an unexplained failure points at 'shmfs doctor'.
func mountError(mp string, err error) error {
	switch {
	case errors.Is(err, shmfs.ErrAlreadyMounted):
		return fmt.Errorf("%w (stop it first: shmfs umount %s)", err, quotePath(mp))
	case errors.Is(err, shmfs.ErrMountpoint), errors.Is(err, shmfs.ErrFUSE):
		return err
	}
	msg := strings.TrimSpace(err.Error()) // go-fuse ends some messages with a newline
	return fmt.Errorf("%s; 'shmfs doctor' checks /dev/fuse, fusermount3 and stale mounts", msg)
}

// readyPipe is a background server's report to the process that started
// it: one line, "ok" or the error, then closed.
type readyPipe struct{ f *os.File }

func readyWriter() *readyPipe {
	v := os.Getenv(readyFDEnv)
	if v == "" {
		return nil
	}
	os.Unsetenv(readyFDEnv)
	var fd uintptr
	if _, err := fmt.Sscan(v, &fd); err != nil {
		return nil
	}
	return &readyPipe{f: os.NewFile(fd, "ready")}
}

func (r *readyPipe) ok() {
	if r.f != nil {
		fmt.Fprintln(r.f, "ok")
		r.f.Close()
		r.f = nil
	}
}

func (r *readyPipe) fail(err error) {
	if r.f != nil {
		msg := "exited"
		if err != nil {
			msg = errorLine("mount", err)
		}
		fmt.Fprintln(r.f, msg)
		r.f.Close()
		r.f = nil
	}
}

// startBackground runs this command again as a server process of its own
// (new session, no terminal, output discarded) and waits until it reports
// that the filesystem is mounted, or why not.
func startBackground(c *cli, mp string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("background: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("background: %w", err)
	}
	defer r.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		w.Close()
		return fmt.Errorf("background: %w", err)
	}
	defer null.Close()
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, null
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("background: %w", err)
	}
	line, _ := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	if line != "ok" {
		err := cmd.Wait()
		if line == "" || line == "exited" {
			line = fmt.Sprintf("shmfs: mount: the server process ended before mounting (%v)", err)
		}
		return reported(line)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	fmt.Fprintf(c.stderr, "shmfs: mounted domain %q on %s, served in the background by pid %d; stop: %s\n", c.domain, mp, pid, stopHint(mp))
	return nil
}

func ptr[T any](v T) *T { return &v }

// reported is an error whose one line the server process already formatted.
type reported string

func (r reported) Error() string { return string(r) }
