package ecal

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// An eCAL 5.x memory file (/dev/shm/ecal_<hex>, io/shm/ecal_memfile*),
// little-endian, 64-bit Linux:
//
//	 0  u16 int_hdr_size = 24 (SInternalHeader)
//	 2  6 bytes reserved
//	 8  u64 cur_data_size: bytes used after the internal header (64 + payload)
//	16  u64 max_data_size: bytes available after it (file = 24 + this)
//	24  SMemFileHeader (64 bytes):
//	    +0  u16 hdr_size = 64
//	    +8  u64 data_size   +16 u64 id   +24 u64 clock   +32 i64 time (µs)
//	    +40 u64 hash        +48 u8 options (bit 0 zero-copy)
//	    +56 i64 ack_timout_ms (0: no acknowledgement wanted)
//	88  payload
//
// Readers hold the file's named mutex (<name>_mtx) while they read it. A
// reader takes a message only if its clock is greater than the last one it
// took; eCAL's data reader also drops a message whose hash it saw among the
// last 64. eCAL's own writers grow a file by creating another under a new
// name; eCAL 5.13 readers also follow a file that grows in place (they
// re-read max_data_size under the lock and remap), which is what the
// gateway's writer does.
const (
	intHdrSize   = 24
	memHdrSize   = 64
	offCurSize   = 8
	offMaxSize   = 16
	memPayload   = intHdrSize + memHdrSize
	optZeroCopy  = 1
	maxFileBytes = 1 << 40
)

// MemHeader is SMemFileHeader.
type MemHeader struct {
	HdrSize    uint16
	DataSize   uint64
	ID         uint64
	Clock      uint64
	Time       int64 // µs
	Hash       uint64
	Options    uint8
	AckTimeout int64 // ms
}

// parseMemHeader reads the fields a header of size n carries (older eCAL
// versions wrote shorter headers: options since 5.8, ack since 5.11).
func parseMemHeader(b []byte, n int) MemHeader {
	var h MemHeader
	le := binary.LittleEndian
	h.HdrSize = le.Uint16(b)
	if n >= 16 {
		h.DataSize = le.Uint64(b[8:])
	}
	if n >= 24 {
		h.ID = le.Uint64(b[16:])
	}
	if n >= 32 {
		h.Clock = le.Uint64(b[24:])
	}
	if n >= 40 {
		h.Time = int64(le.Uint64(b[32:]))
	}
	if n >= 48 {
		h.Hash = le.Uint64(b[40:])
	}
	if n >= 49 {
		h.Options = b[48]
	}
	if n >= 64 {
		h.AckTimeout = int64(le.Uint64(b[56:]))
	}
	return h
}

func putMemHeader(b []byte, h MemHeader) {
	le := binary.LittleEndian
	clear(b[:memHdrSize])
	le.PutUint16(b, memHdrSize)
	le.PutUint64(b[8:], h.DataSize)
	le.PutUint64(b[16:], h.ID)
	le.PutUint64(b[24:], h.Clock)
	le.PutUint64(b[32:], uint64(h.Time))
	le.PutUint64(b[40:], h.Hash)
	b[48] = h.Options
	le.PutUint64(b[56:], uint64(h.AckTimeout))
}

// memReader reads an eCAL publisher's memory file.
type memReader struct {
	name string
	f    *os.File
	mem  []byte // read-only mapping
	mtx  *object
}

func openMemReader(name string) (*memReader, error) {
	path, err := shmPath(name)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("ecal: open memory file %s: %w", path, err)
	}
	r := &memReader{name: name, f: os.NewFile(uintptr(fd), path)}
	if err := r.remap(intHdrSize); err != nil {
		r.close()
		return nil, err
	}
	mtx, _, err := openObject(name+"_mtx", false, time.Now().Add(lockTimeout))
	if err != nil {
		r.close()
		return nil, err
	}
	r.mtx = mtx
	return r, nil
}

// remap maps the whole file, which must hold at least need bytes.
func (r *memReader) remap(need uint64) error {
	st, err := r.f.Stat()
	if err != nil {
		return fmt.Errorf("ecal: stat %s: %w", r.f.Name(), err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a regular file", ErrCorrupt, r.f.Name())
	}
	size := uint64(st.Size())
	if size < need || size > maxFileBytes {
		return fmt.Errorf("%w: %s has %d bytes, its header needs %d", ErrCorrupt, r.f.Name(), size, need)
	}
	mem, err := unix.Mmap(int(r.f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("ecal: map %s: %w", r.f.Name(), err)
	}
	if r.mem != nil {
		_ = unix.Munmap(r.mem)
	}
	r.mem = mem
	return nil
}

func (r *memReader) close() {
	if r.mem != nil {
		_ = unix.Munmap(r.mem)
		r.mem = nil
	}
	if r.f != nil {
		r.f.Close()
	}
	if r.mtx != nil {
		r.mtx.close(false)
	}
}

// read takes the file's lock (for at most timeout) and, if the message in
// it has a clock greater than last, copies its payload into buf (grown as
// needed, up to max bytes). fresh is false when there is no newer message.
func (r *memReader) read(last uint64, buf []byte, max int, timeout time.Duration) (h MemHeader, payload []byte, fresh bool, err error) {
	if err := r.mtx.lock(timeout); err != nil {
		return h, buf, false, err
	}
	defer func() {
		if uerr := r.mtx.unlock(); uerr != nil && err == nil {
			err = uerr
		}
	}()
	le := binary.LittleEndian
	intHdr := uint64(le.Uint16(r.mem))
	if intHdr < intHdrSize || intHdr > 4096 {
		return h, buf, false, fmt.Errorf("%w: %s: internal header size %d", ErrCorrupt, r.name, intHdr)
	}
	if intHdr > uint64(len(r.mem)) {
		if err := r.remap(intHdr); err != nil {
			return h, buf, false, err
		}
	}
	cur, maxData := le.Uint64(r.mem[offCurSize:]), le.Uint64(r.mem[offMaxSize:])
	if maxData > maxFileBytes || cur > maxData {
		return h, buf, false, fmt.Errorf("%w: %s: data size %d, maximum %d", ErrCorrupt, r.name, cur, maxData)
	}
	if need := intHdr + maxData; need > uint64(len(r.mem)) {
		if err := r.remap(need); err != nil { // the writer grew the file
			return h, buf, false, err
		}
	}
	if cur < 2 {
		return h, buf, false, nil // nothing written yet
	}
	area := r.mem[intHdr : intHdr+cur]
	n := int(min(uint64(le.Uint16(area)), memHdrSize))
	if n < 32 || n > len(area) {
		return h, buf, false, fmt.Errorf("%w: %s: message header size %d", ErrCorrupt, r.name, le.Uint16(area))
	}
	h = parseMemHeader(area, n)
	if h.Clock <= last {
		return h, buf, false, nil
	}
	start := uint64(h.HdrSize)
	if start+h.DataSize > cur || start+h.DataSize < start {
		return h, buf, false, fmt.Errorf("%w: %s: message of %d bytes at %d exceeds the %d bytes written", ErrCorrupt, r.name, h.DataSize, start, cur)
	}
	if h.DataSize > uint64(max) {
		return h, buf, true, fmt.Errorf("%w: %s: message of %d bytes (limit %d)", ErrTooLarge, r.name, h.DataSize, max)
	}
	if uint64(cap(buf)) < h.DataSize {
		buf = make([]byte, h.DataSize)
	}
	buf = buf[:h.DataSize]
	copy(buf, area[start:start+h.DataSize])
	return h, buf, true, nil
}

// memWriter is a memory file the gateway publishes into.
type memWriter struct {
	name    string
	f       *os.File
	mem     []byte
	mtx     *object
	maxData uint64 // max_data_size
	reserve int    // percent added on growth
}

// eCAL's defaults: memfile_minsize 4096, memfile_reserve 50 %.
const (
	memMinSize = 4096
	memReserve = 50
	memMode    = 0o644 // readers open it read-only
)

func createMemWriter(name string, payload int) (*memWriter, error) {
	path, err := shmPath(name)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, memMode)
	if err != nil {
		return nil, fmt.Errorf("ecal: create memory file %s: %w", path, err)
	}
	_ = unix.Fchmod(fd, memMode)
	w := &memWriter{name: name, f: os.NewFile(uintptr(fd), path), reserve: memReserve}
	maxData := uint64(memHdrSize + max(payload, memMinSize))
	if err := w.resize(maxData); err != nil {
		w.destroy()
		return nil, err
	}
	le := binary.LittleEndian
	le.PutUint16(w.mem, intHdrSize)
	le.PutUint64(w.mem[offCurSize:], memHdrSize)
	le.PutUint64(w.mem[offMaxSize:], maxData)
	putMemHeader(w.mem[intHdrSize:], MemHeader{})
	mtx, created, err := openObject(name+"_mtx", true, time.Now().Add(lockTimeout))
	if err == nil && !created {
		mtx.close(false)
		err = fmt.Errorf("ecal: %s_mtx exists already", path)
	}
	if err != nil {
		w.destroy()
		return nil, err
	}
	w.mtx = mtx
	return w, nil
}

// resize extends the file to hold maxData bytes after the internal header
// and maps it; the new max_data_size is stored by the caller, under the
// lock, after this (readers remap when they see it).
func (w *memWriter) resize(maxData uint64) error {
	size := int64(intHdrSize + maxData)
	if err := unix.Fallocate(int(w.f.Fd()), 0, 0, size); err != nil {
		if err := w.f.Truncate(size); err != nil {
			return fmt.Errorf("ecal: size %s to %d bytes: %w", w.f.Name(), size, err)
		}
	}
	mem, err := unix.Mmap(int(w.f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("ecal: map %s: %w", w.f.Name(), err)
	}
	if w.mem != nil {
		_ = unix.Munmap(w.mem)
	}
	w.mem = mem
	w.maxData = maxData
	return nil
}

// write puts one message into the file under its lock. fill copies the
// payload into the slice it is given.
func (w *memWriter) write(h MemHeader, size int, fill func([]byte), timeout time.Duration) (grew bool, err error) {
	if err := w.mtx.lock(timeout); err != nil {
		return false, err
	}
	defer func() {
		if uerr := w.mtx.unlock(); uerr != nil && err == nil {
			err = uerr
		}
	}()
	need := uint64(memHdrSize + size)
	if need > w.maxData {
		// eCAL's sizing: header + payload + reserve % of the payload.
		if err := w.resize(need + uint64(size)*uint64(w.reserve)/100); err != nil {
			return false, err
		}
		binary.LittleEndian.PutUint64(w.mem[offMaxSize:], w.maxData)
		grew = true
	}
	h.DataSize = uint64(size)
	putMemHeader(w.mem[intHdrSize:], h)
	fill(w.mem[memPayload : memPayload+size])
	binary.LittleEndian.PutUint64(w.mem[offCurSize:], need)
	return grew, nil
}

// destroy unmaps and removes the file and its mutex.
func (w *memWriter) destroy() {
	if w.mem != nil {
		_ = unix.Munmap(w.mem)
		w.mem = nil
	}
	if w.f != nil {
		_ = os.Remove(w.f.Name())
		w.f.Close()
	}
	if w.mtx != nil {
		w.mtx.close(true)
	}
}
