package shm

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
)

// SweepGrace is how old an object with an unreadable header must be before
// Sweep removes it: younger ones may still be under construction.
const SweepGrace = 10 * time.Second

// Info describes one shmfs object in /dev/shm.
type Info struct {
	Name    string
	Domain  string
	Kind    Kind
	Version uint16
	Creator Creator
	Created time.Time // from the header
	// Alive: the creator process runs. Objects of another pid namespace
	// cannot be judged and count as alive (Foreign is set).
	Alive   bool
	Foreign bool
	Temp    bool // a temporary name: creation in progress or abandoned
	Size    int64
	Mode    os.FileMode
	UID     uint32
	ModTime time.Time
	Err     error // why the header is unreadable or not understood

	dev, ino   uint64
	hasCreator bool // the creator fields were read from a valid header
	// invalid: the file was read and is not a shmfs object (not a regular
	// file, or a header that does not decode). Files that could not be
	// opened or read (EMFILE, EACCES, ...) are not invalid: nothing is
	// known of them, so Sweep leaves them alone.
	invalid bool
}

// Stale is an object Sweep removed (or would remove, in a dry run).
type Stale struct {
	Name    string
	Kind    Kind
	Creator Creator
	Size    int64
	Reason  string
}

// List returns every shmfs object of domain ("" = all domains) in /dev/shm,
// sorted by name. Headers are read with pread; nothing is mapped. Names that
// do not parse as shmfs names are skipped.
func List(domain string) ([]Info, error) {
	if domain != "" {
		if err := shmname.CheckDomain(domain); err != nil {
			return nil, fmt.Errorf("shm: %w", err)
		}
	}
	ents, err := os.ReadDir(shmname.Dir)
	if err != nil {
		return nil, fmt.Errorf("shm: list %s: %w", shmname.Dir, err)
	}
	var out []Info
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, shmname.Prefix) {
			continue
		}
		p, err := shmname.Parse(n)
		if err != nil || (domain != "" && p.Domain != domain) {
			continue
		}
		inf, err := stat(n, p)
		if errors.Is(err, ErrNotExist) {
			continue // removed meanwhile
		}
		out = append(out, inf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func stat(name string, p shmname.Parsed) (Info, error) {
	inf := Info{Name: name, Domain: p.Domain, Temp: isTemp(p)}
	fd, err := unix.Open(shmname.Path(name), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ENOENT {
			return inf, ErrNotExist
		}
		inf.Err = errno("open", name, err)
		if st, e := os.Lstat(shmname.Path(name)); e == nil {
			inf.Size, inf.Mode, inf.ModTime = st.Size(), st.Mode(), st.ModTime()
		}
		return inf, nil
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		inf.Err = errno("fstat", name, err)
		return inf, nil
	}
	inf.Size, inf.UID = st.Size, st.Uid
	inf.Mode = os.FileMode(st.Mode & 0o777)
	inf.ModTime = time.Unix(st.Mtim.Unix())
	inf.dev, inf.ino = st.Dev, st.Ino
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		inf.Err = fmt.Errorf("%w: not a regular file", ErrCorrupt)
		inf.invalid = true
		return inf, nil
	}
	var b [HeaderSize]byte
	n, err := unix.Pread(fd, b[:], 0)
	if err != nil {
		inf.Err = fmt.Errorf("read header: %w", err)
		return inf, nil
	}
	h, err := decodeHeader(b[:n])
	if err != nil {
		inf.Err = err
		if !errors.Is(err, ErrVersion) {
			inf.invalid = true
			return inf, nil
		}
		// A newer writer's header: its creator fields are still ours.
	}
	inf.hasCreator = true
	inf.Kind, inf.Version, inf.Creator, inf.Created = h.kind, h.version, h.creator, h.createdTime()
	if h.creator.PIDNamespace != proc.PIDNamespace() {
		inf.Foreign, inf.Alive = true, true
	} else {
		inf.Alive = h.creator.ID.Alive()
	}
	return inf, nil
}

// Sweep removes the objects of domain ("" = all) left by dead processes:
// those whose creator (same pid namespace) is dead, and those whose header
// is unreadable and that are older than SweepGrace. It never removes an
// object whose creator is alive or in another pid namespace. With dryRun it
// only reports. The returned error joins per-object failures.
func Sweep(domain string, dryRun bool) ([]Stale, error) {
	infos, err := List(domain)
	if err != nil {
		return nil, err
	}
	var out []Stale
	var errs []error
	now := time.Now()
	for _, inf := range infos {
		var reason string
		switch {
		case !inf.hasCreator:
			if age := now.Sub(inf.ModTime); inf.invalid && age > SweepGrace {
				reason = fmt.Sprintf("unreadable header (%v), %v old", inf.Err, age.Round(time.Second))
			}
		case inf.Foreign || inf.Alive:
		default:
			reason = fmt.Sprintf("creator %v is dead", inf.Creator.ID)
		}
		if reason == "" {
			continue
		}
		if !dryRun {
			if err := removeIfSame(inf); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		out = append(out, Stale{Name: inf.Name, Kind: inf.Kind, Creator: inf.Creator, Size: inf.Size, Reason: reason})
	}
	return out, errors.Join(errs...)
}

// removeIfSame unlinks inf.Name if it still names the file that was judged.
func removeIfSame(inf Info) error {
	path := shmname.Path(inf.Name)
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return errno("stat", inf.Name, err)
	}
	if inf.ino != 0 && (st.Dev != inf.dev || st.Ino != inf.ino) {
		return nil // replaced by a new object meanwhile
	}
	if err := unix.Unlink(path); err != nil && err != unix.ENOENT {
		return errno("remove", inf.Name, err)
	}
	return nil
}
