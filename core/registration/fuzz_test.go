package registration

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"
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

// fuzzAgent is the agent FuzzHandle feeds, made once per fuzzing process
// with small limits so that quotas, eviction and the full registry are
// reached quickly. Its goroutines run; nobody sends to its port.
var fuzzAgent struct {
	once sync.Once
	a    *Agent
	err  error
}

// FuzzHandle feeds arbitrary datagrams, from arbitrary origins, through the
// whole receive path (decode, attribution, source binding, quotas,
// eviction, watchers). Properties: no panic; the registry stays within its
// bounds; the per-source bookkeeping matches the entries. The first bytes
// of the input choose the origin.
func FuzzHandle(f *testing.F) {
	for _, b := range seedDatagrams() {
		f.Add(uint8(0), uint16(1000), b)
		f.Add(uint8(3), uint16(0), b)
	}
	f.Fuzz(func(t *testing.T, how uint8, uid uint16, b []byte) {
		fuzzAgent.once.Do(func() {
			var port int
			if c, err := net.ListenPacket("udp4", "127.0.0.1:0"); err == nil {
				port = c.LocalAddr().(*net.UDPAddr).Port
				c.Close()
			}
			fuzzAgent.a, fuzzAgent.err = NewAgent(Config{Domain: "dom", Port: port, Refresh: time.Hour, Timeout: 2 * time.Hour})
			if fuzzAgent.err == nil {
				a := fuzzAgent.a
				a.mu.Lock()
				a.maxEntities, a.maxBytes = 64, 64<<10
				a.maxSourceEntities, a.maxSourceBytes = 16, 16<<10
				a.trusted = map[uint32]bool{0: true}
				a.mu.Unlock()
			}
		})
		a := fuzzAgent.a
		if a == nil {
			t.Fatal(fuzzAgent.err)
		}
		o := origin{addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 5000+uid%8), sender: uint64(how >> 4),
			local: how&1 != 0, known: how&2 != 0, uid: uint32(uid % 4)}
		if !o.local {
			o.addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(uid % 4)}), 4000)
		}
		a.handle(b, o)
		a.mu.Lock()
		defer a.mu.Unlock()
		if len(a.entries) > a.maxEntities || a.bytes > a.maxBytes {
			t.Fatalf("registry over its bounds: %d entities, %d bytes", len(a.entries), a.bytes)
		}
		n, bytes := 0, 0
		for s, u := range a.usage {
			if u.entities <= 0 || len(a.bySource[s]) != u.entities {
				t.Fatalf("source %v: usage %+v, %d indexed", s, *u, len(a.bySource[s]))
			}
			if !a.isTrusted(s) && (u.entities > a.maxSourceEntities || u.bytes > a.maxSourceBytes) {
				t.Fatalf("source %v over its quota: %+v", s, *u)
			}
			n += u.entities
			bytes += u.bytes
		}
		total := 0
		for _, p := range a.entries {
			total += entrySize(p)
		}
		if n != len(a.meta) || n != len(a.entries)-len(a.own) || total != a.bytes || bytes > a.bytes {
			t.Fatalf("bookkeeping: %d counted, %d meta, %d entries; bytes %d counted, %d summed, %d recorded", n, len(a.meta), len(a.entries), bytes, total, a.bytes)
		}
	})
}
