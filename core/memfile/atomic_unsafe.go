package memfile

import (
	"sync/atomic"
	"unsafe"
)

// The mapping starts on a page boundary and every offset used here is a
// multiple of its width, so the words are naturally aligned. Callers pass
// offsets inside the validated header and slot table, which lie inside b.

func load64(b []byte, off int) uint64 {
	_ = b[off+7]
	return atomic.LoadUint64((*uint64)(unsafe.Pointer(&b[off])))
}

func store64(b []byte, off int, v uint64) {
	_ = b[off+7]
	atomic.StoreUint64((*uint64)(unsafe.Pointer(&b[off])), v)
}

func load32(b []byte, off int) uint32 {
	_ = b[off+3]
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&b[off])))
}

func or32(b []byte, off int, v uint32) {
	_ = b[off+3]
	atomic.OrUint32((*uint32)(unsafe.Pointer(&b[off])), v)
}

// fenceWord is the target of fence's read-modify-write.
var fenceWord atomic.Uint64

// fence orders every memory access before it against every one after it,
// also plain (non-atomic) ones: the seqlock needs the payload copy to be
// complete before the slot's sequence word is checked again, and the
// writer's invalidation to be visible before it overwrites the payload. Go's
// atomics order only each other; a read-modify-write is a full barrier on
// amd64 (LOCK XADD) and an acquire-release one on arm64 (LDADDAL), which is
// what both sides need. It costs a few nanoseconds on an uncontended,
// process-private cache line.
func fence() { fenceWord.Add(1) }
