package mutex

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/shmfs/shmfs/internal/shm"
)

// region holds pointers to the words of one mutex's shared memory. It is
// built once per mapping; the mapping never grows or moves while open.
type region struct {
	w       *uint64
	wLow    *uint32 // the low 32 bits of W: the futex word waiters sleep on
	d       *uint32
	dirty   *uint32
	readers *uint64
	rwait   *uint32
	turn    *int64
	slots   *[numSlots]uint64
}

// lowHalf is the byte offset of the low 32 bits within a 64-bit word:
// 0 on little-endian machines, 4 on big-endian ones.
var lowHalf = func() uintptr {
	x := uint64(1)
	if *(*byte)(unsafe.Pointer(&x)) == 1 {
		return 0
	}
	return 4
}()

// newRegion validates b (the kind-specific part of a mapping, starting at
// shm.HeaderSize) and returns pointers into it. It never trusts the stored
// slot count: it must equal the one this code was built for.
func newRegion(b []byte) (region, error) {
	if len(b) < dataSize {
		return region{}, fmt.Errorf("%w: mutex data is %d bytes, need %d", shm.ErrCorrupt, len(b), dataSize)
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	if uintptr(p)%8 != 0 {
		return region{}, fmt.Errorf("%w: mutex data not 8-byte aligned", shm.ErrCorrupt)
	}
	if n := binary.LittleEndian.Uint32(b[offNSlots:]); n != numSlots {
		return region{}, fmt.Errorf("%w: mutex has %d reader slots, want %d", shm.ErrCorrupt, n, numSlots)
	}
	return region{
		w:       (*uint64)(unsafe.Add(p, offW)),
		wLow:    (*uint32)(unsafe.Add(p, offW+lowHalf)),
		d:       (*uint32)(unsafe.Add(p, offD)),
		dirty:   (*uint32)(unsafe.Add(p, offDirty)),
		readers: (*uint64)(unsafe.Add(p, offReaders)),
		rwait:   (*uint32)(unsafe.Add(p, offRWait)),
		turn:    (*int64)(unsafe.Add(p, offTurn)),
		slots:   (*[numSlots]uint64)(unsafe.Add(p, offSlots)),
	}, nil
}

// initRegion writes a fresh (unlocked) mutex into b, which is at least
// dataSize bytes long and not yet visible to other processes.
func initRegion(b []byte) {
	clear(b[:dataSize])
	binary.LittleEndian.PutUint32(b[offNSlots:], numSlots)
}
