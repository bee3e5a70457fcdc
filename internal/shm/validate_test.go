package shm

import (
	"encoding/binary"
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
)

func TestOpenRefusesHostileFiles(t *testing.T) {
	d := testutil.Domain(t)
	pg := int64(pageSize)
	with := func(off int, v uint64, width int) []byte {
		b := validHeader(KindMutex, 1)
		switch width {
		case 2:
			binary.LittleEndian.PutUint16(b[off:], uint16(v))
		case 4:
			binary.LittleEndian.PutUint32(b[off:], uint32(v))
		case 8:
			binary.LittleEndian.PutUint64(b[off:], v)
		}
		return b
	}
	cases := []struct {
		what    string
		content []byte
		size    int64
		mode    os.FileMode
		want    error
	}{
		{"valid", validHeader(KindMutex, 1), pg, 0o600, nil},
		{"empty", nil, 0, 0o600, ErrCorrupt},
		{"truncated header", validHeader(KindMutex, 1)[:40], 40, 0o600, ErrCorrupt},
		{"shorter than a page", validHeader(KindMutex, 1), 100, 0o600, ErrCorrupt},
		{"not page multiple", validHeader(KindMutex, 1), pg + 1, 0o600, ErrCorrupt},
		{"sparse and huge", validHeader(KindMutex, 1), MaxSize + pg, 0o600, ErrCorrupt},
		{"header only zeros", make([]byte, 64), pg, 0o600, ErrCorrupt},
		{"wrong magic", with(offMagic, 0x1122334455667788, 8), pg, 0o600, ErrCorrupt},
		{"wrong kind", with(offKind, uint64(KindEvent), 2), pg, 0o600, ErrKind},
		{"unknown kind", with(offKind, 999, 2), pg, 0o600, ErrKind},
		{"newer version", with(offVersion, 2, 2), pg, 0o600, ErrVersion},
		{"older version", with(offVersion, 0, 2), pg, 0o600, nil},
		{"header size 0", with(offHdrSize, 0, 4), pg, 0o600, ErrCorrupt},
		{"header size 60", with(offHdrSize, 60, 4), pg, 0o600, ErrCorrupt},
		{"header size 65", with(offHdrSize, 65, 4), pg, 0o600, ErrCorrupt},
		{"header size 128", with(offHdrSize, 128, 4), pg, 0o600, ErrVersion},
		{"header size huge", with(offHdrSize, 0xfffffff8, 4), pg, 0o600, ErrVersion},
		{"foreign pid namespace", with(offPIDNS, 4026531836^0xffff, 8), pg, 0o600, ErrForeignNamespace},
		{"world-writable", validHeader(KindMutex, 1), pg, 0o666, ErrPermission},
		{"group-writable ok", validHeader(KindMutex, 1), pg, 0o660, nil},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			name := newName(d)
			writeRaw(t, name, c.content, c.size, c.mode)
			for _, ro := range []bool{false, true} {
				s, err := Open(name, KindMutex, Options{Version: 1, ReadOnly: ro})
				if c.want == nil {
					if err != nil {
						t.Fatalf("ro=%v: %v", ro, err)
					}
					if len(s.Bytes()) != int(c.size) {
						t.Fatalf("mapping %d bytes, file %d", len(s.Bytes()), c.size)
					}
					s.Close()
					continue
				}
				if !errors.Is(err, c.want) {
					t.Fatalf("ro=%v: got %v, want %v", ro, err, c.want)
				}
				if _, _, err := CreateOrOpen(name, KindMutex, Options{Version: 1}); !errors.Is(err, c.want) {
					t.Fatalf("CreateOrOpen: got %v, want %v", err, c.want)
				}
			}
		})
	}
}

func TestOpenRefusesOtherOwner(t *testing.T) {
	d := testutil.Domain(t)
	if os.Geteuid() != 0 {
		testutil.RequireCI(t, "needs root to chown a file to another uid")
	}
	name := newName(d)
	writeRaw(t, name, validHeader(KindEvent, 1), int64(pageSize), 0o600)
	if err := os.Chown(shmname.Path(name), 12345, 12345); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(name, KindEvent, Options{Version: 1}); !errors.Is(err, ErrPermission) {
		t.Fatalf("file of uid 12345: %v", err)
	}
	if _, err := Open(name, KindEvent, Options{Version: 1, ReadOnly: true}); !errors.Is(err, ErrPermission) {
		t.Fatalf("file of uid 12345, read-only: %v", err)
	}
}

func TestOpenRefusesSpecialFiles(t *testing.T) {
	d := testutil.Domain(t)
	target := newName(d)
	writeRaw(t, target, validHeader(KindEvent, 1), int64(pageSize), 0o600)
	link := newName(d)
	if err := os.Symlink(shmname.Path(target), shmname.Path(link)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(shmname.Path(link)) })
	if _, err := Open(link, KindEvent, Options{Version: 1}); !errors.Is(err, ErrPermission) {
		t.Fatalf("symlink: %v", err)
	}
	fifo := newName(d)
	if err := syscall.Mkfifo(shmname.Path(fifo), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(shmname.Path(fifo)) })
	for _, ro := range []bool{false, true} {
		if _, err := Open(fifo, KindEvent, Options{Version: 1, ReadOnly: ro}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("fifo (ro=%v): %v", ro, err)
		}
	}
	dir := newName(d)
	if err := os.Mkdir(shmname.Path(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(shmname.Path(dir)) })
	if _, err := Open(dir, KindEvent, Options{Version: 1, ReadOnly: true}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("directory: %v", err)
	}
	if _, err := Open(dir, KindEvent, Options{Version: 1}); err == nil {
		t.Fatal("directory opened read-write")
	}
}
