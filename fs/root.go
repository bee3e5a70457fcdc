package fs

import (
	"context"
	"slices"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// rootEntryTimeout is how long the kernel may cache a topic directory's
// entry and attributes: topics come and go with registration.
const rootEntryTimeout = 200 * time.Millisecond

// rootNode is the mount's root: one directory per topic.
type rootNode struct {
	gofs.Inode
	fs *filesystem
}

var (
	_ = (gofs.NodeLookuper)((*rootNode)(nil))
	_ = (gofs.NodeReaddirer)((*rootNode)(nil))
	_ = (gofs.NodeGetattrer)((*rootNode)(nil))
	_ = (gofs.NodeMkdirer)((*rootNode)(nil))
	_ = (gofs.NodeRmdirer)((*rootNode)(nil))
	_ = (gofs.NodeUnlinker)((*rootNode)(nil))
	_ = (gofs.NodeCreater)((*rootNode)(nil))
	_ = (gofs.NodeMknoder)((*rootNode)(nil))
	_ = (gofs.NodeSymlinker)((*rootNode)(nil))
	_ = (gofs.NodeLinker)((*rootNode)(nil))
)

// Unlink refuses: the root holds only topic directories and .shmfs. (Without
// it go-fuse answers unlink with success and removes nothing.)
func (r *rootNode) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EPERM }

// Create, Mknod, Symlink and Link refuse with EPERM ("Operation not
// permitted"): files cannot be made here (mkdir makes a topic). Without
// them go-fuse answers EROFS, "Read-only file system", which is not why.
func (r *rootNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EPERM
}

func (r *rootNode) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (r *rootNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (r *rootNode) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

// dotEntries are "." and "..", which readdir lists first (ls -a).
var dotEntries = []fuse.DirEntry{{Name: ".", Mode: syscall.S_IFDIR}, {Name: "..", Mode: syscall.S_IFDIR}}

func (r *rootNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	r.fs.dirAttr(&out.Attr, time.Time{})
	return 0
}

// Lookup consults the registry every time: a topic exists while some
// process publishes or subscribes it, or while it is declared with mkdir.
func (r *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if name == infoName {
		n := &infoNode{fs: r.fs, content: r.fs.infoText()}
		r.fs.fileAttr(&out.Attr, 0o444, time.Time{})
		out.Size = uint64(len(n.content))
		if ch := r.GetChild(name); ch != nil {
			return ch, 0
		}
		return r.NewInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFREG}), 0
	}
	if !r.fs.exists(name) {
		return nil, syscall.ENOENT
	}
	return r.child(ctx, name, out), 0
}

func (r *rootNode) child(ctx context.Context, name string, out *fuse.EntryOut) *gofs.Inode {
	r.fs.dirAttr(&out.Attr, r.fs.lastPublish(name))
	out.SetEntryTimeout(rootEntryTimeout)
	out.SetAttrTimeout(rootEntryTimeout)
	if ch := r.GetChild(name); ch != nil {
		return ch
	}
	return r.NewInode(ctx, &topicDir{fs: r.fs, topic: name}, gofs.StableAttr{Mode: syscall.S_IFDIR})
}

func (r *rootNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	names := r.fs.names()
	ents := make([]fuse.DirEntry, 0, len(names)+3)
	ents = append(ents, dotEntries...)
	ents = append(ents, fuse.DirEntry{Name: infoName, Mode: syscall.S_IFREG})
	for _, n := range names {
		ents = append(ents, fuse.DirEntry{Name: n, Mode: syscall.S_IFDIR})
	}
	return gofs.NewListDirStream(ents), 0
}

// Mkdir declares a topic: it is listed from now on even if no process
// publishes or subscribes it. Nothing is registered until a file of it is
// opened.
func (r *rootNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if !validName(name) || name == infoName {
		return nil, syscall.EINVAL
	}
	if r.fs.exists(name) {
		return nil, syscall.EEXIST
	}
	r.fs.mu.Lock()
	r.fs.declared[name] = true
	r.fs.visible[name] = true
	r.fs.mu.Unlock()
	return r.child(ctx, name, out), 0
}

// Rmdir removes a declaration. EBUSY: a file of the topic is open in this
// mount. ENOTEMPTY: other publishers or subscribers use the topic, so the
// directory would not go away.
func (r *rootNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	f := r.fs
	if !f.exists(name) {
		return syscall.ENOENT
	}
	f.mu.Lock()
	t := f.topics[name]
	if t != nil && t.refs > 0 {
		f.mu.Unlock()
		return syscall.EBUSY
	}
	f.mu.Unlock()
	if f.usedByOthers(name, t) {
		return syscall.ENOTEMPTY
	}
	f.mu.Lock()
	delete(f.declared, name)
	delete(f.visible, name)
	if t != nil && f.topics[name] == t && t.refs == 0 {
		delete(f.topics, name)
	} else {
		t = nil
	}
	f.mu.Unlock()
	if t != nil {
		t.close() // its lingering publisher
	}
	return 0
}

// usedByOthers reports whether any entity other than t's own publisher is
// registered for the topic.
func (f *filesystem) usedByOthers(name string, t *topic) bool {
	ti, ok := f.be.Topic(name)
	if !ok {
		return false
	}
	own := map[uint64]bool{}
	if t != nil {
		t.pubMu.Lock()
		if t.pub != nil {
			own[t.pub.ID()] = true
		}
		t.pubMu.Unlock()
	}
	for _, e := range slices.Concat(ti.Publishers, ti.Subscribers) {
		if !own[e.ID] {
			return true
		}
	}
	return false
}

// dirAttr fills the attributes of a directory whose contents last changed
// at mtime (zero: the mount's start).
func (f *filesystem) dirAttr(a *fuse.Attr, mtime time.Time) {
	a.Mode = syscall.S_IFDIR | 0o777&^f.opts.umask
	a.Nlink = 2
	f.times(a, mtime)
}

// fileAttr fills the attributes of a file with the permissions perm (the
// mount's umask applied) last written at mtime (zero: the mount's start).
func (f *filesystem) fileAttr(a *fuse.Attr, perm uint32, mtime time.Time) {
	a.Mode = syscall.S_IFREG | perm&^f.opts.umask
	a.Nlink = 1
	a.Size = 0
	f.times(a, mtime)
}

func (f *filesystem) times(a *fuse.Attr, mtime time.Time) {
	if mtime.IsZero() {
		mtime = f.start
	}
	a.SetTimes(&f.start, &mtime, &mtime)
	a.Owner = fuse.Owner{Uid: f.opts.uid, Gid: f.opts.gid}
}

// lastPublish returns when the newest message of topic name was published
// (zero if none is known): the mtime of its directory, data and header, so
// that ls -lt, find -newer and stat show activity.
func (f *filesystem) lastPublish(name string) time.Time {
	t, ok := f.acquire(name)
	if !ok {
		return time.Time{}
	}
	defer f.release(t)
	if h, ok := t.latest(); ok {
		return h.Time
	}
	return time.Time{}
}
