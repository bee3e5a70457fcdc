package shm

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
)

// FuzzOpen writes fuzzed bytes as a /dev/shm file of a fuzzed size and opens
// it. Open must return nil or one of the sentinels, never panic, and a
// successful Open must map exactly the file. Bits of fix plant the values a
// fuzzer cannot guess (magic, our pid namespace, header size, kind) so that
// the deeper checks are reached too. The seed corpus is in
// testdata/fuzz/FuzzOpen and runs with every go test.
func FuzzOpen(f *testing.F) {
	d := testutil.Domain(f)
	f.Add(validHeader(KindMutex, 1), uint16(4096-64), uint8(0))
	f.Add([]byte("SHMFSOBJ"), uint16(100), uint8(15))
	f.Fuzz(func(t *testing.T, data []byte, extra uint16, fix uint8) {
		if len(data) > 3*pageSize {
			data = data[:3*pageSize]
		}
		b := append([]byte(nil), data...)
		if len(b) < HeaderSize && fix != 0 {
			b = append(b, make([]byte, HeaderSize-len(b))...)
		}
		le := binary.LittleEndian
		if fix&1 != 0 {
			le.PutUint64(b[offMagic:], Magic)
		}
		if fix&2 != 0 {
			le.PutUint64(b[offPIDNS:], proc.PIDNamespace())
		}
		if fix&4 != 0 {
			le.PutUint32(b[offHdrSize:], HeaderSize)
		}
		if fix&8 != 0 {
			le.PutUint16(b[offKind:], uint16(KindMutex))
		}
		size := int64(len(b)) + int64(extra)
		name := newName(d)
		path := shmname.Path(name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(path)
		if err := os.Truncate(path, size); err != nil {
			t.Fatal(err)
		}
		for _, ro := range []bool{true, false} {
			s, err := Open(name, KindMutex, Options{Version: 1, ReadOnly: ro})
			if err != nil {
				if !isSentinel(err) {
					t.Fatalf("Open: error without sentinel: %v", err)
				}
				continue
			}
			if int64(len(s.Bytes())) != size {
				t.Errorf("mapped %d bytes of a %d-byte file", len(s.Bytes()), size)
			}
			if _, err := decodeHeader(s.Bytes()); err != nil {
				t.Errorf("Open accepted a header decodeHeader refuses: %v", err)
			}
			s.Close()
		}
	})
}

func isSentinel(err error) bool {
	for _, s := range []error{ErrCorrupt, ErrVersion, ErrKind, ErrPermission, ErrForeignNamespace, ErrNotExist, ErrNoSpace} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}
