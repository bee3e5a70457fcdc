package mutex

import "time"

// Layout of the kind-specific part of a mutex segment (it starts at
// shm.HeaderSize), little-endian, every atomic naturally aligned:
//
//	off  size type      field
//	  0     8 u64       W: writer word (see the lock-word states below)
//	  8     4 u32       D: drain word: bits 0..30 release sequence, bit 31 dSleepers
//	 12     4 u32       dirty: 1 = a writer died holding W; cleared by the next Unlock
//	 16     8 u64       readers: bit i set = slot i announces a shared holder
//	 24     4 u32       nslots: number of reader slots (64)
//	 28     4 u32       rwait: 1 = a reader sleeps on W (see "readers' turn")
//	 32     8 i64       turn: unix ns until which woken readers go first, 0 = none
//	 40    24           reserved (0)
//	 64   512 [64]u64   slots: identity word of the process holding slot i, 0 = free
//
// The segment never grows, so pointers into it stay valid until Close.
const (
	offW       = 0
	offD       = 8
	offDirty   = 12
	offReaders = 16
	offNSlots  = 24
	offRWait   = 28
	offTurn    = 32
	offSlots   = 64

	// numSlots is the number of reader slots: one bit each in the readers
	// word, so at most 64 shared holders (goroutines of all processes) at
	// once; the 65th waits for a slot like a reader waits for a writer.
	numSlots = 64
	// dataSize is the size of the kind-specific part.
	dataSize = offSlots + numSlots*8
	// layoutVersion is written at create and checked at open.
	layoutVersion = 1
)

// Lock-word states. An identity word is proc.Identity.Pack(): PID in bits
// 0..29 (Linux PIDs are < 2^22), the start-time tag in bits 32..63.
//
// W (writer word), invariant: W == 0, or W's identity bits name the process
// holding the lock exclusively or draining readers before holding it; the
// identity and the ownership are set by one CAS (0 -> me, or dead -> me), so
// an owner is never unknown. Only the owner sets W to 0 (Unlock, or giving
// up a drain on timeout), except a waiter that found the owner dead (CAS
// dead -> 0 by a reader, dead -> me by a writer). Any waiter may add
// wSleepers to a W that has an owner; Unlock wakes W's waiters iff it is set.
//
// D (drain word), invariant: whoever sleeps on D set dSleepers first (a
// writer waiting for the readers word to become 0, or a reader waiting for a
// free slot); a reader releasing a slot, seeing dSleepers, advances the
// sequence with the bit cleared and wakes D's waiters. A dead sleeper's bit
// costs the next releaser one needless FUTEX_WAKE, never a hang.
//
// Readers' turn (fairness): writers are preferred (a reader backs off while
// W has an owner), so a writer that unlocks and locks again at once could
// starve readers forever. A reader sets rwait before it sleeps on W; an
// Unlock that finds rwait set clears it and stores turn = now + turnGrace;
// a writer that finds an unexpired turn and no shared holder yet waits
// (yielding) until a woken reader has taken a slot or the turn expires, then
// clears turn and locks as usual (draining the readers that got in). The
// words sit in what layout version 1 reserved as zero, so processes that do
// not know them simply never hand over a turn. A reader that dies after
// setting rwait costs one writer at most turnGrace once.
//
// slot i, invariant: 0 (free), a reader's identity (claimed by CAS 0 -> me
// before bit i is set in readers, released after bit i is cleared), or an
// identity with slotCleaning (a process removing a dead holder: it CASes the
// dead value to me|slotCleaning, clears bit i, then stores 0). Bit i of
// readers is set or cleared only by the process whose value is in slot i.
const (
	unlocked     uint64 = 0
	pidMask      uint64 = 1<<30 - 1 // identity word: PID bits
	slotCleaning uint64 = 1 << 30   // slot value: a cleaner is removing a dead holder
	wSleepers    uint64 = 1 << 31   // W: some process sleeps on W's low 32 bits
	dSleepers    uint32 = 1 << 31   // D: some process sleeps on D
	dSeqMask     uint32 = dSleepers - 1

	// turnGrace bounds how long a writer leaves woken readers to get in.
	turnGrace = 100 * time.Microsecond
)
