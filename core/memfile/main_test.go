package memfile

import (
	"testing"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
)

func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func([]string) int{
		"reader": childReader,
		"writer": childWriter,
	})
}

func newName(d string) string { return shmname.Object(d, proc.RandomID()) }

func mustCreate(t testing.TB, name string, initial int, o Options) *File {
	t.Helper()
	f, err := Create(name, initial, o)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { f.Destroy() })
	return f
}

// put writes one message through the writer API.
func put(t testing.TB, f *File, data []byte, h Header) {
	t.Helper()
	p, err := f.Reserve(len(data))
	if err != nil {
		t.Fatalf("Reserve(%d): %v", len(data), err)
	}
	copy(p, data)
	h.DataSize = uint64(len(data))
	if err := f.Commit(h); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}
