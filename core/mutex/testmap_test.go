package mutex

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
)

// A test map is a plain file in /dev/shm, named in the test's domain,
// mapped by the test and its children: scratch memory for counters that the
// mutex protects.

const testMapSize = 4096

func newTestMap(t testing.TB, domain string) (string, []byte) {
	t.Helper()
	name := shmname.Object(domain, proc.RandomID(), "test")
	f, err := os.OpenFile(shmname.Path(name), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(shmname.Path(name)) })
	if err := f.Truncate(testMapSize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, err := openTestMap(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return name, b
}

func openTestMap(name string) ([]byte, error) {
	f, err := os.OpenFile(shmname.Path(name), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := unix.Mmap(int(f.Fd()), 0, testMapSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", name, err)
	}
	return b, nil
}
