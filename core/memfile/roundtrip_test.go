package memfile

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shm"
	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
)

// TestRoundTrip: a message written through Prepare/Begin/Commit reads back,
// from another File of the name, with every header field and its payload;
// the file reports what Create recorded.
func TestRoundTrip(t *testing.T) {
	d := testutil.Domain(t)
	f, w := mustCreate(t, d, Options{Slots: 8, Publisher: 77, Topic: "a/β", MaxMessage: 1 << 20})
	r := openReader(t, f)
	for _, g := range []*File{f, r} {
		if g.Slots() != 8 || g.Publisher() != 77 || g.Topic() != "a/β" || g.MaxMessage() != 1<<20 {
			t.Fatalf("Slots %d Publisher %d Topic %q MaxMessage %d", g.Slots(), g.Publisher(), g.Topic(), g.MaxMessage())
		}
		if g.Head() != 0 || g.Closed() || !g.Linked() || g.Generation() != 0 {
			t.Fatalf("new file: head %d closed %v linked %v generation %d", g.Head(), g.Closed(), g.Linked(), g.Generation())
		}
		if g.Creator().ID != proc.Self() {
			t.Fatalf("creator %v, want %v", g.Creator().ID, proc.Self())
		}
	}
	if _, _, err := r.Read(1); !errors.Is(err, ErrOverwritten) {
		t.Fatalf("Read(1) of an empty file: %v, want ErrOverwritten", err)
	}

	ov, err := w.Prepare(5)
	if err != nil || ov != 0 {
		t.Fatalf("Prepare(5) = %d, %v", ov, err)
	}
	p, err := w.Begin(5)
	if err != nil || len(p) != 5 || cap(p) != 5 {
		t.Fatalf("Begin(5): %d bytes (cap %d), %v", len(p), cap(p), err)
	}
	copy(p, "hello")
	want := Header{Clock: 99 /* ignored */, Size: 5, ID: -5, Time: 1234567890123, Hash: 0xdeadbeef,
		Options: OptAck | OptChecksum, AckTimeoutMs: 250, Lost: 3}
	c, err := w.Commit(want)
	if err != nil || c != 1 || w.Clock() != 1 {
		t.Fatalf("Commit = %d, %v; Clock %d", c, err, w.Clock())
	}
	want.Clock = 1
	if f.Head() != 1 || r.Head() != 1 {
		t.Fatalf("head %d / %d, want 1", f.Head(), r.Head())
	}
	h, p, err := r.Read(1)
	if err != nil || h != want || string(p) != "hello" || cap(p) != 5 || !r.Intact(1) {
		t.Fatalf("Read(1) = %+v %q (cap %d), %v; want %+v", h, p, cap(p), err, want)
	}
	if _, _, err := r.Read(0); !errors.Is(err, ErrOverwritten) {
		t.Fatalf("Read(0): %v", err)
	}
	if r.Intact(0) || r.Intact(2) {
		t.Fatal("Intact of clocks 0 and 2")
	}

	// An empty message is a message.
	if c, _ := put(t, w, nil, Header{ID: 2}); c != 2 {
		t.Fatalf("clock %d, want 2", c)
	}
	if h, p, err := r.Read(2); err != nil || h.Size != 0 || h.ID != 2 || len(p) != 0 {
		t.Fatalf("empty message: %+v %q %v", h, p, err)
	}
	if _, p, err := r.Read(1); err != nil || string(p) != "hello" {
		t.Fatalf("Read(1) after 2: %q %v", p, err)
	}

	// The waiting word is the publisher's to set.
	f.SetWaiting(7)
	r.SetWaiting(9) // read-only: ignored
	if f.Waiting() != 7 || r.Waiting() != 7 {
		t.Fatalf("waiting %d / %d, want 7", f.Waiting(), r.Waiting())
	}

	// Destroy: closed for the readers, the name gone, their mapping valid.
	if err := f.Destroy(); err != nil {
		t.Fatal(err)
	}
	if !r.Closed() || r.Linked() {
		t.Fatalf("after Destroy: closed %v linked %v", r.Closed(), r.Linked())
	}
	if _, err := os.Stat(shmname.Path(f.Name())); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("name still in /dev/shm: %v", err)
	}
	if _, p, err := r.Read(1); err != nil || string(p) != "hello" {
		t.Fatalf("Read after Destroy: %q %v", p, err)
	}
	if _, err := Open(f.Name(), OpenOptions{ReadOnly: true}); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Open after Destroy: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Read(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if r.Head() != 0 || r.Capacity() != 0 || r.Closed() || r.Intact(1) {
		t.Fatal("a closed File reports values")
	}
	if _, err := w.Prepare(1); err == nil {
		t.Fatal("Prepare on a destroyed file")
	}
	if _, err := w.Begin(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Begin on a destroyed file: %v", err)
	}
}

// TestWriterMisuse: the writer refuses steps out of order and sizes beyond
// what was prepared; a read-only file has no writer.
func TestWriterMisuse(t *testing.T) {
	d := testutil.Domain(t)
	f, w := mustCreate(t, d, Options{Slots: 4, MaxMessage: 1000})
	if _, err := w.Commit(Header{}); err == nil {
		t.Fatal("Commit without Begin")
	}
	if _, err := w.Prepare(1001); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Prepare above MaxMessage: %v", err)
	}
	if _, err := w.Prepare(-1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Prepare(-1): %v", err)
	}
	if _, err := w.Prepare(10); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Begin(65); err == nil {
		t.Fatal("Begin beyond the prepared (rounded) size")
	}
	if _, err := w.Begin(-1); err == nil {
		t.Fatal("Begin(-1)")
	}
	if _, err := w.Begin(10); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(Header{Size: 65}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Commit beyond the prepared size: %v", err)
	}
	if c, err := w.Commit(Header{Size: 10}); err != nil || c != 1 {
		t.Fatalf("Commit = %d, %v", c, err)
	}
	if _, err := w.Commit(Header{Size: 10}); err == nil {
		t.Fatal("second Commit of one Begin")
	}
	if f.Head() != 1 {
		t.Fatalf("head %d after refused commits", f.Head())
	}

	r := openReader(t, f)
	if _, err := NewWriter(r, Options{Slots: 4}); !errors.Is(err, ErrPermission) {
		t.Fatalf("NewWriter on a read-only file: %v", err)
	}
	if _, err := NewWriter(f, Options{Slots: 8}); err == nil {
		t.Fatal("NewWriter with another slot count")
	}
	if _, err := NewWriter(f, Options{Slots: 3}); err == nil {
		t.Fatal("NewWriter with invalid options")
	}
}

// TestBeginRequiresPrepare: Begin hands out the place of a message Prepare
// placed and whose victims it invalidates. After a Commit that place holds
// the committed message, still readable: a Begin there without a Prepare
// would let the publisher overwrite a message that readers take as intact.
func TestBeginRequiresPrepare(t *testing.T) {
	d := testutil.Domain(t)
	f, w := mustCreate(t, d, Options{Slots: 4})
	put(t, w, []byte("first"), Header{})
	p, err := w.Begin(5)
	if err == nil {
		copy(p, "XXXXX")
		if _, q, err := f.Read(1); err == nil && f.Intact(1) && string(q) != "first" {
			t.Errorf("Begin without Prepare overwrote message 1, still intact: %q", q)
		}
		t.Fatal("Begin after Commit without Prepare succeeded")
	}
}

// TestCreateOptions: Create checks its options and the name; Open the name.
func TestCreateOptions(t *testing.T) {
	d := testutil.Domain(t)
	bad := []Options{
		{Slots: 3}, {Slots: MaxSlots * 2}, {Slots: -1},
		{MinSize: -1}, {MaxMessage: -1}, {MaxBuffer: -1},
		{Reserve: maxReserve + 1},
		{MaxMessage: shm.MaxSize / 2},
		{MinSize: shm.MaxSize/4 + 1}, {MaxBuffer: shm.MaxSize/4 + 1},
		{Topic: strings.Repeat("x", maxTopic+1)}, {Topic: "\xff"},
	}
	for _, o := range bad {
		if o.Topic == "" {
			o.Topic = testTopic
		}
		if f, err := Create(newName(d), o); err == nil {
			f.Destroy()
			t.Errorf("Create(%+v) succeeded", o)
		}
	}
	if f, err := Create(newName(d), Options{}); err == nil {
		f.Destroy()
		t.Error("Create without a topic succeeded")
	}
	if _, err := Create(newName(d), Options{Topic: "t", MaxMessage: shm.MaxSize / 2}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("huge MaxMessage: %v, want ErrTooLarge", err)
	}
	f, _ := mustCreate(t, d, Options{Slots: MaxSlots, Topic: strings.Repeat("é", maxTopic/2)})
	if f.Slots() != MaxSlots || f.Capacity() < DefaultMinSize {
		t.Fatalf("slots %d capacity %d", f.Slots(), f.Capacity())
	}
	if _, err := Create(f.Name(), Options{Topic: "t"}); !errors.Is(err, ErrExist) {
		t.Fatalf("Create of an existing name: %v", err)
	}
	if _, err := Open(newName(d), OpenOptions{}); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Open of a missing name: %v", err)
	}
	g, err := Open(f.Name(), OpenOptions{})
	if err != nil || g.Slots() != MaxSlots || g.Topic() != f.Topic() {
		t.Fatalf("Open read-write: %v", err)
	}
	g.Close()
}

// TestModeOption: files are 0600 unless Options.Mode says otherwise.
func TestModeOption(t *testing.T) {
	d := testutil.Domain(t)
	for _, c := range []struct {
		mode, want os.FileMode
	}{{0, 0o600}, {0o660, 0o660}, {0o640, 0o640}} {
		f, _ := mustCreate(t, d, Options{Mode: c.mode})
		st, err := os.Stat(shmname.Path(f.Name()))
		if err != nil || st.Mode().Perm() != c.want {
			t.Errorf("Mode %v: file mode %v (%v), want %v", c.mode, st.Mode().Perm(), err, c.want)
		}
	}
	if f, err := Create(newName(d), Options{Topic: "t", Mode: 0o666}); err == nil {
		f.Destroy()
		t.Error("world-writable mode accepted")
	}
}
