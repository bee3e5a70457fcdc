package glibc

import (
	"errors"
	"testing"
)

func TestParseBannerReadsTheReleaseLineOnly(t *testing.T) {
	for _, c := range []struct {
		in           string
		major, minor int
		build        string
	}{
		{"GNU C Library (Debian GLIBC 2.36-9+deb12u14) stable release version 2.36.\nCopyright (C) 2022\nCompiled by GNU CC version 12.2.0.", 2, 36, "Debian GLIBC 2.36-9+deb12u14"},
		{"GNU C Library (Ubuntu GLIBC 2.39-0ubuntu8.4) stable release version 2.39.", 2, 39, "Ubuntu GLIBC 2.39-0ubuntu8.4"},
		{"GNU C Library (GNU libc) release release version 2.41.", 2, 41, "GNU libc"},
		{"GNU C Library stable release version 2.17, by Roland McGrath et al.", 2, 17, ""},
	} {
		v, err := ParseBanner(c.in)
		if err != nil || v.Major != c.major || v.Minor != c.minor || v.Build != c.build {
			t.Errorf("ParseBanner(%q) = %+v, %v; want %d.%d (%s)", c.in, v, err, c.major, c.minor, c.build)
		}
	}
	for _, bad := range []string{"GNU C Library", "GNU C Library version x.y", "GNU C Library version 2"} {
		if _, err := ParseBanner(bad); !errors.Is(err, ErrUnknownVersion) {
			t.Errorf("ParseBanner(%q): %v, want ErrUnknownVersion", bad, err)
		}
	}
}

func TestCheckAcceptsOnlyTheImitatedCondvarLayout(t *testing.T) {
	for _, c := range []struct {
		minor  int
		assume bool
		ok     bool
	}{
		{24, false, false}, {25, false, true}, {36, false, true}, {37, false, true},
		{38, false, false}, {39, false, false}, {40, false, false},
		{38, true, true}, {40, true, true},
		{41, false, false}, {41, true, false}, {42, true, false},
	} {
		err := Check(Version{Major: 2, Minor: c.minor}, c.assume)
		if (err == nil) != c.ok {
			t.Errorf("Check(2.%d, assume=%v) = %v, want ok=%v", c.minor, c.assume, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrUnsupported) {
			t.Errorf("Check(2.%d): %v does not wrap ErrUnsupported", c.minor, err)
		}
	}
}

func TestHostVersionIsReadFromLibc(t *testing.T) {
	v, err := HostVersion()
	if err != nil {
		t.Fatalf("HostVersion: %v", err)
	}
	if v.Major != 2 || v.Minor < 17 || v.Path == "" {
		t.Fatalf("HostVersion = %+v", v)
	}
	t.Logf("host glibc %v from %s (%v)", v, v.Path, LayoutOf(v))
}
