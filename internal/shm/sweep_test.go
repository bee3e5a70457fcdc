package shm

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
)

// childHold: args domain, n. Creates n objects, prints "obj <name>" for each
// and "ready", then lives until killed (at most a minute).
func childHold(args []string) int {
	a := testutil.ChildArgs(args)
	n, _ := strconv.Atoi(a[1])
	for i := range n {
		name := shmname.Object(a[0], uint64(time.Now().UnixNano())^uint64(i)<<40^uint64(os.Getpid())<<20, "held")
		if _, err := Create(name, Kind(1+i%3), Options{Version: 1}); err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("obj", name)
	}
	fmt.Println("ready")
	time.Sleep(time.Minute)
	return 0
}

func holdObjects(t *testing.T, c *testutil.Child) []string {
	var names []string
	for {
		l := c.Line(t, 20*time.Second)
		if l == "ready" {
			return names
		}
		n, ok := strings.CutPrefix(l, "obj ")
		if !ok {
			t.Fatalf("child: %q", l)
		}
		names = append(names, n)
	}
}

func exists(name string) bool { _, err := os.Lstat(shmname.Path(name)); return err == nil }

func staleNames(st []Stale) []string {
	var n []string
	for _, s := range st {
		n = append(n, s.Name)
	}
	slices.Sort(n)
	return n
}

func TestSweep(t *testing.T) {
	d := testutil.Domain(t)
	dead := testutil.StartChild(t, "hold", nil, d, "3")
	live := testutil.StartChild(t, "hold", nil, d, "2")
	deadObjs, liveObjs := holdObjects(t, dead), holdObjects(t, live)
	slices.Sort(deadObjs)
	deadID := dead.Identity(t)
	dead.Kill()
	dead.Wait(t, 10*time.Second)
	if deadID.Alive() {
		t.Fatal("killed child still alive")
	}

	// Unreadable headers: a young one may be under construction and stays,
	// an old one goes.
	young, old := newName(d, "junk"), newName(d, "junk")
	writeRaw(t, young, []byte("garbage"), 10, 0o600)
	writeRaw(t, old, []byte("garbage"), 10, 0o600)
	past := time.Now().Add(-2 * SweepGrace)
	if err := os.Chtimes(shmname.Path(old), past, past); err != nil {
		t.Fatal(err)
	}
	// Temporary names: of a dead creator (died mid-creation) it goes, of a
	// live one it stays however old.
	tmpDead, tmpLive := newName(d, TempSuffix), newName(d, TempSuffix)
	hdr := validHeader(KindMutex, 1)
	encodeHeader(hdr, header{kind: KindMutex, version: 1, creator: Creator{ID: deadID, PIDNamespace: proc.PIDNamespace()}})
	writeRaw(t, tmpDead, hdr, int64(pageSize), 0o600)
	writeRaw(t, tmpLive, validHeader(KindMutex, 1), HeaderSize, 0o600) // header written, not yet fallocated
	if err := os.Chtimes(shmname.Path(tmpLive), past, past); err != nil {
		t.Fatal(err)
	}
	// Our own objects (live creator) stay.
	mine := mustCreate(t, newName(d), KindMutex, Options{})
	defer mine.Destroy()

	infos, err := List(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 3+2+2+2+1 {
		t.Fatalf("List: %d objects, want 10: %+v", len(infos), infos)
	}
	for _, inf := range infos {
		switch {
		case slices.Contains(deadObjs, inf.Name):
			if inf.Alive || inf.Creator.ID != deadID || inf.Err != nil {
				t.Errorf("dead child's %s: %+v", inf.Name, inf)
			}
		case slices.Contains(liveObjs, inf.Name):
			if !inf.Alive || inf.Err != nil || inf.Size != int64(pageSize) {
				t.Errorf("live child's %s: %+v", inf.Name, inf)
			}
		case inf.Name == tmpDead || inf.Name == tmpLive:
			if !inf.Temp || inf.Err != nil || inf.Alive != (inf.Name == tmpLive) {
				t.Errorf("temporary %s: %+v", inf.Name, inf)
			}
		case inf.Name == young || inf.Name == old:
			if inf.Err == nil {
				t.Errorf("junk %s without error", inf.Name)
			}
		}
	}
	if all, err := List(""); err != nil || len(all) < len(infos) {
		t.Fatalf("List(all): %d, %v", len(all), err)
	}

	want := append(slices.Clone(deadObjs), old, tmpDead)
	slices.Sort(want)
	st, err := Sweep(d, true)
	if err != nil || !slices.Equal(staleNames(st), want) {
		t.Fatalf("dry run: %v, %v; want %v", staleNames(st), err, want)
	}
	for _, n := range want {
		if !exists(n) {
			t.Fatalf("dry run removed %s", n)
		}
	}
	st, err = Sweep(d, false)
	if err != nil || !slices.Equal(staleNames(st), want) {
		t.Fatalf("sweep: %v, %v; want %v", staleNames(st), err, want)
	}
	for _, n := range want {
		if exists(n) {
			t.Errorf("sweep left %s", n)
		}
	}
	for _, n := range append(slices.Clone(liveObjs), young, tmpLive, mine.Name()) {
		if !exists(n) {
			t.Errorf("sweep removed %s of a live process", n)
		}
	}
	if st, err := Sweep(d, false); err != nil || len(st) != 0 {
		t.Fatalf("second sweep: %v, %v", staleNames(st), err)
	}

	live.Kill()
	live.Wait(t, 10*time.Second)
	st, err = Sweep(d, false)
	slices.Sort(liveObjs)
	if err != nil || !slices.Equal(staleNames(st), liveObjs) {
		t.Fatalf("sweep after kill: %v, %v; want %v", staleNames(st), err, liveObjs)
	}
}
