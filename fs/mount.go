package fs

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/shmfs/shmfs/core"
)

// Defaults of MountOptions.
const (
	DefaultLinger     = 10 * time.Second
	DefaultAckTimeout = time.Second
	// DefaultMaxBuffer bounds the data area of the mount's publishers:
	// 16 MiB holds a whole window of 64 KiB messages, or 16 messages of
	// 1 MiB in flight, so that large writes rarely wait for a reader's
	// acknowledgement (core's default, 4 MiB, holds 3 of 1 MiB).
	DefaultMaxBuffer = 16 << 20
	// DefaultUmask: others (and the group) may read, not publish.
	DefaultUmask = 0o022
	// MaxWrite is the largest write(2) that arrives as one request, and so
	// the largest message one write(2) to data publishes.
	MaxWrite = 1 << 20
)

// Errors of Mount and Unmount (test with errors.Is).
var (
	// ErrAlreadyMounted: a live shmfs is mounted on the mountpoint.
	ErrAlreadyMounted = errors.New("shmfs: mountpoint already has a live shmfs mount")
	// ErrBusy: the kernel refused to unmount because a process keeps a file
	// open; the mount was detached lazily (it disappears from the
	// namespace, and ends when the last such file is closed).
	ErrBusy = errors.New("shmfs: mount busy, detached lazily")
)

// MountOptions configure Mount. The zero value gives the defaults.
type MountOptions struct {
	// Config selects the domain and registration of the core Node.
	Config core.Config
	// AllowOther lets other users use the mount (non-root needs
	// user_allow_other in /etc/fuse.conf). The kernel checks every access
	// against the modes the files show (default_permissions), so the
	// Umask decides what other users may do.
	AllowOther bool
	// Umask clears permission bits of the files and directories, whose
	// full modes are: directories rwxrwxrwx, data rw-rw-rw-, whole
	// -w--w--w-, header, events and .shmfs r--r--r--. nil means 022: only
	// the mounting user (and root) publishes and declares topics, others
	// read. 0 lets everyone publish.
	Umask *uint32
	// Debug logs every FUSE request.
	Debug bool
	// Logger receives diagnostics (default: standard error, "shmfs: ").
	Logger *log.Logger
	// AckTimeout is the acknowledgement timeout of the mount's publishers
	// (default 1 s; negative: fire and forget). With it a write(2) to data
	// waits while a subscriber process is a whole window (1024 messages)
	// behind, so that a shell loop cannot overrun a reader; a reader that
	// stops reading for longer is set aside (it loses messages, counted)
	// and the others go on.
	AckTimeout time.Duration
	// Linger is how long a topic's publisher and monitor stay after its
	// last file was closed (default 10 s), so that `echo` in a loop does
	// not create a publisher per line.
	Linger time.Duration
	// MaxMessageSize bounds a message written through whole (default
	// core.DefaultMaxMessageSize, 64 MiB).
	MaxMessageSize int
	// Observer, when set, is told of every message written and read
	// through the mount (metrics; see Observer).
	Observer Observer
	// MaxBuffer bounds how far a memory file of the mount's publishers
	// grows to hold a window of messages (default DefaultMaxBuffer; it
	// grows only as the messages need).
	MaxBuffer int

	uid, gid uint32
	umask    uint32
}

func (o MountOptions) withDefaults() MountOptions {
	if o.Logger == nil {
		o.Logger = log.New(os.Stderr, "shmfs: ", log.LstdFlags)
	}
	if o.AckTimeout == 0 {
		o.AckTimeout = DefaultAckTimeout
	}
	if o.Linger <= 0 {
		o.Linger = DefaultLinger
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = core.DefaultMaxMessageSize
	}
	if o.MaxBuffer <= 0 {
		o.MaxBuffer = DefaultMaxBuffer
	}
	o.uid, o.gid = uint32(os.Getuid()), uint32(os.Getgid())
	o.umask = DefaultUmask
	if o.Umask != nil {
		o.umask = *o.Umask & 0o777
	}
	return o
}

// Server is a mounted shmfs.
type Server struct {
	mountpoint string
	srv        *fuse.Server
	fs         *filesystem
	conn       string // FUSE connection id (minor device number), "" if unknown

	served chan struct{} // closed when the FUSE serve loop ended

	unmountOnce sync.Once
	finishOnce  sync.Once
	done        chan struct{} // closed after everything was released

	mu          sync.Mutex
	shutdownErr error // why unmounting was not clean (ErrBusy)
	err         error // the shutdown's result, final once done is closed
}

// Mount mounts shmfs on mountpoint and serves it until ctx is cancelled,
// Unmount is called or the filesystem is unmounted from outside (umount,
// fusermount3 -u). The caller turns SIGINT/SIGTERM into ctx cancellation
// (signal.NotifyContext). As root the kernel is asked directly; otherwise
// through fusermount3. A stale mount left by a crashed daemon on
// mountpoint is detached first.
func Mount(ctx context.Context, mountpoint string, o MountOptions) (*Server, error) {
	o = o.withDefaults()
	node, err := core.OpenNode(o.Config)
	if err != nil {
		return nil, fmt.Errorf("shmfs: mount %s: %w", mountpoint, err)
	}
	be := coreBackend{n: node, ack: max(o.AckTimeout, 0), maxMessage: o.MaxMessageSize, maxBuffer: o.MaxBuffer}
	s, err := mount(ctx, mountpoint, o, be)
	if err != nil {
		_ = node.Close()
		return nil, err
	}
	return s, nil
}

func mount(ctx context.Context, mountpoint string, o MountOptions, be backend) (*Server, error) {
	o = o.withDefaults()
	mp, err := filepath.Abs(mountpoint)
	if err != nil {
		return nil, fmt.Errorf("shmfs: mount %s: %w", mountpoint, err)
	}
	if err := prepareMountpoint(mp, o.Logger); err != nil {
		return nil, err
	}
	if err := checkFUSE(mp, o.AllowOther); err != nil {
		return nil, fmt.Errorf("shmfs: mount %s: %w", mp, err)
	}
	f := newFilesystem(be, o, o.Logger)
	entry := time.Second
	gopts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther:    o.AllowOther,
			Debug:         o.Debug,
			Logger:        o.Logger,
			MaxWrite:      MaxWrite,
			FsName:        "shmfs:" + be.config().Domain,
			Name:          "shmfs",
			DirectMount:   os.Geteuid() == 0,
			DisableXAttrs: true, // else the kernel asks for security xattrs before writes
			DisableSplice: true, // our data is in memory: plain writev
			EnablePoll:    true, // data and events answer poll (the daemon never opens its own files)
			// The kernel checks the modes shown: with allow_other, other
			// users get what they show.
			Options: []string{"default_permissions"},
		},
		RootStableAttr: &gofs.StableAttr{Ino: 1, Mode: syscall.S_IFDIR},
		EntryTimeout:   &entry,
		AttrTimeout:    &entry,
		UID:            o.uid,
		GID:            o.gid,
		Logger:         o.Logger,
	}
	srv, err := fuse.NewServer(gofs.NewNodeFS(f.root, gopts), mp, &gopts.MountOptions)
	if err != nil {
		f.cancel()
		return nil, fmt.Errorf("shmfs: mount %s: %w", mp, err)
	}
	s := &Server{mountpoint: mp, srv: srv, fs: f, served: make(chan struct{}), done: make(chan struct{})}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		f.cancel()
		return nil, fmt.Errorf("shmfs: mount %s: %w", mp, err)
	}
	s.conn = connectionID(mp)
	go f.watch()
	go f.janitor()
	go func() {
		srv.Wait()
		close(s.served)
		s.finish()
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = s.Unmount()
		case <-s.done:
		}
	}()
	return s, nil
}

// Mountpoint returns the absolute mountpoint.
func (s *Server) Mountpoint() string { return s.mountpoint }

// Wait blocks until the filesystem is unmounted and everything it held
// (publishers, subscribers, the core Node, shared memory) is released. It
// returns the error of the shutdown (wrapping ErrBusy if the mount had to
// be detached lazily), nil after a clean unmount.
func (s *Server) Wait() error {
	<-s.done
	return s.err
}

// Unmount wakes every blocked reader (their reads return end of file),
// unmounts, and releases everything; it returns what Wait returns. It is
// idempotent. If a process keeps a file open the mount is detached lazily
// (and aborted where the fusectl filesystem allows) and the error wraps
// ErrBusy.
func (s *Server) Unmount() error {
	s.unmountOnce.Do(s.unmount)
	<-s.done
	return s.err
}

func (s *Server) unmount() {
	s.fs.beginShutdown()
	select {
	case <-s.served: // already unmounted from outside
	default:
		if uerr := s.unmountBounded(); uerr != nil {
			err := fmt.Errorf("%w: %s: %v", ErrBusy, s.mountpoint, uerr)
			if derr := detach(s.mountpoint); derr != nil {
				err = fmt.Errorf("%w; detach: %v", err, derr)
			}
			s.setShutdownErr(err) // before the abort lets finish run
			abortConnection(s.conn)
		}
	}
	select {
	case <-s.served:
	case <-time.After(time.Second):
		// The kernel keeps a detached connection while a file is open
		// (fusectl, which could abort it, is not always mounted): release
		// our side anyway; the rest ends with the process or the last file.
	}
	s.finish()
}

// unmountWait bounds how long the serve loops may take to end after the
// unmount: they end at once unless another mount namespace holds a copy of
// the mount.
const unmountWait = 2 * time.Second

// unmountBounded unmounts through go-fuse, which then waits for its request
// loops without a bound. They end when the kernel ends the connection —
// which it does not while another mount namespace (a process that unshared
// it while mounted: a container, `unshare -m`) holds a copy of the mount.
// After unmountWait the connection is aborted (fusectl) so that they end;
// if even that fails the loops are left to end with the process.
func (s *Server) unmountBounded() error {
	unmounted := make(chan error, 1)
	go func() { unmounted <- s.srv.Unmount() }()
	select {
	case err := <-unmounted:
		return err
	case <-time.After(unmountWait):
	}
	s.fs.log.Printf("%s: unmounted, but the kernel still serves a copy of the mount (another mount namespace holds it): aborting the connection", s.mountpoint)
	abortConnection(s.conn)
	select {
	case err := <-unmounted:
		return err
	case <-time.After(unmountWait):
		return nil
	}
}

func (s *Server) setShutdownErr(err error) {
	s.mu.Lock()
	s.shutdownErr = err
	s.mu.Unlock()
}

// finish releases everything once; it runs after the serve loop ended or
// at the end of Unmount, whichever comes first.
func (s *Server) finish() {
	s.finishOnce.Do(func() {
		ferr := s.fs.finish()
		if errors.Is(ferr, core.ErrClosed) {
			ferr = nil
		}
		s.mu.Lock()
		s.err = errors.Join(s.shutdownErr, ferr)
		s.mu.Unlock()
		close(s.done)
	})
}
