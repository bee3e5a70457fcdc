package shm

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
)

// open maps an existing object, sharing the mapping of this process when the
// name is already mapped here and still names the same file.
func open(name string, kind Kind, o Options) (*Segment, error) {
	flags := unix.O_RDWR
	if o.ReadOnly {
		flags = unix.O_RDONLY
	}
	// O_NOFOLLOW: a planted symlink is refused. O_NONBLOCK: a planted FIFO
	// does not block the open; fstat below refuses it.
	fd, err := unix.Open(shmname.Path(name), flags|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.EACCES {
			// Say whose it is: the usual cause is another user's topic.
			var st unix.Stat_t
			if unix.Lstat(shmname.Path(name), &st) == nil {
				return nil, fmt.Errorf("shm: open %s: %w: owned by uid %d (mode %#o), we are uid %d",
					name, ErrPermission, st.Uid, st.Mode&0o777, unix.Geteuid())
			}
		}
		return nil, errno("open", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, errno("fstat", name, err)
	}

	reg.mu.Lock()
	if obj := lookup(name, o.ReadOnly, st.Dev, st.Ino); obj != nil {
		obj.refs++
		reg.mu.Unlock()
		unix.Close(fd)
		s := &Segment{obj: obj, ro: o.ReadOnly}
		if err := compatible(obj.hdr, kind, o.Version); err != nil {
			s.Close()
			return nil, fmt.Errorf("shm: open %s: %w", name, err)
		}
		return s, nil
	}
	reg.mu.Unlock()

	obj, err := validate(name, fd, &st, kind, o)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("shm: open %s: %w", name, err)
	}
	if err := obj.mapLocked(int(st.Size)); err != nil {
		obj.release()
		return nil, err
	}

	// Another goroutine may have mapped the same file meanwhile: use its
	// mapping so that the process keeps one per name.
	// The look-up and the insert are one step under reg.mu.
	reg.mu.Lock()
	if other := lookup(name, o.ReadOnly, st.Dev, st.Ino); other != nil {
		other.refs++
		reg.mu.Unlock()
		obj.release()
		return &Segment{obj: other, ro: o.ReadOnly}, nil
	}
	registerLocked(obj)
	reg.mu.Unlock()
	return &Segment{obj: obj, ro: o.ReadOnly}, nil
}

// validate checks the file behind fd before anything is mapped: a regular
// file owned by us or root, not world-writable, of a sane size, whose common
// header matches kind, version and our pid namespace. The header is read with
// pread, so a hostile file is never mapped.
func validate(name string, fd int, st *unix.Stat_t, kind Kind, o Options) (*object, error) {
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%w: not a regular file (mode %#o)", ErrCorrupt, st.Mode)
	}
	if euid := uint32(unix.Geteuid()); st.Uid != euid && st.Uid != 0 && (o.Owner == 0 || st.Uid != o.Owner) {
		return nil, fmt.Errorf("%w: owned by uid %d, not by us (%d) or root", ErrPermission, st.Uid, euid)
	}
	if st.Mode&0o002 != 0 {
		return nil, fmt.Errorf("%w: world-writable (mode %#o)", ErrPermission, st.Mode&0o777)
	}
	var b [HeaderSize]byte
	n, err := unix.Pread(fd, b[:], 0)
	if err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	h, err := validateHeader(b[:n], st.Size, kind, o.Version, proc.PIDNamespace())
	if err != nil {
		return nil, err
	}
	return &object{name: name, ro: o.ReadOnly, fd: fd, dev: st.Dev, ino: st.Ino, hdr: h,
		perm: Perm{UID: st.Uid, GID: st.Gid, Mode: st.Mode & 0o777}}, nil
}

// compatible checks an already validated header against another opener's
// expectations.
func compatible(h header, kind Kind, version uint16) error {
	if h.kind != kind {
		return fmt.Errorf("%w: object is a %v, want %v", ErrKind, h.kind, kind)
	}
	if h.version > version {
		return fmt.Errorf("%w: %v layout version %d is newer than %d", ErrVersion, kind, h.version, version)
	}
	return nil
}
