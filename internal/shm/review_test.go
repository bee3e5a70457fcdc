package shm

import (
	"errors"
	"os"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

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

// sweepLowFD runs Sweep(domain) with exactly one free descriptor: enough
// to open each object, not enough to also read /proc/PID/stat of its
// creator. No other test of this package runs in parallel.
func sweepLowFD(t *testing.T, domain string) ([]Stale, error) {
	t.Helper()
	if _, err := List(domain); err != nil { // warm up (runtime poller etc.)
		t.Fatal(err)
	}
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = uint64(fd) + 1 // only descriptor number fd is free
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
			t.Fatal(err)
		}
	}()
	return Sweep(domain, false)
}

// TestReviewSweepKeepsLiveObjectWhenProcUnreadable: a process that runs out
// of descriptors (EMFILE) while sweeping cannot read /proc/PID/stat of the
// creator. That says nothing about the creator being dead, yet Sweep treats
// the failed read as death and unlinks the object of a live process (here
// our own).
func TestReviewSweepKeepsLiveObjectWhenProcUnreadable(t *testing.T) {
	d := testutil.Domain(t)
	name := newName(d, "live")
	s := mustCreate(t, name, KindEvent, Options{Version: 1})
	defer s.Destroy()
	stale, err := sweepLowFD(t, d)
	t.Logf("Sweep: %v, %v", stale, err)
	if !exists(name) || len(stale) > 0 {
		t.Fatalf("Sweep short of descriptors removed the object of a live creator (this process): exists=%v, stale %v", exists(name), stale)
	}
}

// TestReviewConcurrentFirstOpenSharesMapping: goroutines opening a name not
// yet mapped in this process must end up sharing one mapping ("a process
// maps each object once").
func TestReviewConcurrentFirstOpenSharesMapping(t *testing.T) {
	d := testutil.Domain(t)
	const rounds, openers = 2000, 6
	for r := range rounds {
		name := newName(d)
		c := mustCreate(t, name, KindEvent, Options{Version: 1})
		c.Close() // nothing of it mapped here any more
		var wg sync.WaitGroup
		start := make(chan struct{})
		segs := make([]*Segment, openers)
		errs := make([]error, openers)
		for i := range openers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				segs[i], errs[i] = Open(name, KindEvent, Options{Version: 1})
			}()
		}
		close(start)
		wg.Wait()
		distinct := map[*object]bool{}
		for i, s := range segs {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			distinct[s.obj] = true
		}
		for i, s := range segs {
			if i == 0 {
				s.Destroy()
			} else {
				s.Close()
			}
		}
		if len(distinct) != 1 {
			t.Fatalf("round %d: %d concurrent first Opens made %d mappings of one object, want 1", r, openers, len(distinct))
		}
	}
}

// TestReviewNoDescriptorLeaks: every path of Create, Open, CreateOrOpen,
// Grow, Refresh, Close and Destroy, failing ones included, gives back its
// descriptors.
func TestReviewNoDescriptorLeaks(t *testing.T) {
	d := testutil.Domain(t)
	before := openFDs(t)
	for range 20 {
		name := newName(d)
		s := mustCreate(t, name, KindMemfile, Options{Version: 2})
		if _, err := Create(name, KindMemfile, Options{Version: 2}); !errors.Is(err, ErrExist) {
			t.Fatalf("Create existing: %v", err)
		}
		if _, err := Create(newName(d), KindMemfile, Options{Init: func([]byte) error { return errors.New("no") }}); err == nil {
			t.Fatal("Init error ignored")
		}
		o, created, err := CreateOrOpen(name, KindMemfile, Options{Version: 2})
		if err != nil || created {
			t.Fatal(created, err)
		}
		ro, err := Open(name, KindMemfile, Options{Version: 2, ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Open(name, KindEvent, Options{Version: 2}); !errors.Is(err, ErrKind) { // shared path
			t.Fatalf("wrong kind: %v", err)
		}
		if _, err := Open(name, KindMemfile, Options{Version: 1}); !errors.Is(err, ErrVersion) {
			t.Fatalf("old version: %v", err)
		}
		if _, err := Open(newName(d), KindMemfile, Options{Version: 2}); !errors.Is(err, ErrNotExist) {
			t.Fatalf("missing: %v", err)
		}
		if err := s.Grow(4 * pageSize); err != nil {
			t.Fatal(err)
		}
		if _, err := ro.Refresh(); err != nil {
			t.Fatal(err)
		}
		for _, x := range []*Segment{o, ro} {
			if err := x.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Destroy(); err != nil {
			t.Fatal(err)
		}
		// Not mapped here any more: the fresh-open failure paths.
		other := newName(d)
		x := mustCreate(t, other, KindMutex, Options{Version: 1})
		x.Close()
		if _, err := Open(other, KindEvent, Options{Version: 1}); !errors.Is(err, ErrKind) {
			t.Fatalf("wrong kind (fresh): %v", err)
		}
		os.Remove("/dev/shm/" + other)
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors open before, %d after", before, after)
	}
}

// TestReviewOpenCloseDestroyInterleavings: goroutines CreateOrOpen, Grow,
// Close and Destroy one name at random. No call may fail unexpectedly, and
// afterwards no descriptor, mapping or registry entry may be left.
func TestReviewOpenCloseDestroyInterleavings(t *testing.T) {
	d := testutil.Domain(t)
	name := newName(d)
	before := openFDs(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var held []*Segment
			x := uint32(g + 1)
			for range 400 {
				x ^= x << 13
				x ^= x >> 17
				x ^= x << 5
				switch op := x % 8; {
				case op < 3 || len(held) == 0:
					s, _, err := CreateOrOpen(name, KindMemfile, Options{Version: 1})
					if err != nil {
						errs <- err
						return
					}
					if b := s.Bytes(); len(b) < pageSize || b[0] != 'S' {
						errs <- errors.New("bad mapping")
						return
					}
					held = append(held, s)
				case op < 5:
					i := int(x/8) % len(held)
					if err := held[i].Close(); err != nil {
						errs <- err
						return
					}
					held = append(held[:i], held[i+1:]...)
				case op < 6:
					i := int(x/8) % len(held)
					if err := held[i].Destroy(); err != nil {
						errs <- err
						return
					}
					held = append(held[:i], held[i+1:]...)
				default:
					s := held[int(x/8)%len(held)]
					if err := s.Grow(len(s.Bytes()) + pageSize); err != nil {
						errs <- err
						return
					}
				}
			}
			for _, s := range held {
				if err := s.Close(); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	os.Remove("/dev/shm/" + name)
	reg.mu.Lock()
	n := 0
	for k := range reg.objs {
		if k.name == name {
			n++
		}
	}
	reg.mu.Unlock()
	if n != 0 {
		t.Errorf("%d registry entries left for %s", n, name)
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors before, %d after", before, after)
	}
}
