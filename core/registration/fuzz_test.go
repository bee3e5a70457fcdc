package registration

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzDecode feeds arbitrary datagrams to Decode. The seed corpus in
// testdata/fuzz/FuzzDecode holds valid datagrams, truncations and the
// hostile cases; `go test` runs it as a normal test. Properties: Decode never
// panics; whatever it accepts re-encodes and decodes to the same entities.
func FuzzDecode(f *testing.F) {
	for _, b := range seedDatagrams() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := Decode(b)
		if err != nil {
			if len(es) != 0 {
				t.Fatalf("error %v but %d entities", err, len(es))
			}
			return
		}
		b2, err := Encode(nil, es)
		if err != nil {
			t.Fatalf("decoded entities do not re-encode: %v", err)
		}
		es2, err := Decode(b2)
		if err != nil {
			t.Fatalf("re-encoded datagram does not decode: %v", err)
		}
		if !reflect.DeepEqual(es, es2) {
			t.Fatalf("round trip differs:\n%+v\n%+v", es, es2)
		}
	})
}

// seedDatagrams returns valid datagrams, their truncations and hostile ones.
func seedDatagrams() [][]byte {
	sub := testEntity("dom")
	sub.Kind, sub.ID, sub.MemFiles, sub.BufferCount = KindSubscriber, 3, nil, 0
	valid := [][]byte{rawDatagram(), rawDatagram(testEntity("dom")), rawDatagram(testEntity("dom"), sub)}
	seeds := append([][]byte(nil), valid...)
	v := valid[2]
	for _, n := range []int{1, HeaderSize - 1, HeaderSize, HeaderSize + 1, HeaderSize + 2, HeaderSize + 50, len(v) / 2, len(v) - 1} {
		seeds = append(seeds, v[:n])
	}
	for _, c := range hostileCases("dom") {
		if len(c.b) <= 4096 {
			seeds = append(seeds, c.b)
		}
	}
	return seeds
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzDecode when
// SHMFS_WRITE_CORPUS=1; otherwise it checks that every seed is present.
func TestWriteFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	write := os.Getenv("SHMFS_WRITE_CORPUS") == "1"
	for _, b := range seedDatagrams() {
		name := filepath.Join(dir, fmt.Sprintf("seed-%x", sha256.Sum256(b))[:5+16])
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if write {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(name)
		if err != nil || string(got) != content {
			t.Errorf("corpus file %s missing or stale (run with SHMFS_WRITE_CORPUS=1): %v", name, err)
		}
	}
}
