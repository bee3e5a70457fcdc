package memfile

import (
	"errors"
	"fmt"
	"hash/crc32"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

// childGrowReader: args name, steps. Opens the file read-only once, prints
// "open <mapping size>", then for k = 1..steps waits until head reaches k,
// copies message k and prints "<k> <size> <crc32> <capacity> <mapping size>".
func childGrowReader(args []string) int {
	a := testutil.ChildArgs(args)
	f, err := Open(a[0], OpenOptions{ReadOnly: true})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer f.Close()
	fmt.Println("open", len(f.seg.Bytes()))
	steps, _ := strconv.ParseUint(a[1], 10, 64)
	for k := uint64(1); k <= steps; k++ {
		deadline := time.Now().Add(30 * time.Second)
		for f.Head() < k {
			if time.Now().After(deadline) {
				fmt.Println("error: head", f.Head(), "not at", k)
				return 1
			}
			time.Sleep(100 * time.Microsecond)
		}
		_, p, err := f.Read(k)
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		sum := crc32.ChecksumIEEE(p)
		if !f.Intact(k) {
			fmt.Println("error: message", k, "overwritten")
			return 1
		}
		fmt.Println(k, len(p), sum, f.Capacity(), len(f.seg.Bytes()))
	}
	return 0
}

// TestGrowthAcrossProcesses: a reader maps the file while it is small; the
// writer then grows it (for big messages); the reader finds every message,
// remapping when a slot points past its mapping.
func TestGrowthAcrossProcesses(t *testing.T) {
	d := testutil.Domain(t)
	f, w := mustCreate(t, d, Options{Slots: 8, MinSize: 4096, MaxBuffer: 4096})
	sizes := []int{64, 10000, 8 << 20, 64, 5000, 1 << 20, 0, 64, 3 << 20}
	c := testutil.StartChild(t, "growreader", nil, f.Name(), strconv.Itoa(len(sizes)))
	var mapped0 int
	if _, err := fmt.Sscanf(c.Line(t, 20*time.Second), "open %d", &mapped0); err != nil {
		t.Fatal(err)
	}
	gen, capa := f.Generation(), f.Capacity()
	for i, n := range sizes {
		k := uint64(i + 1)
		data := pattern(k, n)
		put(t, w, data, Header{})
		grow := 2*int(roundUp(max(uint64(n), 1), align)) > capa
		if grow != (f.Generation() != gen) {
			t.Fatalf("message %d (%d bytes, capacity %d): generation %d → %d", k, n, capa, gen, f.Generation())
		}
		gen, capa = f.Generation(), f.Capacity()
		want := fmt.Sprint(k, n, crc32.ChecksumIEEE(data), capa, f.dataOff+capa)
		if got := c.Line(t, 30*time.Second); got != want {
			t.Fatalf("message %d (%d bytes): reader printed %q, want %q", k, n, got, want)
		}
	}
	if gen < 2 || capa < 16<<20 || mapped0 >= f.dataOff+capa {
		t.Fatalf("generation %d capacity %d, reader first mapped %d bytes", gen, capa, mapped0)
	}
	if err := c.Wait(t, 20*time.Second); err != nil {
		t.Fatalf("reader: %v", err)
	}
}

// childCreator: args name. Creates the file (publisher 99), writes one
// message, prints "ready" and lives until killed (at most a minute).
func childCreator(args []string) int {
	a := testutil.ChildArgs(args)
	o := Options{Slots: 4, Publisher: 99, Topic: "from/child"}
	f, err := Create(a[0], o)
	if err == nil {
		var w *Writer
		if w, err = NewWriter(f, o); err == nil {
			if _, err = w.Prepare(14); err == nil {
				var p []byte
				if p, err = w.Begin(14); err == nil {
					copy(p, "from the child")
					_, err = w.Commit(Header{Size: 14, ID: 42})
				}
			}
		}
	}
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("ready")
	time.Sleep(time.Minute)
	return 0
}

// TestCreateInChildReadInParent: a file created by another process reads
// here, names its creator, and stays mapped after the creator dies.
func TestCreateInChildReadInParent(t *testing.T) {
	d := testutil.Domain(t)
	name := newName(d)
	c := testutil.StartChild(t, "creator", nil, name)
	c.Expect(t, "ready", 20*time.Second)
	r, err := Open(name, OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Destroy() // the child cannot: it is killed
	h, p, err := r.Read(1)
	if err != nil || h.ID != 42 || string(p) != "from the child" || r.Head() != 1 {
		t.Fatalf("Read: %+v %q %v", h, p, err)
	}
	if r.Publisher() != 99 || r.Topic() != "from/child" || r.Slots() != 4 {
		t.Fatalf("publisher %d topic %q slots %d", r.Publisher(), r.Topic(), r.Slots())
	}
	if got := r.Creator().ID; got != c.Identity(t) {
		t.Fatalf("creator %v, want the child %v", got, c.Identity(t))
	}
	c.Kill()
	c.Wait(t, 10*time.Second)
	if _, p, err := r.Read(1); err != nil || string(p) != "from the child" || !r.Intact(1) || r.Closed() {
		t.Fatalf("Read after the writer died: %q %v", p, err)
	}
}

// TestGrowthBetweenGoroutines: a writer goroutine grows the file again and
// again while reader goroutines of the same process read it without a lock;
// every copy they accept is the message, and views taken before a growth
// stay mapped (touching them does not fault).
func TestGrowthBetweenGoroutines(t *testing.T) {
	d := testutil.Domain(t)
	f, w := mustCreate(t, d, Options{Slots: 16, MinSize: 64, Reserve: -1})
	const msgs, readers = 300, 3
	var done atomic.Bool
	var wg sync.WaitGroup
	var accepted atomic.Uint64
	for range readers {
		r := openReader(t, f)
		wg.Go(func() {
			debug.SetPanicOnFault(true) // a fault on an unmapped view panics here
			defer func() {
				if x := recover(); x != nil {
					t.Errorf("reader faulted: %v", x)
				}
			}()
			var old [][]byte // views from before later growths
			buf := make([]byte, 64+msgs*997+64)
			for !done.Load() {
				c := r.Head()
				if c == 0 {
					continue
				}
				_, p, err := r.Read(c)
				if errors.Is(err, ErrOverwritten) {
					continue // the writer went round the ring meanwhile
				}
				if err != nil {
					t.Errorf("Read(%d): %v", c, err)
					return
				}
				n := copy(buf, p)
				if !r.Intact(c) {
					continue
				}
				accepted.Add(1)
				if err := checkSelfChecking(buf[:n], c); err != nil {
					t.Error(err)
					return
				}
				if len(old) < 64 {
					old = append(old, p)
				}
			}
			// Touch every old view: an unmapped one faults.
			var sum byte
			for _, v := range old {
				for _, x := range v {
					sum += x
				}
			}
			viewSink.Add(uint32(sum))
		})
	}
	defer func() { // also when the writer fails
		done.Store(true)
		wg.Wait()
	}()
	for k := 1; k <= msgs; k++ {
		size := 64 + k*997 // bigger and bigger: grows most of the time
		if _, err := w.Prepare(size); err != nil {
			t.Fatal(err)
		}
		p, err := w.Begin(size)
		if err != nil {
			t.Fatal(err)
		}
		writeSelfChecking(p, uint64(k))
		if _, err := w.Commit(Header{Size: uint64(size)}); err != nil {
			t.Fatal(err)
		}
	}
	done.Store(true)
	wg.Wait()
	t.Logf("%d growths, %d copies accepted", f.Generation(), accepted.Load())
	if g := f.Generation(); g < 8 {
		t.Fatalf("only %d growths", g)
	}
}

// viewSink receives bytes read from old views so that the reads happen.
var viewSink atomic.Uint32
