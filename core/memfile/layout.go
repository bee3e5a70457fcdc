package memfile

// Layout of a memory file (offsets from the start of the file; the first 64
// bytes are the common header of internal/shm), little-endian:
//
//	off  size type  field
//	  0    64       common header (kind memfile, version 1)
//	memfile header, written at create, generation/capacity updated on growth:
//	 64     8 u64   generation: +1 on every growth (atomic)
//	 72     8 u64   capacity: payload bytes the file holds now (atomic)
//	 80     8 u64   max data size: largest payload the writer accepts
//	 88     8 u64   min capacity: smallest capacity after growth
//	 96     4 u32   reserve: overprovisioning in percent on growth
//	100     4 u32   memfile header size (64)
//	104     4 u32   message header offset (128)
//	108     4 u32   message header area size (128)
//	112     4 u32   payload offset (256)
//	116    12       reserved (0)
//	message header (mirrors eCAL's SMemFileHeader), written by Commit:
//	128     4 u32   hdr_size: bytes of message header the writer filled (64)
//	132     4 u32   state: 0 empty, 1 committed, 2 writing (atomic)
//	136     8 u64   data_size: payload bytes of the message
//	144     8 i64   id: user id of the message
//	152     8 u64   clock: per-publisher message counter (0 = none)
//	160     8 i64   time: send time, unix ns
//	168     8 u64   hash: CRC-32C of the payload if options bit2, else 0
//	176     4 u32   options: bit0 zero-copy (unused), bit1 ack requested, bit2 checksum
//	180     4 u32   ack_timeout_ms
//	184     8 u64   publisher entity id
//	192    64       reserved for later message header fields (0)
//	256     capacity payload
//
// The file size is a multiple of the page size; capacity is file size minus
// payload offset. Readers take offsets and sizes from the file, so a later
// layout may move the payload or enlarge the headers; hdr_size and the
// memfile header size let a newer reader read an older writer and an older
// reader ignore fields it does not know.
const (
	offGeneration = 64
	offCapacity   = 72
	offMaxData    = 80
	offMinCap     = 88
	offReserve    = 96
	offMFHdrSize  = 100
	offMsgOff     = 104
	offMsgArea    = 108
	offPayloadOff = 112

	mfHdrSize  = 64
	msgOff     = 128
	msgArea    = 128
	payloadOff = 256

	// Offsets inside the message header.
	mHdrSize   = 0
	mState     = 4
	mDataSize  = 8
	mID        = 16
	mClock     = 24
	mTime      = 32
	mHash      = 40
	mOptions   = 48
	mAckTMO    = 52
	mPublisher = 56
	// msgHdrV1 is the message header size of layout version 1: the
	// smallest a writer may record.
	msgHdrV1 = 64

	// version is the layout version of the kind-specific part.
	version = 1
	// maxPayloadOff bounds the payload offset a reader accepts.
	maxPayloadOff = 64 << 10
	// maxReserve bounds the overprovisioning percentage.
	maxReserve = 1000
)

// Message states (the state word at message header offset 4). Only the
// writer, holding the file's mutex exclusively, changes it:
//
//	empty     -> writing    Reserve
//	committed -> writing    Reserve
//	writing   -> committed  Commit
//
// A reader that finds "writing" (the writer died or gave up between Reserve
// and Commit) gets ErrIncomplete: the payload was partly overwritten.
const (
	stateEmpty     uint32 = 0
	stateCommitted uint32 = 1
	stateWriting   uint32 = 2
)
