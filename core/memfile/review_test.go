package memfile

import (
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/shmfs/shmfs/internal/shm"
	"github.com/shmfs/shmfs/internal/testutil"
)

// openFDs counts this process's open descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) - 1 // the directory's own descriptor
}

// TestReviewGrowthBetweenGoroutines: a writer goroutine grows the file
// while reader goroutines of the same process (read-only Files sharing its
// mapping) read under a shared lock, as core does with the named mutex.
// Every read must see a complete message, and views taken before a growth
// must stay mapped.
func TestReviewGrowthBetweenGoroutines(t *testing.T) {
	d := testutil.Domain(t)
	w := mustCreate(t, newName(d), 0, Options{MinSize: 64, Reserve: -1})
	var mu sync.RWMutex // stands in for the file's named mutex
	const msgs, readers = 300, 3
	errs := make(chan error, readers+1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range readers {
		r, err := Open(w.Name(), true)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			debug.SetPanicOnFault(true) // a fault on an unmapped view panics here
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("reader faulted on an old view: %v", r)
				}
			}()
			var old [][]byte // views from before later growths
			for {
				select {
				case <-done:
					// Touch every old view: an unmapped one faults (a
					// panic with SetPanicOnFault, set below), and the sum
					// keeps the compiler from dropping the loads.
					var sum byte
					for _, v := range old {
						if len(v) > 0 {
							sum += v[len(v)-1]
						}
					}
					viewSink.Add(uint32(sum))
					return
				default:
				}
				mu.RLock()
				h, p, err := r.Read()
				if err == nil && h.Clock != 0 {
					if uint64(len(p)) != h.DataSize || uint64(crc32.ChecksumIEEE(p)) != h.Hash {
						err = fmt.Errorf("clock %d: %d bytes, crc %x, header %+v", h.Clock, len(p), crc32.ChecksumIEEE(p), h)
					}
					if len(old) < 64 {
						old = append(old, p)
					}
				}
				mu.RUnlock()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for k := 1; k <= msgs; k++ {
		data := pattern(k, 64+k*997) // grows most of the time
		mu.Lock()
		p, err := w.Reserve(len(data))
		if err == nil {
			copy(p, data)
			err = w.Commit(Header{DataSize: uint64(len(data)), Clock: uint64(k), Hash: uint64(crc32.ChecksumIEEE(data))})
		}
		mu.Unlock()
		if err != nil {
			errs <- err
			break
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if g := w.Generation(); g < 50 {
		t.Fatalf("only %d growths", g)
	}
}

// TestReviewOpenFailuresKeepNoDescriptors: refused opens (corrupt memfile
// header, wrong kind, older version) close what they opened.
func TestReviewOpenFailuresKeepNoDescriptors(t *testing.T) {
	d := testutil.Domain(t)
	bad := newName(d)
	seg, err := shm.Create(bad, shm.KindMemfile, shm.Options{Size: 4096, Version: version}) // memfile header all zero
	if err != nil {
		t.Fatal(err)
	}
	seg.Close()
	defer os.Remove("/dev/shm/" + bad)
	old := newName(d)
	seg, err = shm.Create(old, shm.KindMemfile, shm.Options{Size: 4096, Version: 0})
	if err != nil {
		t.Fatal(err)
	}
	seg.Close()
	defer os.Remove("/dev/shm/" + old)
	good := mustCreate(t, newName(d), 0, Options{})
	before := openFDs(t)
	for range 50 {
		if _, err := Open(bad, true); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("corrupt header: %v", err)
		}
		if _, err := Open(old, false); !errors.Is(err, ErrVersion) {
			t.Fatalf("old version: %v", err)
		}
		f, err := Open(good.Name(), true)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors before, %d after", before, after)
	}
}

// viewSink receives bytes read from old views so that the reads happen.
var viewSink atomic.Uint32
