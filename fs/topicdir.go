package fs

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// topicDir is one topic's directory with its fixed files.
type topicDir struct {
	gofs.Inode
	fs    *filesystem
	topic string
}

var (
	_ = (gofs.NodeLookuper)((*topicDir)(nil))
	_ = (gofs.NodeReaddirer)((*topicDir)(nil))
	_ = (gofs.NodeGetattrer)((*topicDir)(nil))
	_ = (gofs.NodeUnlinker)((*topicDir)(nil))
	_ = (gofs.NodeCreater)((*topicDir)(nil))
	_ = (gofs.NodeMknoder)((*topicDir)(nil))
	_ = (gofs.NodeSymlinker)((*topicDir)(nil))
	_ = (gofs.NodeLinker)((*topicDir)(nil))
	_ = (gofs.NodeMkdirer)((*topicDir)(nil))
)

// A topic's files are fixed: making a file, link or directory in a topic
// directory is EPERM (go-fuse would say EROFS, "Read-only file system").

func (d *topicDir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EPERM
}

func (d *topicDir) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (d *topicDir) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (d *topicDir) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

func (d *topicDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

// Unlink refuses: a topic's files are fixed. (Without it go-fuse answers
// unlink with success and removes nothing.)
func (d *topicDir) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EPERM }

// The files of a topic directory.
const (
	fileData   = "data"
	fileWhole  = "whole"
	fileHeader = "header"
	fileEvents = "events"
)

var topicFiles = []string{fileData, fileEvents, fileHeader, fileWhole}

func (d *topicDir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fs.dirAttr(&out.Attr, d.fs.lastPublish(d.topic))
	out.SetTimeout(rootEntryTimeout)
	return 0
}

func (d *topicDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	var node gofs.InodeEmbedder
	var perm uint32
	switch name {
	case fileData:
		node, perm = &dataNode{fs: d.fs, topic: d.topic}, 0o666
	case fileWhole:
		node, perm = &wholeNode{fs: d.fs, topic: d.topic}, 0o222
	case fileHeader:
		node, perm = &headerNode{fs: d.fs, topic: d.topic}, 0o444
	case fileEvents:
		node, perm = &eventsNode{fs: d.fs, topic: d.topic}, 0o444
	default:
		return nil, syscall.ENOENT
	}
	var mtime time.Time
	if name == fileData || name == fileHeader {
		mtime = d.fs.lastPublish(d.topic)
		out.SetAttrTimeout(0) // mtime changes with every message
	}
	d.fs.fileAttr(&out.Attr, perm, mtime)
	if ch := d.GetChild(name); ch != nil {
		return ch, 0
	}
	return d.NewInode(ctx, node, gofs.StableAttr{Mode: syscall.S_IFREG}), 0
}

func (d *topicDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	ents := append([]fuse.DirEntry(nil), dotEntries...)
	for _, n := range topicFiles {
		ents = append(ents, fuse.DirEntry{Name: n, Mode: syscall.S_IFREG})
	}
	return gofs.NewListDirStream(ents), 0
}
