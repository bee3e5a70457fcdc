package main

import (
	"strings"
	"testing"
)

func TestDisplayWidth(t *testing.T) {
	for s, want := range map[string]int{
		"plain": 5, "héllo": 5, "e\u0301té": 3, "温度": 4, "ｶﾒﾗ": 3, "カメラ": 6, "cam😀": 5, "": 0,
	} {
		if got := displayWidth(s); got != want {
			t.Errorf("displayWidth(%q) = %d, want %d", s, got, want)
		}
	}
}

// ls's columns line up on screen with names in any script: every column
// after TOPIC starts at the same display column on every line.
func TestTableAlignsWideNames(t *testing.T) {
	var b strings.Builder
	rows := [][]string{{"TOPIC", "TYPE", "PUBS"}, {"温度センサー", "raw", "1"}, {"e\u0301cran", "text", "2"}, {"cam😀", "-", "0"}, {"plain", "raw", "10"}}
	if err := writeTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	col := func(l, cell string) int { return displayWidth(l[:strings.Index(l, cell)]) }
	for i, l := range lines {
		if got, want := col(l, rows[i][1]), col(lines[0], "TYPE"); got != want {
			t.Errorf("line %q: TYPE column at %d, want %d\n%s", l, got, want, b.String())
		}
		if got, want := col(l, " "+rows[i][2])+1, col(lines[0], "PUBS"); got != want {
			t.Errorf("line %q: PUBS column at %d, want %d\n%s", l, got, want, b.String())
		}
	}
}
