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

// BenchmarkReadersCopy: readers that copy a 64 KiB message out under the
// lock, from as many goroutines as there are CPUs. "exclusive" takes the
// writer's lock (as eCAL's readers do: one exclusive mutex per memory
// file, #670), "shared" the reader lock: readers copy in parallel.
// ns/op is per copy, over all readers.
func BenchmarkReadersCopy(b *testing.B) {
	for _, mode := range []string{"exclusive", "shared"} {
		b.Run(mode, func(b *testing.B) {
			_, m := newShared(b, testutil.Domain(b))
			defer m.Close()
			src := make([]byte, 64<<10)
			lock, unlock := m.Lock, m.Unlock
			if mode == "shared" {
				lock, unlock = m.RLock, m.RUnlock
			}
			b.SetBytes(int64(len(src)))
			b.RunParallel(func(pb *testing.PB) {
				dst := make([]byte, len(src))
				for pb.Next() {
					if err := lock(10 * time.Second); err != nil {
						b.Error(err)
						return
					}
					copy(dst, src)
					if err := unlock(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
