package core

import (
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shm"
	"github.com/shmfs/shmfs/internal/shmname"
)

// Who reads and feeds whose topics (docs/protocol.md, "Users"). A memory
// file belongs to the user that created it and is shared with its group
// when its mode says so (0660); the kernel enforces who may read it. On top
// of that:
//
//   - a subscriber takes messages only from memory files of its own uid,
//     of root, or of a user that shares the file with a group the
//     subscriber is in: another user cannot feed a topic to a subscriber
//     who did not share a group with it;
//   - a publisher links (rings the bell of, waits for the acknowledgements
//     of) only a subscriber process that may read its memory file: its own
//     uid, root, or a member of the file's group when the mode shares it.

// PermissionError says that shared memory of a topic was refused, or cannot
// be opened, because of its owner and mode. It wraps ErrPermission.
type PermissionError struct {
	Topic string
	Owner uint32 // uid owning the memory file
	Mode  uint32 // its permission bits
	PID   int32  // the process at the other end (publisher or subscriber)
	// Why says more (who is refused, or why), may be empty.
	Why string
}

func (e *PermissionError) Error() string {
	s := fmt.Sprintf("permission denied: topic %q is owned by uid %d (mode %04o)", e.Topic, e.Owner, e.Mode)
	if e.Why != "" {
		s += ": " + e.Why
	}
	return s
}

func (e *PermissionError) Unwrap() error { return ErrPermission }

// me is this process's credentials, read once.
var me = sync.OnceValue(func() proc.Creds {
	c := proc.Creds{}
	for i := range c.UIDs {
		c.UIDs[i] = uint32(os.Geteuid())
		c.GIDs[i] = uint32(os.Getegid())
	}
	if gs, err := os.Getgroups(); err == nil {
		for _, g := range gs {
			c.Groups = append(c.Groups, uint32(g))
		}
	}
	return c
})

// trustsPublisher reports whether this process takes messages from a
// memory file with permissions p: ours, root's, or shared with a group we
// are in.
func trustsPublisher(p shm.Perm) bool {
	c := me()
	return p.UID == c.UIDs[1] || p.UID == 0 || (p.Mode&0o040 != 0 && c.InGroup(p.GID))
}

// mayRead reports whether a process with credentials c may read a memory
// file with permissions p (the kernel's rule for its filesystem uid).
func mayRead(c proc.Creds, p shm.Perm) bool {
	fsuid := c.UIDs[3]
	switch {
	case fsuid == 0:
		return true
	case fsuid == p.UID:
		return p.Mode&0o400 != 0
	}
	return p.Mode&0o040 != 0 && c.InGroup(p.GID)
}

// openDenied describes a memory file this process cannot open (EACCES):
// whose it is and its mode, as the directory entry says.
func openDenied(topic, name string, pid int32) *PermissionError {
	e := &PermissionError{Topic: topic, PID: pid, Why: fmt.Sprintf("publisher pid %d; we are uid %d", pid, me().UIDs[1])}
	if fi, err := os.Lstat(shmname.Path(name)); err == nil {
		e.Mode = uint32(fi.Mode().Perm())
		if uid, ok := fileUID(fi); ok {
			e.Owner = uid
		}
	}
	return e
}

func fileUID(fi fs.FileInfo) (uint32, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Uid, true
}
