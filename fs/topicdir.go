package fs

import (
	"context"
	"syscall"

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
)

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
	d.fs.dirAttr(&out.Attr)
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
	d.fs.fileAttr(&out.Attr, perm)
	if ch := d.GetChild(name); ch != nil {
		return ch, 0
	}
	return d.NewInode(ctx, node, gofs.StableAttr{Mode: syscall.S_IFREG}), 0
}

func (d *topicDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	ents := make([]fuse.DirEntry, len(topicFiles))
	for i, n := range topicFiles {
		ents[i] = fuse.DirEntry{Name: n, Mode: syscall.S_IFREG}
	}
	return gofs.NewListDirStream(ents), 0
}
