package proc

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestSelfAlive(t *testing.T) {
	id := Self()
	if int(id.PID) != os.Getpid() || id.StartTime == 0 {
		t.Fatalf("Self = %+v", id)
	}
	if !id.Alive() || !AliveTag(Unpack(id.Pack())) {
		t.Fatal("own process reported dead")
	}
	wrong := id
	wrong.StartTime++
	if wrong.Alive() {
		t.Fatal("identity with a different start time reported alive (PID reuse)")
	}
}

func TestParseStatOddName(t *testing.T) {
	line := []byte("123 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 20 21\n")
	st, state, err := parseStat(line)
	if err != nil || st != 4242 || state != 'S' {
		t.Fatalf("parseStat = %d %c %v", st, state, err)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 nope"} {
		if _, _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
}

func TestZombieIsDead(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal("cannot start true:", err)
	}
	pid := cmd.Process.Pid
	st, _, err := Stat(pid)
	if err != nil {
		t.Fatal("stat of child failed:", err)
	}
	id := Identity{PID: int32(pid), StartTime: st}
	defer cmd.Wait()
	// Not reaped yet: the child becomes a zombie once it exits.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if _, state, _ := Stat(pid); state == 'Z' {
			break
		}
	}
	if id.Alive() {
		t.Fatal("exited, unreaped child reported alive")
	}
	cmd.Wait()
	if id.Alive() {
		t.Fatal("reaped child reported alive")
	}
}

func TestRandomIDNonZeroDistinct(t *testing.T) {
	a, b := RandomID(), RandomID()
	if a == 0 || b == 0 || a == b {
		t.Fatalf("RandomID gave %x %x", a, b)
	}
	first := InstanceID()
	if first == 0 || InstanceID() != first {
		t.Fatal("InstanceID not stable")
	}
}

func TestReadCredsOfSelf(t *testing.T) {
	c, err := ReadCreds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if c.UIDs[0] != uint32(os.Getuid()) || c.UIDs[1] != uint32(os.Geteuid()) || !c.HasUID(uint32(os.Geteuid())) {
		t.Fatalf("uids %v, process has uid %d euid %d", c.UIDs, os.Getuid(), os.Geteuid())
	}
	if c.GIDs[1] != uint32(os.Getegid()) || !c.InGroup(uint32(os.Getegid())) {
		t.Fatalf("gids %v, process has egid %d", c.GIDs, os.Getegid())
	}
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		if !c.InGroup(uint32(g)) {
			t.Errorf("supplementary group %d missing from %v", g, c.Groups)
		}
	}
	if c.HasUID(0xfffffff0) || c.InGroup(0xfffffff0) {
		t.Fatal("a uid/gid the process does not have is reported")
	}
	if uid, err := UID(os.Getpid()); err != nil || uid != uint32(os.Getuid()) {
		t.Fatalf("UID = %d, %v", uid, err)
	}
	if _, err := ReadCreds(0x3fffffff); err != ErrNoProcess {
		t.Fatalf("ReadCreds of a missing pid: %v, want ErrNoProcess", err)
	}
}
