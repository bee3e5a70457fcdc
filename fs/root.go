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
)

// Unlink refuses: the root holds only topic directories and .shmfs. (Without
// it go-fuse answers unlink with success and removes nothing.)
func (r *rootNode) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EPERM }

func (r *rootNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	r.fs.dirAttr(&out.Attr)
	return 0
}

// Lookup consults the registry every time: a topic exists while some
// process publishes or subscribes it, or while it is declared with mkdir.
func (r *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if name == infoName {
		n := &infoNode{fs: r.fs, content: r.fs.infoText()}
		r.fs.fileAttr(&out.Attr, 0o444)
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
	r.fs.dirAttr(&out.Attr)
	out.SetEntryTimeout(rootEntryTimeout)
	out.SetAttrTimeout(rootEntryTimeout)
	if ch := r.GetChild(name); ch != nil {
		return ch
	}
	return r.NewInode(ctx, &topicDir{fs: r.fs, topic: name}, gofs.StableAttr{Mode: syscall.S_IFDIR})
}

func (r *rootNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	names := r.fs.names()
	ents := make([]fuse.DirEntry, 0, len(names)+1)
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

func (f *filesystem) dirAttr(a *fuse.Attr) {
	a.Mode = syscall.S_IFDIR | 0o755
	a.Nlink = 2
	f.times(a)
}

func (f *filesystem) fileAttr(a *fuse.Attr, perm uint32) {
	a.Mode = syscall.S_IFREG | perm
	a.Nlink = 1
	a.Size = 0
	f.times(a)
}

func (f *filesystem) times(a *fuse.Attr) {
	s := uint64(f.start.Unix())
	a.Atime, a.Mtime, a.Ctime = s, s, s
	a.Owner = fuse.Owner{Uid: f.opts.uid, Gid: f.opts.gid}
}
