package shm

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
)

const raceFill = 0xa5

// childRace: args domain, rounds, go file, index. It prints "ready", waits
// for the go file to hold the start time (unix ns), then for each round it
// calls CreateOrOpen on shmfs_<domain>_<round>_race, child k starting k*4 ms
// after the round's start so that later children arrive while the first one
// is still initialising (Init takes >= 40 ms), checks that header and
// contents are complete, and prints "<round> created|opened" or
// "<round> torn: why".
func childRace(args []string) int {
	a := testutil.ChildArgs(args)
	domain := a[0]
	rounds, _ := strconv.Atoi(a[1])
	k, _ := strconv.Atoi(a[3])
	fmt.Println("ready")
	var start int64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		if b, err := os.ReadFile(a[2]); err == nil && len(b) > 0 {
			start, _ = strconv.ParseInt(string(b), 10, 64)
			break
		}
		if time.Now().After(deadline) {
			fmt.Println("0 torn: no start signal")
			return 1
		}
	}
	var segs []*Segment
	for r := range rounds {
		name := shmname.Object(domain, uint64(r+1), "race")
		time.Sleep(time.Until(time.Unix(0, start+int64(r)*int64(80*time.Millisecond)+int64(k)*int64(4*time.Millisecond))))
		s, created, err := CreateOrOpen(name, KindEvent, Options{Size: 2 * pageSize, Version: 1, Init: func(b []byte) error {
			// Slow, piecewise initialisation: an opener that could see the
			// object now would see it half filled.
			for i := HeaderSize; i < len(b); i += 512 {
				for j := i; j < min(i+512, len(b)); j++ {
					b[j] = raceFill
				}
				time.Sleep(5 * time.Millisecond)
			}
			return nil
		}})
		if err != nil {
			fmt.Printf("%d torn: %v\n", r, err)
			continue
		}
		segs = append(segs, s)
		b := s.Bytes()
		why := ""
		if len(b) != 2*pageSize {
			why = fmt.Sprintf("mapping %d bytes", len(b))
		} else if _, err := decodeHeader(b); err != nil {
			why = err.Error()
		} else {
			for i := HeaderSize; i < len(b); i++ {
				if b[i] != raceFill {
					why = fmt.Sprintf("byte %d is %#x", i, b[i])
					break
				}
			}
		}
		switch {
		case why != "":
			fmt.Printf("%d torn: %s\n", r, why)
		case created:
			fmt.Printf("%d created\n", r)
		default:
			fmt.Printf("%d opened\n", r)
		}
	}
	for _, s := range segs {
		s.Close()
	}
	fmt.Println("done")
	return 0
}

func TestCreateOrOpenRace(t *testing.T) {
	d := testutil.Domain(t)
	const children, rounds = 8, 10
	goFile := filepath.Join(t.TempDir(), "go")
	var cs []*testutil.Child
	for k := range children {
		cs = append(cs, testutil.StartChild(t, "race", nil, d, strconv.Itoa(rounds), goFile, strconv.Itoa(k)))
	}
	// Start the rounds only once every child runs, so that they really
	// race however slowly the machine started them.
	for _, c := range cs {
		c.Expect(t, "ready", 30*time.Second)
	}
	start := time.Now().Add(50 * time.Millisecond).UnixNano()
	if err := os.WriteFile(goFile+".tmp", []byte(strconv.FormatInt(start, 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(goFile+".tmp", goFile); err != nil {
		t.Fatal(err)
	}
	created := make([]int, rounds)
	for _, c := range cs {
		for {
			l := c.Line(t, 30*time.Second)
			if l == "done" {
				break
			}
			f := strings.SplitN(l, " ", 2)
			r, err := strconv.Atoi(f[0])
			if err != nil || r < 0 || r >= rounds || len(f) < 2 {
				t.Fatalf("bad line %q", l)
			}
			switch {
			case f[1] == "created":
				created[r]++
			case f[1] == "opened":
			default:
				t.Errorf("round %d: %s", r, f[1])
			}
		}
		if err := c.Wait(t, 10*time.Second); err != nil {
			t.Fatalf("child: %v", err)
		}
	}
	for r, n := range created {
		if n != 1 {
			t.Errorf("round %d: %d processes report created, want exactly 1", r, n)
		}
		s, err := Open(shmname.Object(d, uint64(r+1), "race"), KindEvent, Options{Version: 1})
		if err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		s.Destroy()
	}
}
