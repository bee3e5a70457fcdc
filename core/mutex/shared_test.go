package mutex

import (
	"os"
	"testing"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
)

// newShared creates a mutex in domain; the name is removed at cleanup
// (before testutil.Domain's check), whether or not the test closed it.
func newShared(t testing.TB, domain string) (string, *Mutex) {
	t.Helper()
	name := shmname.Object(domain, proc.RandomID(), "mtx")
	m, err := Create(name, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(shmname.Path(name)) })
	return name, m
}

func openShared(name string) (*Mutex, error) { return Open(name, Options{}) }

func regionOf(m *Mutex) region { return m.l.r }
