package shmname

import (
	"errors"
	"strings"
	"testing"
)

func TestObjectRoundTrip(t *testing.T) {
	n := Object("dom-1.x", 0xab, "mtx")
	if n != "shmfs_dom-1.x_00000000000000ab_mtx" {
		t.Fatalf("Object = %q", n)
	}
	p, err := Parse(n)
	if err != nil || p.Domain != "dom-1.x" || p.ID != 0xab || len(p.Suffixes) != 1 || p.Suffixes[0] != "mtx" {
		t.Fatalf("Parse = %+v, %v", p, err)
	}
}

func TestParseRejects(t *testing.T) {
	bad := []string{
		"", "shmfs_", "shmfs_d", "other_d_00000000000000ab",
		"shmfs_d_00000000000000AB", "shmfs_d_ab", "shmfs_d_00000000000000ab_",
		"shmfs_d_00000000000000ab_../x", "shmfs_d/x_00000000000000ab",
		"shmfs_.d_00000000000000ab", "shmfs_d_00000000000000ab_a\x00",
		"shmfs_d_00000000000000ab_" + strings.Repeat("a", 200),
		"shmfs_" + strings.Repeat("d", 40) + "_00000000000000ab",
	}
	for _, n := range bad {
		if _, err := Parse(n); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) = %v, want ErrInvalid", n, err)
		}
	}
}
