package fs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/shmfs/shmfs/core"
)

// Defaults of MountOptions.
const (
	DefaultQueueSize  = 256
	DefaultLinger     = 10 * time.Second
	DefaultAckTimeout = time.Second
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
	// user_allow_other in /etc/fuse.conf).
	AllowOther bool
	// Debug logs every FUSE request.
	Debug bool
	// Logger receives diagnostics (default: standard error, "shmfs: ").
	Logger *log.Logger
	// AckTimeout is the acknowledgement timeout of the mount's publishers
	// (default 1 s; negative: fire and forget). With it a write(2) to data
	// returns once every subscriber process took the message or timed out,
	// so that a shell loop cannot overrun a reader: a full reader queue
	// holds the writer back. A subscriber that times out is skipped until
	// it catches up.
	AckTimeout time.Duration
	// QueueSize is the message queue of each open data file that reads
	// (default 256 messages). Memory is up to QueueSize times message size.
	QueueSize int
	// Linger is how long a topic's publisher and monitor stay after its
	// last file was closed (default 10 s), so that `echo` in a loop does
	// not create a publisher per line.
	Linger time.Duration
	// MaxMessageSize bounds a message written through whole (default
	// core.DefaultMaxMessageSize, 64 MiB).
	MaxMessageSize int

	uid, gid uint32
}

func (o MountOptions) withDefaults() MountOptions {
	if o.Logger == nil {
		o.Logger = log.New(os.Stderr, "shmfs: ", log.LstdFlags)
	}
	if o.AckTimeout == 0 {
		o.AckTimeout = DefaultAckTimeout
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.Linger <= 0 {
		o.Linger = DefaultLinger
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = core.DefaultMaxMessageSize
	}
	o.uid, o.gid = uint32(os.Getuid()), uint32(os.Getgid())
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
	unmountErr  error

	finishOnce sync.Once
	finishErr  error
	done       chan struct{} // closed after everything was released
}

// Mount mounts shmfs on mountpoint and serves it until ctx is cancelled,
// Unmount is called or the filesystem is unmounted from outside (umount,
// fusermount3 -u). The caller turns SIGINT/SIGTERM into ctx cancellation
// (signal.NotifyContext). As root the kernel is asked directly; otherwise
// through fusermount3. A stale mount left by a crashed daemon on
// mountpoint is detached first.
func Mount(ctx context.Context, mountpoint string, o MountOptions) (*Server, error) {
	node, err := core.OpenNode(o.Config)
	if err != nil {
		return nil, fmt.Errorf("shmfs: mount %s: %w", mountpoint, err)
	}
	ack := o.AckTimeout
	if ack == 0 {
		ack = DefaultAckTimeout
	}
	s, err := mount(ctx, mountpoint, o, coreBackend{n: node, ack: max(ack, 0)})
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
		},
		EntryTimeout: &entry,
		AttrTimeout:  &entry,
		UID:          o.uid,
		GID:          o.gid,
		Logger:       o.Logger,
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
// (publishers, subscribers, the core Node, shared memory) is released.
func (s *Server) Wait() error {
	<-s.done
	return s.finishErr
}

// Unmount wakes every blocked reader (their reads return end of file),
// unmounts, and releases everything. It is idempotent. If a process keeps a
// file open the mount is detached lazily (and aborted where the fusectl
// filesystem allows) and the error wraps ErrBusy.
func (s *Server) Unmount() error {
	s.unmountOnce.Do(func() { s.unmountErr = s.unmount() })
	return s.unmountErr
}

func (s *Server) unmount() error {
	s.fs.beginShutdown()
	var err error
	select {
	case <-s.served: // already unmounted from outside
	default:
		if uerr := s.srv.Unmount(); uerr != nil {
			err = fmt.Errorf("%w: %s: %v", ErrBusy, s.mountpoint, uerr)
			if derr := detach(s.mountpoint); derr != nil {
				err = fmt.Errorf("%w; detach: %v", err, derr)
			}
			abortConnection(s.conn)
		}
	}
	select {
	case <-s.served:
	case <-time.After(3 * time.Second):
		// The kernel keeps the detached connection while a file is open;
		// release our side anyway.
	}
	ferr := s.finish()
	return errors.Join(err, ferr)
}

// finish releases everything once; it runs after the serve loop ended or
// at the end of Unmount, whichever comes first.
func (s *Server) finish() error {
	s.finishOnce.Do(func() {
		s.finishErr = s.fs.finish()
		if errors.Is(s.finishErr, core.ErrClosed) {
			s.finishErr = nil
		}
		close(s.done)
	})
	<-s.done
	return s.finishErr
}

// prepareMountpoint detaches stale mounts (a crashed daemon leaves the
// mountpoint answering ENOTCONN) and refuses a live shmfs.
func prepareMountpoint(mp string, logger *log.Logger) error {
	for range 8 { // stale mounts may be stacked
		_, err := os.Stat(mp)
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
		return fmt.Errorf("shmfs: mountpoint: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("shmfs: mountpoint %s: %w", mp, syscall.ENOTDIR)
	}
	for _, m := range mounts() {
		if m.point == mp && m.fstype == "fuse.shmfs" {
			return fmt.Errorf("%w: %s", ErrAlreadyMounted, mp)
		}
	}
	return nil
}

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
		out = append(out, mountEntry{dev: fields[2], point: unescapeMount(fields[4]), fstype: fields[sep+1]})
	}
	return out
}

// unescapeMount decodes mountinfo's octal escapes (\040 for space, ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
