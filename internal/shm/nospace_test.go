package shm

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
)

func TestNoSpace(t *testing.T) {
	d := testutil.Domain(t)
	var fs unix.Statfs_t
	if err := unix.Statfs(shmname.Dir, &fs); err != nil {
		t.Fatal(err)
	}
	total := int64(fs.Blocks) * fs.Bsize
	if total == 0 || total+int64(pageSize) > MaxSize {
		testutil.RequireCI(t, "/dev/shm has no size limit")
	}
	// More than the whole file system: tmpfs refuses the fallocate at once,
	// without allocating anything.
	big := int(total) + pageSize
	if _, err := Create(newName(d), KindMemfile, Options{Size: big}); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Create of %d bytes on a %d-byte /dev/shm: %v, want ErrNoSpace", big, total, err)
	}
	s := mustCreate(t, newName(d), KindMemfile, Options{})
	defer s.Destroy()
	if err := s.Grow(big); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Grow: %v, want ErrNoSpace", err)
	}
	if len(s.Bytes()) != pageSize {
		t.Fatalf("failed Grow changed the mapping to %d bytes", len(s.Bytes()))
	}
	if _, err := s.Refresh(); err != nil {
		t.Fatalf("failed Grow changed the file: %v", err)
	}
	if _, err := Create(newName(d), KindMemfile, Options{Size: MaxSize + 1}); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Create above MaxSize: %v", err)
	}
}
