package memfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

// The seqlock tests run a writer that overwrites the messages of a small
// ring as fast as it can against readers that copy them at the same time.
// Every payload checks itself: its clock in the first 8 bytes, then bytes
// that depend on the clock, then the CRC-32C of all that. A copy the reader
// accepts (Intact held after it) must check out; a torn one means the
// writer overwrote bytes of a message whose slot still said intact.

// seqOptions: four slots over a 16 KiB data area that may not grow, and
// messages of 4 to 8 KiB: every message overwrites the bytes of the oldest
// ones while they are still in the window, so readers race with it.
var (
	seqOptions = Options{Slots: 4, MinSize: 16 << 10, MaxBuffer: 16 << 10, Reserve: -1}
	seqSizes   = []int{4096, 5000, 6100, 7000, 8000}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// seqBody is the pool the bodies of self-checking payloads come from.
var seqBody = pattern(12345, 64<<10)

// writeSelfChecking fills p as the payload of clock c.
func writeSelfChecking(p []byte, c uint64) {
	binary.LittleEndian.PutUint64(p, c)
	body := p[8 : len(p)-4]
	for o := int(c*131) % len(seqBody); len(body) > 0; o = 0 {
		body = body[copy(body, seqBody[o:]):]
	}
	binary.LittleEndian.PutUint32(p[len(p)-4:], crc32.Checksum(p[:len(p)-4], castagnoli))
}

// checkSelfChecking reports why p is not the payload of clock c.
func checkSelfChecking(p []byte, c uint64) error {
	if len(p) < 12 {
		return fmt.Errorf("clock %d: %d bytes", c, len(p))
	}
	if got := binary.LittleEndian.Uint64(p); got != c {
		return fmt.Errorf("clock %d: payload of clock %d", c, got)
	}
	if sum, want := crc32.Checksum(p[:len(p)-4], castagnoli), binary.LittleEndian.Uint32(p[len(p)-4:]); sum != want {
		return fmt.Errorf("clock %d (%d bytes): CRC %08x, payload says %08x", c, len(p), sum, want)
	}
	return nil
}

// seqWriter writes self-checking messages until stop is set.
func seqWriter(w *Writer, stop *atomic.Bool) error {
	for k := 0; !stop.Load(); k++ {
		size := seqSizes[k%len(seqSizes)]
		if _, err := w.Prepare(size); err != nil {
			return err
		}
		p, err := w.Begin(size)
		if err != nil {
			return err
		}
		writeSelfChecking(p, w.Clock()+1)
		if _, err := w.Commit(Header{Size: uint64(size)}); err != nil {
			return err
		}
	}
	return nil
}

// seqStats counts the attempts of a reader.
type seqStats struct {
	accepted    uint64 // copies Intact vouched for (all verified)
	rejected    uint64 // copies Intact refused: the writer got there during the copy
	overwritten uint64 // Read said ErrOverwritten
	concurrent  uint64 // attempts during which the writer committed a message
	torn        uint64 // accepted copies that did not check out
	firstTorn   error
}

func (s seqStats) String() string {
	return fmt.Sprintf("accepted %d rejected %d overwritten %d concurrent %d torn %d", s.accepted, s.rejected, s.overwritten, s.concurrent, s.torn)
}

// seqRead copies messages of the window, mostly the oldest (the ones the
// writer overwrites next) and sometimes the next one as soon as it
// appears, until target attempts overlapped a commit or stop says so. It
// returns an error only for a Read error other than ErrOverwritten.
func seqRead(f *File, seed uint64, target uint64, stop func() bool) (seqStats, error) {
	var s seqStats
	rng := rand.New(rand.NewPCG(seed, 1))
	buf := make([]byte, 64<<10)
	W := uint64(f.Slots())
	// A bound on attempts (about 3 per concurrent one on two CPUs), so that
	// a reader that never overlaps the writer (one CPU) ends; the caller
	// then reports too few concurrent attempts.
	for attempts := uint64(0); s.concurrent < target && attempts < 10*target && !stop(); attempts++ {
		head := f.Head()
		if head < W {
			runtime.Gosched()
			continue
		}
		// The oldest message still readable: the one the writer
		// overwrites next. Sometimes another one of the window.
		var (
			c   uint64
			h   Header
			p   []byte
			err error
		)
		switch rng.IntN(8) {
		case 0:
			// The next message, polled as a subscriber waiting for it
			// does: the first Read that finds it races with its Commit.
			c = head + 1
			for range 10000 {
				if h, p, err = f.Read(c); err == nil || f.Head() > c {
					break
				}
			}
		default:
			back := W - 1
			if rng.IntN(4) == 0 {
				back = rng.Uint64N(W)
			}
			for ; ; back-- {
				c = head - back
				if h, p, err = f.Read(c); err == nil || !errors.Is(err, ErrOverwritten) || back == 0 {
					break
				}
				s.overwritten++
			}
		}
		if err != nil {
			if !errors.Is(err, ErrOverwritten) {
				return s, fmt.Errorf("Read(%d): %w", c, err)
			}
			s.overwritten++
			continue
		}
		n := copy(buf, p)
		ok := f.Intact(c)
		if f.Head() != head {
			s.concurrent++
		}
		if !ok {
			s.rejected++
			continue
		}
		s.accepted++
		err = checkSelfChecking(buf[:n], c)
		if err == nil && h.Size != uint64(n) {
			err = fmt.Errorf("clock %d: header says %d bytes, payload %d", c, h.Size, n)
		}
		if err != nil {
			s.torn++
			if s.firstTorn == nil {
				s.firstTorn = err
			}
		}
	}
	return s, nil
}

// TestSeqlockGoroutines: reader goroutines never accept a torn copy from a
// writer goroutine that overwrites the ring under them.
func TestSeqlockGoroutines(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 { // the writer must run beside the readers
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	}
	d := testutil.Domain(t)
	f, w := mustCreate(t, d, seqOptions)
	var stop atomic.Bool
	werr := make(chan error, 1)
	go func() { werr <- seqWriter(w, &stop) }()
	defer func() { // before the cleanup destroys the file
		stop.Store(true)
		if err := <-werr; err != nil {
			t.Errorf("writer: %v", err)
		}
	}()
	const readers = 2
	target := uint64(100000)
	if testing.Short() {
		target = 2000
	}
	stats := make([]seqStats, readers)
	errs := make([]error, readers)
	var wg sync.WaitGroup
	for i := range readers {
		r := openReader(t, f)
		wg.Go(func() {
			stats[i], errs[i] = seqRead(r, uint64(i), target, func() bool { return false })
		})
	}
	wg.Wait()
	for i, s := range stats {
		t.Logf("reader %d: %v", i, s)
		if errs[i] != nil {
			t.Errorf("reader %d: %v", i, errs[i])
		}
		if s.torn != 0 {
			t.Errorf("reader %d accepted %d torn copies; first: %v", i, s.torn, s.firstTorn)
		}
		if s.concurrent < target {
			t.Errorf("reader %d: only %d attempts overlapped a commit, want %d", i, s.concurrent, target)
		}
	}
}

// childSeqReader: args name, target. Opens the file read-only, prints
// "open", copies messages until target attempts overlapped a commit (or the
// file is closed), then prints "stats <accepted> <rejected> <overwritten>
// <concurrent> <torn>" after a line "torn <error>" if any copy was torn.
func childSeqReader(args []string) int {
	a := testutil.ChildArgs(args)
	f, err := Open(a[0], OpenOptions{ReadOnly: true})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer f.Close()
	target, _ := strconv.ParseUint(a[1], 10, 64)
	fmt.Println("open")
	s, err := seqRead(f, uint64(os.Getpid()), target, f.Closed)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	if s.firstTorn != nil {
		fmt.Println("torn", s.firstTorn)
	}
	fmt.Println("stats", s.accepted, s.rejected, s.overwritten, s.concurrent, s.torn)
	return 0
}

// TestSeqlockAcrossProcesses: a reader process copies continuously while
// this process writes as fast as it can; it never accepts a torn copy.
func TestSeqlockAcrossProcesses(t *testing.T) {
	d := testutil.Domain(t)
	f, w := mustCreate(t, d, seqOptions)
	target := 200000
	if testing.Short() {
		target = 5000
	}
	c := testutil.StartChild(t, "seqreader", nil, f.Name(), strconv.Itoa(target))
	c.Expect(t, "open", 20*time.Second)
	var stop atomic.Bool
	werr := make(chan error, 1)
	go func() { werr <- seqWriter(w, &stop) }()
	defer func() {
		stop.Store(true)
		if err := <-werr; err != nil {
			t.Errorf("writer: %v", err)
		}
	}()
	var s seqStats
	for {
		l := c.Line(t, 60*time.Second)
		if _, err := fmt.Sscanf(l, "stats %d %d %d %d %d", &s.accepted, &s.rejected, &s.overwritten, &s.concurrent, &s.torn); err == nil {
			break
		}
		t.Errorf("reader: %s", l)
	}
	t.Logf("reader process: %v; %d messages written", s, f.Head())
	if s.torn != 0 {
		t.Errorf("reader process accepted %d torn copies", s.torn)
	}
	if s.concurrent < uint64(target) {
		t.Errorf("reader process: only %d attempts overlapped a commit, want %d", s.concurrent, target)
	}
	if err := c.Wait(t, 20*time.Second); err != nil {
		t.Errorf("reader: %v", err)
	}
}

// TestSeqlockFences: Intact fences before it reads the sequence word again
// (so the copy is complete), and Begin after it clears the victims' words
// (so no payload byte lands first). On amd64 the hardware keeps loads in
// order and Go's atomic store is a full barrier, so the stress tests above
// cannot see a missing fence there; this checks that both sides issue it.
func TestSeqlockFences(t *testing.T) {
	d := testutil.Domain(t)
	f, w := mustCreate(t, d, Options{Slots: 1})
	put(t, w, []byte("x"), Header{})
	before := fenceWord.Load()
	if !f.Intact(1) {
		t.Fatal("not intact")
	}
	if fenceWord.Load() == before {
		t.Error("Intact did not fence")
	}
	if _, err := w.Prepare(1); err != nil {
		t.Fatal(err)
	}
	before = fenceWord.Load()
	if _, err := w.Begin(1); err != nil {
		t.Fatal(err)
	}
	if fenceWord.Load() == before {
		t.Error("Begin did not fence")
	}
	if f.Intact(1) {
		t.Error("Begin left the victim intact")
	}
}
