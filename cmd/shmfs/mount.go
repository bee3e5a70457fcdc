package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/shmfs/shmfs/cmd/shmfs/internal/metrics"
	"github.com/shmfs/shmfs/ecal"
	shmfs "github.com/shmfs/shmfs/fs"
)

var mountCommand = &command{
	name:  "mount",
	args:  "MOUNTPOINT",
	short: "mount the shmfs filesystem (runs until unmounted or interrupted)",
	long: `Mounts the domain as a filesystem on MOUNTPOINT (created if missing) and
serves it in the foreground until interrupted (Ctrl-C, SIGTERM) or unmounted
from outside (umount MOUNTPOINT, fusermount3 -u MOUNTPOINT). Every topic is a
directory with the files data (write: publish one message per write; read:
block for the next message), header and events.

As root the kernel is asked directly; other users need fusermount3 (package
fuse3). A stale mount left on MOUNTPOINT by a crashed shmfs is detached
first. 'shmfs doctor' checks /dev/fuse and fusermount3.

With --ecal the process also runs the eCAL gateway ('shmfs ecal --help'):
eCAL 5.x topics of this host appear in the mount, and the domain's topics
in eCAL.`,
	examples: `  mkdir -p /tmp/shmfs && shmfs mount /tmp/shmfs &
  echo hello > /tmp/shmfs/greetings/data      # publish
  cat /tmp/shmfs/greetings/data               # subscribe (blocks)
  shmfs mount --allow-other --domain robot /run/shmfs
  shmfs mount --ecal /tmp/shmfs               # eCAL topics appear as directories too
  shmfs mount --metrics 127.0.0.1:9464 /tmp/shmfs   # Prometheus scrapes http://127.0.0.1:9464/metrics
  shmfs mount --ecal --ecal-import 'camera*' --ecal-export cmd /tmp/shmfs`,
	run: runMount,
}

func runMount(c *cli, args []string) error {
	fs := c.flags()
	allowOther := fs.Bool("allow-other", false, "let other users use the mount (non-root: needs user_allow_other in /etc/fuse.conf)")
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
	mp := fs.Arg(0)
	if _, err := os.Stat(mp); errors.Is(err, os.ErrNotExist) {
		// A missing mountpoint is created, so that 'shmfs mount /tmp/shmfs'
		// works on a fresh machine.
		if err := os.MkdirAll(mp, 0o755); err != nil {
			return fmt.Errorf("create mountpoint: %w", err)
		}
	}
	if *ackTimeout < 0 {
		return usageErrorf("--ack-timeout %v is negative (0 means fire and forget)", *ackTimeout)
	}
	ack := *ackTimeout
	if ack == 0 {
		ack = -1 // MountOptions: negative means fire and forget
	}
	var gw *ecal.Gateway
	if *withECAL {
		cfg, err := ef.config(c, c.stderr, *ackTimeout)
		if err != nil {
			return err
		}
		if gw, err = startGateway(cfg); err != nil {
			return err
		}
		defer gw.Close()
	}
	var observer shmfs.Observer
	if *metricsAddr != "" {
		m := metrics.NewMount()
		stopMetrics, err := serveMetrics(c, *metricsAddr, m)
		if err != nil {
			return err
		}
		defer stopMetrics()
		observer = m
	}
	ctx, stop := signalContext()
	defer stop()
	srv, err := shmfs.Mount(ctx, mp, shmfs.MountOptions{Config: c.config(), AllowOther: *allowOther, Debug: *debug, AckTimeout: ack, Observer: observer})
	if err != nil {
		if errors.Is(err, shmfs.ErrAlreadyMounted) {
			return fmt.Errorf("%w (unmount it first: umount %s)", err, mp)
		}
		return fmt.Errorf("%w; 'shmfs doctor' checks /dev/fuse and fusermount3", err)
	}
	fmt.Fprintf(c.stderr, "shmfs: mounted domain %q on %s; Ctrl-C or 'umount %s' to stop\n", c.domain, srv.Mountpoint(), srv.Mountpoint())
	if gw != nil {
		fmt.Fprintf(c.stderr, "shmfs: ecal: bridging eCAL (glibc %v) and domain %q\n", gw.Glibc(), c.domain)
	}
	if err := srv.Wait(); err != nil && !errors.Is(err, shmfs.ErrBusy) {
		return fmt.Errorf("unmount: %w", err)
	}
	return nil
}
