package memfile

import (
	"fmt"
	"testing"

	"github.com/shmfs/shmfs/internal/testutil"
)

var benchSizes = []int{64, 4 << 10, 64 << 10, 1 << 20, 8 << 20}

func sizeName(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// BenchmarkMemfile measures a message through a memory file: Reserve + copy
// + Commit (write) and Read + copy out (read). BenchmarkMemmove is the
// baseline: the plain copy of the same sizes.
func BenchmarkMemfile(b *testing.B) {
	d := testutil.Domain(b)
	for _, n := range benchSizes {
		f := mustCreate(b, newName(d), n, Options{})
		src, dst := pattern(1, n), make([]byte, n)
		b.Run("write/"+sizeName(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for i := 0; b.Loop(); i++ {
				p, err := f.Reserve(n)
				if err != nil {
					b.Fatal(err)
				}
				copy(p, src)
				if err := f.Commit(Header{DataSize: uint64(n), Clock: uint64(i + 1)}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("read/"+sizeName(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				_, p, err := f.Read()
				if err != nil || len(p) != n {
					b.Fatal(err)
				}
				copy(dst, p)
			}
		})
	}
}

func BenchmarkMemmove(b *testing.B) {
	for _, n := range benchSizes {
		src, dst := pattern(1, n), make([]byte, n)
		b.Run(sizeName(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				copy(dst, src)
			}
		})
	}
}
