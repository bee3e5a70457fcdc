package mounttab

import "testing"

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/a\040b`: "/tmp/a b",
		`plain`:       "plain",
		`a\134b`:      `a\b`,
		`bad\9`:       `bad\9`,
		`end\04`:      `end\04`,
		`\011tab`:     "\ttab",
	} {
		if got := Unescape(in); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}
