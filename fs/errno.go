package fs

import (
	"context"
	"errors"
	"syscall"

	"github.com/shmfs/shmfs/core"
)

// errno maps a core error to what a file operation returns.
func errno(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return syscall.EINTR
	case errors.Is(err, core.ErrTooLarge):
		return syscall.EFBIG
	case errors.Is(err, core.ErrInvalidTopic):
		return syscall.EINVAL
	case errors.Is(err, core.ErrTypeMismatch):
		return syscall.EPROTOTYPE
	case errors.Is(err, core.ErrClosed):
		return syscall.ENODEV
	case errors.Is(err, core.ErrAckTimeout):
		return syscall.ETIMEDOUT
	case errors.Is(err, core.ErrNoSpace):
		return syscall.ENOSPC
	case errors.Is(err, core.ErrPermission):
		return syscall.EACCES
	}
	return syscall.EIO
}
