// Package shm creates, opens, grows and removes named shared-memory objects
// in /dev/shm: the common base of memory files, mutexes and events.
//
// Every object starts with a 64-byte common header (see header.go) naming
// its kind, layout version and creator. Objects are created race-free: the
// file is built under a temporary name and hard-linked to its final name
// only when complete, so an opener never sees a torn header. A process maps
// each name once; further opens share that mapping (reference counted).
package shm

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
)

// Kind says what an object holds.
type Kind uint16

// Object kinds.
const (
	KindMemfile Kind = 1
	KindMutex   Kind = 2
	KindEvent   Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindMemfile:
		return "memfile"
	case KindMutex:
		return "mutex"
	case KindEvent:
		return "event"
	}
	return fmt.Sprintf("kind(%d)", uint16(k))
}

const (
	// HeaderSize is the size of the common header at offset 0 of every
	// object; kind-specific data starts here.
	HeaderSize = 64
	// MaxSize bounds the size of any object (1 TiB); larger files are
	// refused as corrupt, larger requests as ErrNoSpace.
	MaxSize = 1 << 40
	// TempSuffix marks an object under construction:
	// shmfs_<domain>_<random>_tmp. Create and Open refuse such names.
	TempSuffix = "tmp"
)

// Sentinel errors; test with errors.Is.
var (
	ErrExist            = errors.New("shm: object exists")
	ErrNotExist         = errors.New("shm: no such object")
	ErrCorrupt          = errors.New("shm: object corrupt")
	ErrVersion          = errors.New("shm: unsupported layout version")
	ErrKind             = errors.New("shm: object of another kind")
	ErrPermission       = errors.New("shm: permission denied")
	ErrForeignNamespace = errors.New("shm: object created in another pid namespace")
	ErrNoSpace          = errors.New("shm: no space in /dev/shm")
	ErrClosed           = errors.New("shm: segment closed")
)

var pageSize = os.Getpagesize()

// Options tell Create and Open what to make or expect.
type Options struct {
	// Mode: permission bits set with fchmod after create; 0 means 0600.
	// World-writable modes are refused. The umask is never touched.
	Mode os.FileMode
	// Size: total bytes including the common header, rounded up to the
	// page size; minimum one page. Create only.
	Size int
	// Version of the kind-specific layout: written at create; at open a
	// file with a bigger version is refused (ErrVersion). An older one is
	// accepted and reported by Segment.Version for the kind to judge.
	Version uint16
	// Init fills the kind-specific part (b is the whole mapping) before the
	// object becomes visible under its name. Create only; may be nil.
	Init func(b []byte) error
	// ReadOnly maps the object PROT_READ (opened O_RDONLY). Open only.
	ReadOnly bool
	// Owner, when not zero, is one more owner uid that Open accepts besides
	// our effective uid and root: the uid of the process that registration
	// says created the object, as the kernel reports it (/proc). Open only.
	Owner uint32
}

// Creator names the process that created an object.
type Creator struct {
	Instance     uint64 // proc.InstanceID of the creator
	ID           proc.Identity
	PIDNamespace uint64 // inode of the creator's pid namespace
}

// Segment is one reference to a mapped object. Methods are safe for
// concurrent use; Close releases the reference exactly once.
type Segment struct {
	obj    *object
	ro     bool // opened ReadOnly (obj may be a shared writable mapping)
	closed atomic.Bool
}

// object is the per-process state of one mapped file, shared by every
// Segment of that name (and inode) in this process.
type object struct {
	name string
	ro   bool
	dev  uint64
	ino  uint64
	perm Perm // the file's owner, group and mode when it was opened or created
	hdr  header
	cur  atomic.Pointer[[]byte] // newest mapping; nil after release

	mu   sync.Mutex // guards fd use for growth and the list of mappings
	fd   int
	maps [][]byte // every mapping made, newest last; unmapped at release

	refs int // guarded by reg.mu
}

type regKey struct {
	name string
	ro   bool
}

// reg holds the objects mapped by this process.
var reg struct {
	mu   sync.Mutex
	objs map[regKey]*object
}

// lookup returns the registered object for name whose file is (dev, ino) and
// that can serve an opener wanting ro. A read-write mapping serves read-only
// openers too. Callers hold reg.mu.
func lookup(name string, ro bool, dev, ino uint64) *object {
	for _, k := range []regKey{{name, false}, {name, true}} {
		if k.ro && !ro {
			continue
		}
		if o := reg.objs[k]; o != nil && o.dev == dev && o.ino == ino {
			return o
		}
	}
	return nil
}

// register adds o with one reference, replacing an entry whose file was
// unlinked meanwhile (that object lives on for its holders).
func register(o *object) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	registerLocked(o)
}

// registerLocked is register for a caller that holds reg.mu.
func registerLocked(o *object) {
	if reg.objs == nil {
		reg.objs = make(map[regKey]*object)
	}
	o.refs = 1
	reg.objs[regKey{o.name, o.ro}] = o
}

// checkName validates a name given by the caller before any system call.
func checkName(name string) (shmname.Parsed, error) {
	p, err := shmname.Parse(name)
	if err != nil {
		return p, fmt.Errorf("shm: %w", err)
	}
	if isTemp(p) {
		return p, fmt.Errorf("shm: %w: %q: suffix %q is reserved for objects under construction", shmname.ErrInvalid, name, TempSuffix)
	}
	return p, nil
}

func isTemp(p shmname.Parsed) bool {
	return len(p.Suffixes) == 1 && p.Suffixes[0] == TempSuffix
}

// Create makes a new object of kind under name. It fails with ErrExist when
// the name exists.
func Create(name string, kind Kind, o Options) (*Segment, error) {
	p, err := checkName(name)
	if err != nil {
		return nil, err
	}
	return create(name, p.Domain, kind, o)
}

// Open maps an existing object after validating its header, owner, mode,
// kind, version and the creator's pid namespace.
func Open(name string, kind Kind, o Options) (*Segment, error) {
	if _, err := checkName(name); err != nil {
		return nil, err
	}
	return open(name, kind, o)
}

// CreateOrOpen opens name, creating it when it does not exist. Of several
// processes racing on one name exactly one reports created; every other one
// opens the complete object.
func CreateOrOpen(name string, kind Kind, o Options) (s *Segment, created bool, err error) {
	p, err := checkName(name)
	if err != nil {
		return nil, false, err
	}
	// Bounded: each round loses only if another process created the
	// object and yet another removed it in between.
	for range 64 {
		s, err = open(name, kind, o)
		if !errors.Is(err, ErrNotExist) {
			return s, false, err
		}
		s, err = create(name, p.Domain, kind, o)
		if !errors.Is(err, ErrExist) {
			return s, err == nil, err
		}
	}
	return nil, false, fmt.Errorf("shm: %s: created and removed by others too often: %w", name, err)
}

// Name returns the object name (without /dev/shm).
func (s *Segment) Name() string { return s.obj.name }

// Bytes returns the newest mapping of the whole object, common header
// included; nil after Close. Slices returned earlier stay valid until the
// last reference in this process is closed.
func (s *Segment) Bytes() []byte {
	if s.closed.Load() {
		return nil
	}
	if p := s.obj.cur.Load(); p != nil {
		return *p
	}
	return nil
}

// Creator returns the identity recorded by the creating process.
func (s *Segment) Creator() Creator { return s.obj.hdr.creator }

// Perm is who owns a file and who may use it, as the kernel says (fstat).
type Perm struct {
	UID, GID uint32
	Mode     uint32 // permission bits
}

// Perm returns the file's owner, group and mode as they were when this
// process opened (or created) it, or last shared it (Share).
func (s *Segment) Perm() Perm {
	s.obj.mu.Lock()
	defer s.obj.mu.Unlock()
	return s.obj.perm
}

// Share gives group gid read and write access to an object this process
// owns (group gid, mode 0660): the owner of a memory file shared with that
// group can then use it (a subscriber's events, for a publisher of another
// user). The caller must be a member of gid.
func (s *Segment) Share(gid uint32) error {
	if s.closed.Load() {
		return ErrClosed
	}
	o := s.obj
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fd < 0 {
		return ErrClosed
	}
	if err := unix.Fchown(o.fd, -1, int(gid)); err != nil {
		return errno("chown", o.name, err)
	}
	if err := unix.Fchmod(o.fd, 0o660); err != nil {
		return errno("chmod", o.name, err)
	}
	o.perm.GID, o.perm.Mode = gid, 0o660
	return nil
}

// Kind returns the object's kind.
func (s *Segment) Kind() Kind { return s.obj.hdr.kind }

// Version returns the layout version recorded at creation.
func (s *Segment) Version() uint16 { return s.obj.hdr.version }

// ReadOnly reports whether the segment was opened ReadOnly. Its mapping may
// still be writable when this process also opened the object read-write (the
// mapping is shared); a read-only segment must not write.
func (s *Segment) ReadOnly() bool { return s.ro }

// Close drops this reference; the last reference in this process unmaps
// every mapping of the object and closes its descriptor.
func (s *Segment) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	o := s.obj
	reg.mu.Lock()
	o.refs--
	last := o.refs == 0
	if k := (regKey{o.name, o.ro}); last && reg.objs[k] == o {
		delete(reg.objs, k)
	}
	reg.mu.Unlock()
	if last {
		return o.release()
	}
	return nil
}

// Linked reports whether the object's name still refers to this object (the
// same inode): false once its owner removed it, or replaced it.
func (s *Segment) Linked() bool {
	var st unix.Stat_t
	return unix.Lstat(shmname.Path(s.obj.name), &st) == nil && st.Dev == s.obj.dev && st.Ino == s.obj.ino
}

// Destroy unlinks the name (if it still names this object), then Closes.
// Processes that have it mapped keep their mappings.
func (s *Segment) Destroy() error {
	if s.closed.Load() {
		return ErrClosed
	}
	var err error
	path := shmname.Path(s.obj.name)
	var st unix.Stat_t
	if e := unix.Lstat(path, &st); e == nil && st.Dev == s.obj.dev && st.Ino == s.obj.ino {
		if e := unix.Unlink(path); e != nil && e != unix.ENOENT {
			err = fmt.Errorf("shm: unlink %s: %w", s.obj.name, e)
		}
	}
	return errors.Join(err, s.Close())
}

func (o *object) release() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.cur.Store(nil)
	var errs []error
	for _, m := range o.maps {
		if err := unix.Munmap(m); err != nil {
			errs = append(errs, fmt.Errorf("shm: munmap %s: %w", o.name, err))
		}
	}
	o.maps = nil
	if o.fd >= 0 {
		if err := unix.Close(o.fd); err != nil {
			errs = append(errs, fmt.Errorf("shm: close %s: %w", o.name, err))
		}
		o.fd = -1
	}
	return errors.Join(errs...)
}

// mapLocked maps size bytes of the file and makes it the newest mapping.
// Callers hold o.mu (or own o exclusively).
func (o *object) mapLocked(size int) error {
	prot := unix.PROT_READ
	if !o.ro {
		prot |= unix.PROT_WRITE
	}
	b, err := unix.Mmap(o.fd, 0, size, prot, unix.MAP_SHARED)
	if err != nil {
		if err == unix.ENOMEM {
			return fmt.Errorf("shm: mmap %s (%d bytes): %w (%w)", o.name, size, ErrNoSpace, err)
		}
		return fmt.Errorf("shm: mmap %s (%d bytes): %w", o.name, size, err)
	}
	o.maps = append(o.maps, b)
	o.cur.Store(&b)
	return nil
}

// errno maps a system-call error on name to a sentinel, keeping the cause.
func errno(op, name string, err error) error {
	switch err {
	case unix.ENOENT:
		return fmt.Errorf("shm: %s %s: %w", op, name, ErrNotExist)
	case unix.EEXIST:
		return fmt.Errorf("shm: %s %s: %w", op, name, ErrExist)
	case unix.EACCES, unix.EPERM, unix.ELOOP:
		return fmt.Errorf("shm: %s %s: %w (%w)", op, name, ErrPermission, err)
	case unix.ENOSPC, unix.EFBIG:
		return fmt.Errorf("shm: %s %s: %w (%w)", op, name, ErrNoSpace, err)
	}
	return fmt.Errorf("shm: %s %s: %w", op, name, err)
}

func roundPage(n int) int {
	if n < pageSize {
		return pageSize
	}
	return (n + pageSize - 1) / pageSize * pageSize
}
