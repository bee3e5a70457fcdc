package shm

import (
	"os"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
)

func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func([]string) int{
		"race": childRace,
		"hold": childHold,
	})
}

// newName returns a fresh object name of domain d.
func newName(d string, suffixes ...string) string {
	return shmname.Object(d, proc.RandomID(), suffixes...)
}

// validHeader returns a common header that Open(kind, version) accepts.
func validHeader(kind Kind, version uint16) []byte {
	b := make([]byte, HeaderSize)
	encodeHeader(b, header{
		kind: kind, version: version, hdrSize: HeaderSize,
		creator: Creator{Instance: proc.InstanceID(), ID: proc.Self(), PIDNamespace: proc.PIDNamespace()},
		created: time.Now().UnixNano(),
	})
	return b
}

// writeRaw plants a file in /dev/shm with content at offset 0, the given
// total size (sparse) and mode, removed at cleanup.
func writeRaw(t testing.TB, name string, content []byte, size int64, mode os.FileMode) {
	t.Helper()
	path := shmname.Path(name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	defer f.Close()
	if _, err := f.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Chmod(mode); err != nil {
		t.Fatal(err)
	}
}

func mustCreate(t testing.TB, name string, kind Kind, o Options) *Segment {
	t.Helper()
	s, err := Create(name, kind, o)
	if err != nil {
		t.Fatalf("Create(%s): %v", name, err)
	}
	return s
}
