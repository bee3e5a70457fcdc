package glob

import "testing"

func TestPatterns(t *testing.T) {
	cases := []struct {
		p    Patterns
		name string
		want bool
	}{
		{nil, "a", false},
		{Patterns{"*"}, "anything", true},
		{Patterns{"*"}, "a/b/c", true},
		{Patterns{"camera*"}, "camera.front", true},
		{Patterns{"camera*"}, "cmd", false},
		{Patterns{"cmd", "camera*"}, "cmd", true},
		{Patterns{"rt/*"}, "rt/a/b", true},
		{Patterns{"rt/?"}, "rt/a", true},
		{Patterns{"[ab]x"}, "bx", true},
		{Patterns{"[ab]x"}, "cx", false},
	}
	for _, c := range cases {
		if got := c.p.Match(c.name); got != c.want {
			t.Errorf("%q.Match(%q) = %v, want %v", c.p, c.name, got, c.want)
		}
	}
	if err := (Patterns{"ok*", "[bad"}).Check(); err == nil {
		t.Error("Check accepted \"[bad\"")
	}
	if err := (Patterns{"ok*", "a?c"}).Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
}
