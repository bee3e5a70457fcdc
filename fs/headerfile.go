package fs

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/shmname"
)

// headerNode is T/header: a snapshot, taken at open(2), of the latest
// message's header and the topic's facts as "key: value" lines.
type headerNode struct {
	gofs.Inode
	fs    *filesystem
	topic string
}

var (
	_ = (gofs.NodeOpener)((*headerNode)(nil))
	_ = (gofs.NodeGetattrer)((*headerNode)(nil))
	_ = (gofs.FileReader)((*headerHandle)(nil))
)

func (n *headerNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fs.fileAttr(&out.Attr, 0o444, n.fs.lastPublish(n.topic))
	out.SetTimeout(0) // mtime changes with every message
	return 0
}

func (n *headerNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EACCES
	}
	t, ok := n.fs.acquire(n.topic)
	if !ok {
		return nil, 0, syscall.ENODEV
	}
	defer n.fs.release(t)
	return &headerHandle{content: t.headerText()}, fuse.FOPEN_DIRECT_IO, 0
}

// headerHandle holds the snapshot of one open.
type headerHandle struct{ content []byte }

func (h *headerHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off < 0 || off >= int64(len(h.content)) {
		return fuse.ReadResultData(nil), 0
	}
	n := copy(dest, h.content[off:])
	return fuse.ReadResultData(dest[:n]), 0
}

// headerText renders the header file.
func (t *topic) headerText() []byte {
	var b strings.Builder
	kv := func(k string, format string, args ...any) {
		b.WriteString(k)
		b.WriteString(": ")
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	last, hasLast := t.latest()
	ti, _ := t.fs.be.Topic(t.name)
	pubs := sortEntities(ti.Publishers)
	subs := sortEntities(ti.Subscribers)

	var sent, acks, dropped uint64
	var files []string
	for _, p := range pubs {
		sent += p.Sent
		acks += p.AckTimeouts
		if p.Local {
			files = append(files, p.MemFiles...)
		}
	}
	for _, s := range subs {
		dropped += s.Dropped
	}
	sizes := make([]int64, len(files))
	var total int64
	for i, f := range files {
		sizes[i] = memFileSize(f)
		total += max(sizes[i], 0)
	}

	kv("topic", "%s", t.name)
	kv("type", "%s", word(ti.Type))
	kv("publishers", "%d", len(pubs))
	kv("subscribers", "%d", len(subs))
	kv("memory-files", "%d", len(files))
	kv("memory-bytes", "%d", total)
	kv("sent", "%d", sent)
	kv("ack-timeouts", "%d", acks)
	kv("dropped", "%d", dropped)
	if hasLast {
		kv("size", "%d", last.Size)
		kv("id", "%d", last.ID)
		kv("clock", "%d", last.Clock)
		kv("time", "%s", stamp(last.Time))
		kv("hash", "%#016x", last.Hash)
		kv("ack-timeout", "%s", last.AckTimeout)
		kv("generation", "%d", last.Generation)
		kv("publisher-id", "%s", hexID(last.Publisher))
	} else {
		kv("last-message", "none seen")
	}
	for _, p := range pubs {
		kv("publisher", "id=%s pid=%d process=%s host=%s local=%t type=%s origin=%s sent=%d ack-timeouts=%d",
			hexID(p.ID), p.PID, word(p.Process), word(p.Host), p.Local, word(p.Type), word(p.Origin), p.Sent, p.AckTimeouts)
	}
	for _, s := range subs {
		// Whether one of the mount's own readers is set aside now (the
		// registration of other processes does not say).
		lagging := "-"
		if st, ok := t.readerStats(s.ID); ok {
			lagging = fmt.Sprint(st.Lagging)
		}
		kv("subscriber", "id=%s pid=%d process=%s host=%s local=%t dropped=%d lagging=%s",
			hexID(s.ID), s.PID, word(s.Process), word(s.Host), s.Local, s.Dropped, lagging)
	}
	for i, f := range files {
		kv("memory-file", "%s size=%d", word(f), sizes[i])
	}
	return []byte(b.String())
}

// sortEntities returns a copy of es sorted by id.
func sortEntities(es []core.EntityInfo) []core.EntityInfo {
	out := slices.Clone(es)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// memFileSize returns the size of a memory file named in registration, or
// -1. The name is untrusted: only a valid shmfs object name is looked up.
func memFileSize(name string) int64 {
	if _, err := shmname.Parse(name); err != nil {
		return -1
	}
	st, err := os.Stat(shmname.Path(name))
	if err != nil {
		return -1
	}
	return st.Size()
}
