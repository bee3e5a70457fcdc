package fs

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// infoName is a read-only file in the root saying what is mounted: tools
// (shmfs doctor) recognise a shmfs mount and its domain by it. A topic of
// that name is not shown.
const infoName = ".shmfs"

// infoNode is the root's .shmfs file: fixed content, served on every read
// (direct I/O), which also makes it the cheapest FUSE round trip.
type infoNode struct {
	gofs.Inode
	fs      *filesystem
	content []byte
}

var (
	_ = (gofs.NodeOpener)((*infoNode)(nil))
	_ = (gofs.NodeGetattrer)((*infoNode)(nil))
	_ = (gofs.NodeReader)((*infoNode)(nil))
)

func (f *filesystem) infoText() []byte {
	c := f.be.config()
	return fmt.Appendf(nil, "domain: %s\nport: %d\npid: %d\n", c.Domain, c.Port, os.Getpid())
}

func (n *infoNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fs.fileAttr(&out.Attr, 0o444, time.Time{})
	out.Size = uint64(len(n.content))
	return 0
}

func (n *infoNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EACCES
	}
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (n *infoNode) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off < 0 || off >= int64(len(n.content)) {
		return fuse.ReadResultData(nil), 0
	}
	k := copy(dest, n.content[off:])
	return fuse.ReadResultData(dest[:k]), 0
}
