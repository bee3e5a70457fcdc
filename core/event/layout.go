package event

// Layout of the kind-specific part of an event segment (it starts at
// shm.HeaderSize), little-endian, every atomic naturally aligned:
//
//	off size type field
//	  0    4 u32  S: sequence word (states below)
//	  4    4 u32  reserved (0)
//	  8    8 u64  value: auxiliary word (the ack event carries the last
//	              acknowledged clock); written by StoreValue only
//	 16    8 u64  attached: proc.Identity.Pack() of the process waiting on
//	              this event (0 = none); written by SetAttached only
//	 24   40      reserved (0)
//
// The segment never grows, so pointers into it stay valid until Close.
const (
	offSeq      = 0
	offValue    = 8
	offAttached = 16
	dataSize    = 64

	// layoutVersion is written at create and checked at open.
	layoutVersion = 1
)

// Sequence-word states. S = seq (bits 0..30) | sleepers (bit 31).
//
// Invariant: a process sleeps on S only after it set sleepers and saw the
// sequence still equal to the value it waits to change (the futex call
// re-checks the whole word atomically). Set replaces S by seq+1 with
// sleepers cleared in one CAS and calls FUTEX_WAKE iff the old word had
// sleepers: no wake-up is lost, and Set with nobody asleep makes no system
// call. Only Set clears sleepers; a waiter that gives up (timeout, death)
// leaves it set, which costs the next Set one needless FUTEX_WAKE.
const (
	sleepers uint32 = 1 << 31
	seqMask  uint32 = sleepers - 1
)
