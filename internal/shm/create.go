package shm

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
)

// create builds the object under a temporary name and links it to name
// only when its common header and kind-specific part are complete:
//
//  1. open shmfs_<domain>_<random>_tmp with O_CREAT|O_EXCL, fchmod to the mode
//  2. pwrite the common header, then fallocate the size (a full /dev/shm
//     fails here with ErrNoSpace, not with SIGBUS on a later page fault)
//  3. mmap, run o.Init
//  4. link(2) the temporary name to name (EEXIST -> ErrExist), unlink it
//
// A crash leaves at most the temporary name behind; Sweep removes it once its
// creator is dead (or, before the header was written, once it is old).
func create(name, domain string, kind Kind, o Options) (*Segment, error) {
	mode := uint32(o.Mode.Perm())
	if mode == 0 {
		mode = 0o600
	}
	if o.Mode&^0o777 != 0 || mode&0o002 != 0 {
		return nil, fmt.Errorf("shm: create %s: %w: mode %v must be permission bits without world-write", name, ErrPermission, o.Mode)
	}
	if o.Size < 0 || o.Size > MaxSize {
		return nil, fmt.Errorf("shm: create %s: size %d: %w (limit %d)", name, o.Size, ErrNoSpace, int64(MaxSize))
	}
	size := roundPage(max(o.Size, HeaderSize))

	var tmp string
	fd := -1
	for range 16 {
		tmp = shmname.Object(domain, proc.RandomID(), TempSuffix)
		var err error
		fd, err = unix.Open(shmname.Path(tmp), unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
		if err == nil {
			break
		}
		if err != unix.EEXIST {
			return nil, errno("create", tmp, err)
		}
	}
	if fd < 0 {
		return nil, fmt.Errorf("shm: create %s: no free temporary name: %w", name, ErrExist)
	}
	obj := &object{name: name, fd: fd}
	ok := false
	defer func() {
		if !ok {
			_ = unix.Unlink(shmname.Path(tmp))
			_ = obj.release()
		}
	}()

	if err := unix.Fchmod(fd, mode); err != nil {
		return nil, errno("fchmod", tmp, err)
	}
	obj.hdr = header{
		kind:    kind,
		version: o.Version,
		hdrSize: HeaderSize,
		creator: Creator{Instance: proc.InstanceID(), ID: proc.Self(), PIDNamespace: proc.PIDNamespace()},
		created: time.Now().UnixNano(),
	}
	// The header goes in first, with pwrite, so that Sweep sees a live
	// creator from the start even while a big fallocate runs.
	var hb [HeaderSize]byte
	encodeHeader(hb[:], obj.hdr)
	if _, err := unix.Pwrite(fd, hb[:], 0); err != nil {
		return nil, errno("write header", tmp, err)
	}
	if err := reserve(fd, size); err != nil {
		return nil, errno("allocate", name, err)
	}
	if err := obj.mapLocked(size); err != nil {
		return nil, err
	}
	b := *obj.cur.Load()
	if o.Init != nil {
		if err := o.Init(b); err != nil {
			return nil, fmt.Errorf("shm: create %s: init: %w", name, err)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, errno("fstat", tmp, err)
	}
	obj.dev, obj.ino = st.Dev, st.Ino
	obj.perm = Perm{UID: st.Uid, GID: st.Gid, Mode: st.Mode & 0o777}
	if err := unix.Link(shmname.Path(tmp), shmname.Path(name)); err != nil {
		return nil, errno("create", name, err)
	}
	ok = true
	// The object is complete; should this unlink fail, the leftover
	// temporary link is harmless and Sweep removes it once we are gone.
	_ = unix.Unlink(shmname.Path(tmp))
	register(obj)
	return &Segment{obj: obj}, nil
}

// reserve makes the file size bytes long with its pages allocated, so that a
// full /dev/shm reports ENOSPC now instead of SIGBUS on a page fault later.
// Without fallocate support it falls back to ftruncate.
func reserve(fd, size int) error {
	err := unix.Fallocate(fd, 0, 0, int64(size))
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		err = unix.Ftruncate(fd, int64(size))
	}
	return err
}
