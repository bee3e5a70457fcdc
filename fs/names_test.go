package fs

import (
	"strings"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/mounttab"
)

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"a": true, "camera.front": true, "with space": true, "ünïcode": true, ".hidden": true,
		"": false, ".": false, "..": false, "a/b": false, "nul\x00": false,
		strings.Repeat("x", 255): true, strings.Repeat("x", 256): false,
	} {
		if got := validName(name); got != want {
			t.Errorf("validName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestWord(t *testing.T) {
	for in, want := range map[string]string{
		"": "-", "cat": "cat", "a b": "a_b", "k=v": "k_v", "tab\there\n": "tab_here_",
		strings.Repeat("p", 70): strings.Repeat("p", 64),
	} {
		if got := word(in); got != want {
			t.Errorf("word(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/plain`: "/tmp/plain", `/tmp/a\040b`: "/tmp/a b", `/x\134y`: `/x\y`,
		`/trail\04`: `/trail\04`, `/bad\09x`: `/bad\09x`,
	} {
		if got := mounttab.Unescape(in); got != want {
			t.Errorf("mounttab.Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHiddenTopics: topics whose names are not file names, and a topic
// named .shmfs, are not listed; .shmfs says which domain is mounted.
func TestHiddenTopics(t *testing.T) {
	e := newEnv(t, "fake", MountOptions{})
	for _, n := range []string{"ok", "a/b", "..", strings.Repeat("x", 300), infoName} {
		e.publisher(n)
	}
	// "." and ".." are the directory's own; the topic ".." is not listed.
	if out := e.sh(`ls -a "$M"`, 5*time.Second); out != ".\n..\n.shmfs\nok\n" {
		t.Fatalf("ls -a: %q", out)
	}
	if out := e.sh(`cat "$M/.shmfs"`, 5*time.Second); !strings.HasPrefix(out, "domain: fake\n") {
		t.Fatalf(".shmfs: %q", out)
	}
	if out, err := e.shErr(`mkdir "$M/.shmfs"`, 5*time.Second); err == nil {
		t.Fatalf("mkdir .shmfs succeeded: %q", out)
	}
}
