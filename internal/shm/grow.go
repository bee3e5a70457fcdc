package shm

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Grow makes the object at least newSize bytes (rounded up to the page size;
// never smaller) and maps the new size. The previous mappings stay valid
// until the last Close in this process. The caller serialises growth of one
// object across processes with its own lock.
func (s *Segment) Grow(newSize int) error {
	if s.closed.Load() {
		return ErrClosed
	}
	o := s.obj
	if s.ro {
		return fmt.Errorf("shm: grow %s: %w: mapped read-only", o.name, ErrPermission)
	}
	if newSize < 0 || newSize > MaxSize {
		return fmt.Errorf("shm: grow %s to %d: %w (limit %d)", o.name, newSize, ErrNoSpace, int64(MaxSize))
	}
	size := roundPage(newSize)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fd < 0 {
		return ErrClosed
	}
	var st unix.Stat_t
	if err := unix.Fstat(o.fd, &st); err != nil {
		return errno("fstat", o.name, err)
	}
	if st.Size < int64(size) {
		if err := reserve(o.fd, size); err != nil {
			return errno("grow", o.name, err)
		}
	} else {
		size = int(st.Size) // grown by someone else, maybe further
	}
	return o.refreshLocked(size)
}

// Refresh maps the object anew when its file grew (another process called
// Grow); Bytes then returns the bigger mapping. A file that shrank is
// reported as ErrCorrupt: pages past its end would fault.
func (s *Segment) Refresh() (grown bool, err error) {
	if s.closed.Load() {
		return false, ErrClosed
	}
	o := s.obj
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fd < 0 {
		return false, ErrClosed
	}
	var st unix.Stat_t
	if err := unix.Fstat(o.fd, &st); err != nil {
		return false, errno("fstat", o.name, err)
	}
	cur := len(*o.cur.Load())
	if st.Size == int64(cur) {
		return false, nil
	}
	if st.Size > MaxSize || st.Size%int64(pageSize) != 0 {
		return false, fmt.Errorf("shm: refresh %s: %w: size %d", o.name, ErrCorrupt, st.Size)
	}
	if err := o.refreshLocked(int(st.Size)); err != nil {
		return false, err
	}
	return true, nil
}

// refreshLocked maps size bytes unless the newest mapping already has them.
func (o *object) refreshLocked(size int) error {
	cur := len(*o.cur.Load())
	if size < cur {
		return fmt.Errorf("shm: %s: %w: file shrank from %d to %d bytes", o.name, ErrCorrupt, cur, size)
	}
	if size == cur {
		return nil
	}
	return o.mapLocked(size)
}
