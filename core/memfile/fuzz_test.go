package memfile

import (
	"errors"
	"testing"

	"github.com/shmfs/shmfs/internal/shm"
	"github.com/shmfs/shmfs/internal/testutil"
)

// FuzzHeaders overwrites the memfile and message headers (bytes 64..256)
// with fuzzed bytes, then opens and reads the file: an error with a sentinel
// or a payload inside the mapping, never a panic.
func FuzzHeaders(f *testing.F) {
	d := testutil.Domain(f)
	seed := make([]byte, payloadOff-shm.HeaderSize)
	f.Add(seed)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := Create(newName(d), 0, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Destroy()
		put(t, w, []byte("message"), Header{Clock: 1})
		b := w.seg.Bytes()
		copy(b[shm.HeaderSize:payloadOff], data)
		r, err := Open(w.Name(), true)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v", err)
			}
			return
		}
		defer r.Close()
		h, p, err := r.Read()
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrIncomplete) {
				t.Fatalf("Read: %v", err)
			}
			return
		}
		if uint64(len(p)) != h.DataSize || r.payloadOff+len(p) > len(r.seg.Bytes()) {
			t.Fatalf("payload of %d bytes (data size %d) outside the mapping", len(p), h.DataSize)
		}
	})
}
