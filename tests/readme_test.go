package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readmeBlocks returns the ```sh blocks of README.md's section "## heading"
// (up to the next "## "), each as its lines with comments stripped and
// empty lines dropped.
func readmeBlocks(t *testing.T, heading string) [][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var blocks [][]string
	in, inBlock := false, false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "## "):
			if in {
				return blocks
			}
			in = strings.TrimSpace(strings.TrimPrefix(line, "## ")) == heading
		case !in:
		case !inBlock && strings.TrimSpace(line) == "```sh":
			inBlock = true
			blocks = append(blocks, nil)
		case inBlock && strings.TrimSpace(line) == "```":
			inBlock = false
		case inBlock:
			if l := stripComment(line); l != "" {
				blocks[len(blocks)-1] = append(blocks[len(blocks)-1], l)
			}
		}
	}
	if !in && len(blocks) == 0 {
		t.Fatalf("README.md has no section %q", "## "+heading)
	}
	return blocks
}

// stripComment removes a shell comment (a # at the start of a word, outside
// quotes) and surrounding space.
func stripComment(s string) string {
	inS, inD := false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'' && !inD:
			inS = !inS
		case c == '"' && !inS:
			inD = !inD
		case c == '#' && !inS && !inD && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t'):
			return strings.TrimSpace(s[:i])
		}
	}
	return strings.TrimSpace(s)
}

// findLine returns the line of block that starts with prefix.
func findLine(t *testing.T, block []string, prefix string) string {
	t.Helper()
	for _, l := range block {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	t.Fatalf("README block has no line starting with %q:\n%s", prefix, strings.Join(block, "\n"))
	return ""
}

func TestStripComment(t *testing.T) {
	for in, want := range map[string]string{
		"go test ./...    # the tests":        "go test ./...",
		"printf 'a#b' > T/data  # one":        "printf 'a#b' > T/data",
		`echo "x # y"`:                        `echo "x # y"`,
		"# only a comment":                    "",
		"for i in $(seq 3); do echo $i; done": "for i in $(seq 3); do echo $i; done",
		"echo a#b":                            "echo a#b",
	} {
		if got := stripComment(in); got != want {
			t.Errorf("stripComment(%q) = %q, want %q", in, got, want)
		}
	}
}
