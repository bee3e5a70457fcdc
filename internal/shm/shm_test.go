package shm

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"testing"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
)

func TestMagicSpellsSHMFSOBJ(t *testing.T) {
	b := validHeader(KindMutex, 1)
	if string(b[:8]) != "SHMFSOBJ" {
		t.Fatalf("magic bytes %q", b[:8])
	}
}

func TestCreateOpenCloseDestroy(t *testing.T) {
	d := testutil.Domain(t)
	name := newName(d, "mtx")
	var initSaw int
	s := mustCreate(t, name, KindMutex, Options{Size: 100, Version: 3, Init: func(b []byte) error {
		initSaw = len(b)
		b[HeaderSize] = 0x5a
		return nil
	}})
	if initSaw != pageSize || len(s.Bytes()) != pageSize {
		t.Fatalf("Init saw %d bytes, mapping %d, want one page %d", initSaw, len(s.Bytes()), pageSize)
	}
	if s.Name() != name || s.Kind() != KindMutex || s.Version() != 3 {
		t.Fatalf("Name %q Kind %v Version %d", s.Name(), s.Kind(), s.Version())
	}
	if c := s.Creator(); c.ID != proc.Self() || c.Instance != proc.InstanceID() || c.PIDNamespace != proc.PIDNamespace() {
		t.Fatalf("Creator %+v", c)
	}
	if _, err := Create(name, KindMutex, Options{}); !errors.Is(err, ErrExist) {
		t.Fatalf("second Create: %v, want ErrExist", err)
	}
	if left := testutil.ShmObjects(d); len(left) != 1 || left[0] != name {
		t.Fatalf("objects after create: %v (temporary name left?)", left)
	}

	o, err := Open(name, KindMutex, Options{Version: 3})
	if err != nil {
		t.Fatal(err)
	}
	if o.Bytes()[HeaderSize] != 0x5a {
		t.Fatal("Init data not visible to opener")
	}
	if _, err := Open(name, KindEvent, Options{Version: 3}); !errors.Is(err, ErrKind) {
		t.Fatalf("Open wrong kind: %v", err)
	}
	if _, err := Open(name, KindMutex, Options{Version: 2}); !errors.Is(err, ErrVersion) {
		t.Fatalf("Open with older version: %v", err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if o.Bytes() != nil {
		t.Fatal("Bytes after Close not nil")
	}
	if err := s.Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(name, KindMutex, Options{Version: 3}); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Open after Destroy: %v", err)
	}
	if err := s.Destroy(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Destroy after Destroy: %v", err)
	}
}

func TestInitErrorLeavesNothing(t *testing.T) {
	d := testutil.Domain(t)
	name := newName(d)
	boom := errors.New("boom")
	if _, err := Create(name, KindEvent, Options{Init: func([]byte) error { return boom }}); !errors.Is(err, boom) {
		t.Fatalf("Create: %v", err)
	}
	if left := testutil.ShmObjects(d); len(left) != 0 {
		t.Fatalf("left: %v", left)
	}
}

func TestNamesValidated(t *testing.T) {
	for _, n := range []string{"", "x", "shmfs_d_00000000000000ab/../x", "../etc/passwd", "shmfs_d_00000000000000ab_tmp"} {
		if _, err := Create(n, KindMutex, Options{}); !errors.Is(err, shmname.ErrInvalid) {
			t.Errorf("Create(%q): %v", n, err)
		}
		if _, err := Open(n, KindMutex, Options{}); !errors.Is(err, shmname.ErrInvalid) {
			t.Errorf("Open(%q): %v", n, err)
		}
	}
}

func TestModeIgnoresUmask(t *testing.T) {
	d := testutil.Domain(t)
	for _, um := range []int{0, 0o077} {
		old := syscall.Umask(um)
		for _, c := range []struct{ opt, want os.FileMode }{{0, 0o600}, {0o660, 0o660}, {0o640, 0o640}} {
			name := newName(d)
			s, err := Create(name, KindEvent, Options{Mode: c.opt})
			if err != nil {
				syscall.Umask(old)
				t.Fatal(err)
			}
			st, err := os.Stat(shmname.Path(name))
			if err != nil || st.Mode().Perm() != c.want {
				t.Errorf("umask %03o, Mode %v: got %v (%v), want %v", um, c.opt, st.Mode().Perm(), err, c.want)
			}
			s.Destroy()
		}
		syscall.Umask(old)
	}
	if _, err := Create(newName(d), KindEvent, Options{Mode: 0o666}); !errors.Is(err, ErrPermission) {
		t.Fatalf("world-writable mode: %v", err)
	}
}

func TestRefcountSharesMapping(t *testing.T) {
	d := testutil.Domain(t)
	name := newName(d)
	s := mustCreate(t, name, KindMemfile, Options{Version: 1})
	o1, err := Open(name, KindMemfile, Options{Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	o2, created, err := CreateOrOpen(name, KindMemfile, Options{Version: 1})
	if err != nil || created {
		t.Fatalf("CreateOrOpen: created %v, %v", created, err)
	}
	ro, err := Open(name, KindMemfile, Options{Version: 1, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []*Segment{o1, o2, ro} {
		if &x.Bytes()[0] != &s.Bytes()[0] {
			t.Fatal("second open in one process did not share the mapping")
		}
	}
	if !ro.ReadOnly() || s.ReadOnly() {
		t.Fatal("ReadOnly does not follow the opener's request")
	}
	if err := ro.Grow(2 * pageSize); !errors.Is(err, ErrPermission) {
		t.Fatalf("Grow through a read-only segment sharing a writable mapping: %v", err)
	}
	if s.obj.refs != 4 {
		t.Fatalf("refs %d, want 4", s.obj.refs)
	}
	s.Close()
	o1.Close()
	o2.Close()
	b := ro.Bytes()
	if b == nil || b[0] != 'S' {
		t.Fatal("mapping gone while a reference is open")
	}
	if err := ro.Destroy(); err != nil {
		t.Fatal(err)
	}
	reg.mu.Lock()
	_, still := reg.objs[regKey{name, false}]
	reg.mu.Unlock()
	if still {
		t.Fatal("registry entry left after last Close")
	}
}

func TestReadOnlyFirstThenReadWrite(t *testing.T) {
	d := testutil.Domain(t)
	name := newName(d)
	s := mustCreate(t, name, KindEvent, Options{})
	s.Close() // no mapping left in this process
	ro, err := Open(name, KindEvent, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := ro.Grow(2 * pageSize); !errors.Is(err, ErrPermission) {
		t.Fatalf("Grow read-only: %v", err)
	}
	rw, err := Open(name, KindEvent, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rw.Bytes()[HeaderSize] = 7 // must not fault: a separate writable mapping
	if ro.Bytes()[HeaderSize] != 7 {
		t.Fatal("write not visible through the read-only mapping")
	}
	if err := rw.Destroy(); err != nil {
		t.Fatal(err)
	}
}

func TestNameReusedAfterDestroy(t *testing.T) {
	d := testutil.Domain(t)
	name := newName(d)
	a := mustCreate(t, name, KindEvent, Options{})
	keep, _ := Open(name, KindEvent, Options{})
	if err := a.Destroy(); err != nil {
		t.Fatal(err)
	}
	b := mustCreate(t, name, KindEvent, Options{})
	if &b.Bytes()[0] == &keep.Bytes()[0] {
		t.Fatal("new object under a reused name shares the old mapping")
	}
	c, err := Open(name, KindEvent, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if &c.Bytes()[0] != &b.Bytes()[0] {
		t.Fatal("Open of a reused name returned the old object")
	}
	c.Close()
	if err := keep.Destroy(); err != nil { // must not unlink b's file
		t.Fatal(err)
	}
	if _, err := os.Stat(shmname.Path(name)); err != nil {
		t.Fatalf("Destroy of the old object removed the new one: %v", err)
	}
	b.Destroy()
}

func TestGrowAndRefresh(t *testing.T) {
	d := testutil.Domain(t)
	name := newName(d)
	s := mustCreate(t, name, KindMemfile, Options{})
	defer s.Destroy()
	other, _ := Open(name, KindMemfile, Options{})
	defer other.Close()
	old := s.Bytes()
	if err := s.Grow(3*pageSize - 5); err != nil {
		t.Fatal(err)
	}
	nb := s.Bytes()
	if len(nb) != 3*pageSize || len(other.Bytes()) != 3*pageSize {
		t.Fatalf("after Grow: %d / %d bytes", len(nb), len(other.Bytes()))
	}
	old[HeaderSize] = 42 // old mapping still valid, same pages
	if nb[HeaderSize] != 42 {
		t.Fatal("old and new mapping do not share pages")
	}
	nb[3*pageSize-1] = 9
	if err := s.Grow(pageSize); err != nil || len(s.Bytes()) != 3*pageSize {
		t.Fatalf("Grow smaller: %v, %d bytes", err, len(s.Bytes()))
	}
	if grown, err := s.Refresh(); grown || err != nil {
		t.Fatalf("Refresh without growth: %v %v", grown, err)
	}
	// Growth by "another process": extend the file behind our back.
	if err := os.Truncate(shmname.Path(name), 5*int64(pageSize)); err != nil {
		t.Fatal(err)
	}
	if grown, err := s.Refresh(); !grown || err != nil || len(s.Bytes()) != 5*pageSize {
		t.Fatalf("Refresh after growth: %v %v %d", grown, err, len(s.Bytes()))
	}
	if s.Bytes()[3*pageSize-1] != 9 {
		t.Fatal("data lost across remap")
	}
	if err := os.Truncate(shmname.Path(name), 4*int64(pageSize)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Refresh(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Refresh after shrink: %v", err)
	}
}

func TestConcurrentGoroutines(t *testing.T) {
	d := testutil.Domain(t)
	name := newName(d)
	s := mustCreate(t, name, KindMemfile, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				x, err := Open(name, KindMemfile, Options{ReadOnly: g%2 == 0})
				if err != nil {
					errs <- err
					return
				}
				if b := x.Bytes(); len(b) < pageSize || b[0] != 'S' {
					errs <- errors.New("bad mapping")
				}
				if _, err := x.Refresh(); err != nil {
					errs <- err
				}
				if g == 1 && i%20 == 0 {
					if err := x.Grow(len(x.Bytes()) + pageSize); err != nil {
						errs <- err
					}
				}
				if err := x.Close(); err != nil {
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
	if n := len(s.Bytes()); n != 11*pageSize {
		t.Errorf("after 10 growths: %d bytes, want %d", n, 11*pageSize)
	}
	if s.obj.refs != 1 {
		t.Errorf("refs %d after all goroutines closed", s.obj.refs)
	}
	s.Destroy()
}
