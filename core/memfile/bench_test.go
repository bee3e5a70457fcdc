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

// BenchmarkMemfile measures one message through a memory file with the
// default options: Prepare + Begin + copy in + Commit (write), and Read of
// the head + copy out + Intact (read). BenchmarkMemmove is the baseline:
// the plain copy of the same sizes.
func BenchmarkMemfile(b *testing.B) {
	d := testutil.Domain(b)
	for _, n := range benchSizes {
		f, w := mustCreate(b, d, Options{})
		src, dst := pattern(1, n), make([]byte, n)
		b.Run("write/"+sizeName(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				if _, err := w.Prepare(n); err != nil {
					b.Fatal(err)
				}
				p, err := w.Begin(n)
				if err != nil {
					b.Fatal(err)
				}
				copy(p, src)
				if _, err := w.Commit(Header{Size: uint64(n)}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("read/"+sizeName(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				c := f.Head()
				_, p, err := f.Read(c)
				if err != nil || len(p) != n {
					b.Fatal(err)
				}
				copy(dst, p)
				if !f.Intact(c) {
					b.Fatal("overwritten")
				}
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
