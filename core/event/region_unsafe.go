package event

import (
	"fmt"
	"unsafe"

	"github.com/shmfs/shmfs/internal/shm"
)

// region holds pointers to the words of one event's shared memory.
type region struct {
	seq      *uint32
	value    *uint64
	attached *uint64
}

// newRegion validates b (the kind-specific part of a mapping, starting at
// shm.HeaderSize) and returns pointers into it.
func newRegion(b []byte) (region, error) {
	if len(b) < dataSize {
		return region{}, fmt.Errorf("%w: event data is %d bytes, need %d", shm.ErrCorrupt, len(b), dataSize)
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	if uintptr(p)%8 != 0 {
		return region{}, fmt.Errorf("%w: event data not 8-byte aligned", shm.ErrCorrupt)
	}
	return region{
		seq:      (*uint32)(unsafe.Add(p, offSeq)),
		value:    (*uint64)(unsafe.Add(p, offValue)),
		attached: (*uint64)(unsafe.Add(p, offAttached)),
	}, nil
}
