package mutex

import (
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

func BenchmarkLockUnlock(b *testing.B) {
	_, m := newShared(b, testutil.Domain(b))
	defer m.Close()
	for b.Loop() {
		if err := m.Lock(time.Second); err != nil {
			b.Fatal(err)
		}
		if err := m.Unlock(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRLockRUnlock(b *testing.B) {
	_, m := newShared(b, testutil.Domain(b))
	defer m.Close()
	for b.Loop() {
		if err := m.RLock(time.Second); err != nil {
			b.Fatal(err)
		}
		if err := m.RUnlock(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRLockParallel: goroutines of one process taking it shared at once
// (they never wait for each other; they share the readers word's cache line).
func BenchmarkRLockParallel(b *testing.B) {
	_, m := newShared(b, testutil.Domain(b))
	defer m.Close()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := m.RLock(time.Second); err != nil {
				b.Error(err)
				return
			}
			if err := m.RUnlock(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
