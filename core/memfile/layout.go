package memfile

// Layout of a memory file, layout version 2: a ring of W message slots over
// a data area (offsets from the start of the file; the first 64 bytes are
// the common header of internal/shm), little-endian. docs/protocol.md
// ("Memory file") states the algorithms and invariants.
//
//	off  size type  field
//	  0    64       common header (kind memfile, version 2)
//	ring header, written at create unless marked atomic:
//	 64     8 u64   generation: +1 on every growth (atomic)
//	 72     8 u64   capacity: bytes of the data area the file holds now (atomic)
//	 80     8 u64   max message size: largest payload the writer accepts
//	 88     4 u32   ring header size (960: slot table offset minus 64)
//	 92     4 u32   slot count W (a power of two, 1..65536)
//	 96     4 u32   slot size (64)
//	100     4 u32   slot table offset (1024)
//	104     4 u32   data offset (slot table end rounded up to the page size)
//	108     4 u32   file options: bit0 every message carries a CRC-32C
//	                (written at create; 0 in files of older writers)
//	112     8 u64   publisher entity id (binds the file to its publisher)
//	120     8       reserved (0)
//	128     8 u64   head: clock of the newest committed message, 0 = none
//	                (atomic; alone in its cache line: written per message)
//	136    56       reserved (0)
//	192     8 u64   waiting: the clock the publisher waits to be acknowledged,
//	                0 when it does not wait (atomic)
//	200     4 u32   flags: bit0 closed by its publisher (atomic)
//	204    52       reserved (0)
//	256     2 u16   topic length (1..255)
//	258   255       topic (UTF-8)
//	513   511       reserved (0)
//	slot table, W slots of 64 bytes; slot i holds the message whose clock
//	modulo W is i:
//	  +0    8 u64   seq: clock of the message in the slot, 0 = none (atomic)
//	  +8    8 u64   offset of the payload in the data area (multiple of 64)
//	 +16    8 u64   size of the payload
//	 +24    8 i64   id: the application's message id
//	 +32    8 i64   time: commit time, unix ns
//	 +40    8 u64   hash: CRC-32C of the payload if option bit2, else 0
//	 +48    4 u32   options: bit1 ack requested, bit2 checksum
//	 +52    4 u32   ack timeout, ms
//	 +56    8 u64   lost: messages lost upstream right before this one
//	data area: capacity bytes from the data offset
const (
	offGeneration = 64
	offCapacity   = 72
	offMaxMessage = 80
	offRingHdr    = 88
	offSlots      = 92
	offSlotSize   = 96
	offSlotTable  = 100
	offData       = 104
	offFileOpts   = 108
	offPublisher  = 112
	offHead       = 128
	offWaiting    = 192
	offFlags      = 200
	offTopicLen   = 256
	offTopic      = 258

	slotTableOff = 1024
	ringHdrSize  = slotTableOff - 64
	slotSize     = 64

	// Offsets inside a slot.
	sSeq     = 0
	sOffset  = 8
	sSize    = 16
	sID      = 24
	sTime    = 32
	sHash    = 40
	sOptions = 48
	sAckTMO  = 52
	sLost    = 56

	// version is the layout version of the kind-specific part.
	version = 2
	// MaxSlots bounds the slot count W.
	MaxSlots = 1 << 16
	// maxTopic is the longest topic name (registration.CheckTopic).
	maxTopic = 255
	// align is the alignment of every payload in the data area: a cache
	// line, so that payloads never share one and suit vector loads.
	align = 64
	// maxReserve bounds the overprovisioning percentage.
	maxReserve = 1000

	// flagClosed: the publisher closed the file; no message follows.
	flagClosed uint32 = 1
	// fileChecksummed: every message of the file carries its CRC-32C
	// (OptChecksum); a slot without it is corrupt.
	fileChecksummed uint32 = 1
)

// Message option bits (Header.Options).
const (
	// OptAck: the publisher waits for acknowledgements (ack mode).
	OptAck uint32 = 1 << 1
	// OptChecksum: Hash holds the CRC-32C (Castagnoli) of the payload.
	OptChecksum uint32 = 1 << 2
)
