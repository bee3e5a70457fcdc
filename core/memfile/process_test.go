package memfile

import (
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

// The parent tells a child which step to read by renaming a file holding the
// step number into place; the child answers on stdout. Only one side touches
// the memory file at a time, so these tests need no mutex.

func setStep(t *testing.T, ctl string, k int) {
	t.Helper()
	tmp := ctl + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(k)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, ctl); err != nil {
		t.Fatal(err)
	}
}

func waitStep(ctl string, k int) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(ctl); err == nil && string(b) == strconv.Itoa(k) {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("step %d not set within 30s", k)
}

// childReader: args name, ctl, steps. Opens the file read-only once, then for
// each step reads and prints "<step> <clock> <size> <crc32> <capacity>".
func childReader(args []string) int {
	a := testutil.ChildArgs(args)
	f, err := Open(a[0], true)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer f.Close()
	fmt.Println("open")
	steps, _ := strconv.Atoi(a[2])
	for k := 1; k <= steps; k++ {
		if err := waitStep(a[1], k); err != nil {
			fmt.Println("error", err)
			return 1
		}
		h, p, err := f.Read()
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println(k, h.Clock, len(p), crc32.ChecksumIEEE(p), f.Capacity())
	}
	return 0
}

func pattern(k, n int) []byte {
	p := make([]byte, n)
	x := uint32(k)*2654435761 + 1
	for i := range p {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		p[i] = byte(x)
	}
	return p
}

func TestGrowthAcrossProcesses(t *testing.T) {
	d := testutil.Domain(t)
	f := mustCreate(t, newName(d), 64, Options{})
	ctl := filepath.Join(t.TempDir(), "step")
	sizes := []int{64, 10000, 16 << 20, 64, 5000, 1 << 20, 0, 64}
	c := testutil.StartChild(t, "reader", nil, f.Name(), ctl, strconv.Itoa(len(sizes)))
	c.Expect(t, "open", 20*time.Second)
	gen, capa := f.Generation(), f.Capacity()
	for i, n := range sizes {
		k := i + 1
		data := pattern(k, n)
		put(t, f, data, Header{Clock: uint64(k)})
		switch {
		case n > capa && f.Generation() == gen:
			t.Fatalf("step %d: %d bytes > capacity %d but no growth", k, n, capa)
		case n <= capa && (f.Generation() != gen || f.Capacity() != capa):
			t.Fatalf("step %d: grew or shrank for %d bytes (capacity %d)", k, n, capa)
		}
		gen, capa = f.Generation(), f.Capacity()
		setStep(t, ctl, k)
		want := fmt.Sprint(k, k, n, crc32.ChecksumIEEE(data), capa)
		if got := c.Line(t, 30*time.Second); got != want {
			t.Fatalf("step %d (%d bytes): child read %q, want %q", k, n, got, want)
		}
	}
	if gen < 2 || capa < 16<<20 {
		t.Fatalf("generation %d capacity %d after growth to 16 MiB", gen, capa)
	}
	if err := c.Wait(t, 20*time.Second); err != nil {
		t.Fatalf("reader: %v", err)
	}
}

// childWriter: args name. Creates the file, writes one message, prints
// "ready" and lives until killed (at most a minute).
func childWriter(args []string) int {
	a := testutil.ChildArgs(args)
	f, err := Create(a[0], 0, Options{})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	p, err := f.Reserve(len("from the child"))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	copy(p, "from the child")
	if err := f.Commit(Header{DataSize: uint64(len(p)), Clock: 7, ID: 42}); err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("ready")
	time.Sleep(time.Minute)
	return 0
}

func TestCreateInChildReadInParent(t *testing.T) {
	d := testutil.Domain(t)
	name := newName(d)
	c := testutil.StartChild(t, "writer", nil, name)
	c.Expect(t, "ready", 20*time.Second)
	r, err := Open(name, true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Destroy()
	h, p, err := r.Read()
	if err != nil || h.Clock != 7 || h.ID != 42 || string(p) != "from the child" {
		t.Fatalf("Read: %+v %q %v", h, p, err)
	}
	if got := r.seg.Creator().ID; got != c.Identity(t) {
		t.Fatalf("creator %v, want the child %v", got, c.Identity(t))
	}
	c.Kill()
	// The mapping outlives its creator.
	c.Wait(t, 10*time.Second)
	if _, p, err := r.Read(); err != nil || string(p) != "from the child" {
		t.Fatalf("Read after the writer died: %q %v", p, err)
	}
}
