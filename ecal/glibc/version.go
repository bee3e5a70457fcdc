package glibc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Sentinel errors.
var (
	// ErrUnsupported: the glibc version or the object layout is not the one
	// imitated here; the object is left untouched.
	ErrUnsupported = errors.New("glibc: unsupported pthread layout")
	// ErrUnknownVersion: the glibc version could not be determined.
	ErrUnknownVersion = errors.New("glibc: version unknown")
	// ErrTimeout: a lock or wait did not succeed before its deadline.
	ErrTimeout = errors.New("glibc: timed out")
	// ErrInvalid: a buffer is too small or misaligned for the object.
	ErrInvalid = errors.New("glibc: invalid object")
)

// Version is a glibc release, as read from the banner string that every
// libc.so.6 carries ("GNU C Library (Debian GLIBC 2.36-9+deb12u14) stable
// release version 2.36.").
type Version struct {
	Major, Minor int
	// Build is the distribution's build string in parentheses, if any.
	Build string
	// Path is the file the version was read from.
	Path string
}

func (v Version) String() string {
	s := fmt.Sprintf("%d.%d", v.Major, v.Minor)
	if v.Build != "" {
		s += " (" + v.Build + ")"
	}
	return s
}

// Less reports whether v is older than major.minor.
func (v Version) Less(major, minor int) bool {
	return v.Major < major || v.Major == major && v.Minor < minor
}

// CondvarLayout names the pthread_cond_t layout a glibc build uses.
type CondvarLayout int

const (
	// LayoutUnknown: the version alone does not tell (2.38 to 2.40: their
	// stable branches took the 2.41 condition variable in 2025).
	LayoutUnknown CondvarLayout = iota
	// LayoutGRefs is the layout imitated here: glibc 2.25 up to 2.37 (and
	// 2.38 to 2.40 builds from before the backport).
	LayoutGRefs
	// LayoutNoGRefs is glibc 2.41's: __g_refs removed, fields moved.
	LayoutNoGRefs
	// LayoutOld is the condition variable before glibc 2.25.
	LayoutOld
)

func (l CondvarLayout) String() string {
	switch l {
	case LayoutGRefs:
		return "glibc 2.25-2.37 condvar (with __g_refs)"
	case LayoutNoGRefs:
		return "glibc 2.41 condvar (no __g_refs)"
	case LayoutOld:
		return "pre-2.25 condvar"
	}
	return "unknown condvar layout"
}

// LayoutOf tells the condition-variable layout of a glibc version.
func LayoutOf(v Version) CondvarLayout {
	switch {
	case v.Major != 2:
		return LayoutUnknown
	case v.Minor < 25:
		return LayoutOld
	case v.Minor <= 37:
		return LayoutGRefs
	case v.Minor <= 40:
		return LayoutUnknown
	}
	return LayoutNoGRefs
}

// Check returns nil when objects of a process using glibc v can be shared
// with this imitation. assumeGRefs accepts versions whose layout the version
// cannot tell (2.38-2.40) as LayoutGRefs: the operator asserts that the
// build predates the 2.41 condition-variable backport.
func Check(v Version, assumeGRefs bool) error {
	switch l := LayoutOf(v); {
	case l == LayoutGRefs:
		return nil
	case l == LayoutUnknown && assumeGRefs && v.Major == 2:
		return nil
	case l == LayoutUnknown:
		return fmt.Errorf("%w: glibc %v: its stable updates may carry the glibc 2.41 condition variable (no __g_refs), whose layout differs; if this build is older than that backport, say so explicitly (--condvar-layout grefs)", ErrUnsupported, v)
	default:
		return fmt.Errorf("%w: glibc %v uses the %v; only the %v is imitated", ErrUnsupported, v, l, LayoutGRefs)
	}
}

// libcCandidates are where Debian, Ubuntu, Fedora and others keep libc.
var libcCandidates = []string{
	"/lib/x86_64-linux-gnu/libc.so.6",
	"/usr/lib/x86_64-linux-gnu/libc.so.6",
	"/lib64/libc.so.6",
	"/usr/lib64/libc.so.6",
	"/lib/libc.so.6",
	"/usr/lib/libc.so.6",
}

// HostVersion returns the version of the host's libc.so.6.
func HostVersion() (Version, error) {
	var errs []error
	for _, p := range libcCandidates {
		v, err := FileVersion(p)
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return Version{}, fmt.Errorf("%w: %w", ErrUnknownVersion, errors.Join(errs...))
	}
	return Version{}, fmt.Errorf("%w: no libc.so.6 in %v", ErrUnknownVersion, libcCandidates)
}

// ProcessVersion returns the version of the libc that process pid has
// mapped, read through /proc/PID/root so that a process in a container is
// judged by its own libc.
func ProcessVersion(pid int) (Version, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return Version{}, fmt.Errorf("%w: %w", ErrUnknownVersion, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		p := fields[len(fields)-1]
		base := filepath.Base(p)
		if base != "libc.so.6" && !(strings.HasPrefix(base, "libc-2.") && strings.HasSuffix(base, ".so")) {
			continue
		}
		v, err := FileVersion(fmt.Sprintf("/proc/%d/root%s", pid, p))
		if err != nil {
			return Version{}, err
		}
		v.Path = p
		return v, nil
	}
	if err := sc.Err(); err != nil {
		return Version{}, fmt.Errorf("%w: %w", ErrUnknownVersion, err)
	}
	return Version{}, fmt.Errorf("%w: process %d has no libc mapped", ErrUnknownVersion, pid)
}

var banner = []byte("GNU C Library ")

// FileVersion reads the version banner of a libc.so.6 file.
func FileVersion(path string) (Version, error) {
	f, err := os.Open(path)
	if err != nil {
		return Version{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Version{}, err
	}
	if !st.Mode().IsRegular() || st.Size() > 64<<20 {
		return Version{}, fmt.Errorf("%w: %s is not a plausible libc", ErrUnknownVersion, path)
	}
	// Scan in chunks with an overlap so that a banner across a boundary is found.
	const chunk, overlap = 1 << 20, 256
	buf := make([]byte, chunk+overlap)
	carry := 0
	for {
		n, rerr := io.ReadFull(f, buf[carry:])
		data := buf[:carry+n]
		if i := bytes.Index(data, banner); i >= 0 {
			end := bytes.IndexByte(data[i:], 0)
			if end < 0 && len(data)-i < overlap && rerr == nil {
				// Banner cut by the chunk end: keep it for the next round.
				carry = copy(buf, data[i:])
				continue
			}
			if end < 0 {
				end = len(data) - i
			}
			v, err := ParseBanner(string(data[i : i+end]))
			if err != nil {
				return Version{}, fmt.Errorf("%s: %w", path, err)
			}
			v.Path = path
			return v, nil
		}
		if rerr != nil {
			break
		}
		carry = copy(buf, data[len(data)-overlap:])
	}
	return Version{}, fmt.Errorf("%w: no version banner in %s", ErrUnknownVersion, path)
}

// ParseBanner parses "GNU C Library (BUILD) stable release version 2.36."
// (the build part and the word "stable" are optional).
func ParseBanner(s string) (Version, error) {
	var v Version
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] // later lines name the compiler's version
	}
	if i := strings.IndexByte(s, '('); i >= 0 {
		if j := strings.IndexByte(s[i:], ')'); j > 0 {
			v.Build = s[i+1 : i+j]
		}
	}
	const key = "version "
	i := strings.LastIndex(s, key)
	if i < 0 {
		return v, fmt.Errorf("%w: no version in %q", ErrUnknownVersion, s)
	}
	num := s[i+len(key):]
	if j := strings.IndexAny(num, " ,\n"); j >= 0 {
		num = num[:j]
	}
	num = strings.TrimSuffix(num, ".")
	parts := strings.Split(num, ".")
	if len(parts) < 2 {
		return v, fmt.Errorf("%w: bad version %q", ErrUnknownVersion, num)
	}
	var err1, err2 error
	v.Major, err1 = strconv.Atoi(parts[0])
	v.Minor, err2 = strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || v.Major <= 0 || v.Minor < 0 {
		return v, fmt.Errorf("%w: bad version %q", ErrUnknownVersion, num)
	}
	return v, nil
}
