package fs

import (
	"context"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// rawFS wraps go-fuse's node bridge to pass a READ's file flags to our
// handlers: package fs hands FileReader.Read only a context, and O_NONBLOCK
// set with fcntl after open(2) is visible only in the READ request. The
// request's cancel channel, which the handler gets back as
// (*fuse.Context).Cancel, is the key while the request runs.
type rawFS struct {
	fuse.RawFileSystem
	nonblock sync.Map // <-chan struct{} -> struct{}
}

func (r *rawFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	if in.Flags&syscall.O_NONBLOCK != 0 {
		r.nonblock.Store(cancel, struct{}{})
		defer r.nonblock.Delete(cancel)
	}
	return r.RawFileSystem.Read(cancel, in, buf)
}

// nonblocking reports whether the READ being served by ctx came from a file
// description with O_NONBLOCK.
func (r *rawFS) nonblocking(ctx context.Context) bool {
	fc, ok := ctx.(*fuse.Context)
	if !ok || r == nil {
		return false
	}
	_, nb := r.nonblock.Load(fc.Cancel)
	return nb
}
