package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// ls --json lists a topic published by another process, with its
// publisher's pid; info shows the publisher's objects in /dev/shm.
func TestLsAndInfo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pub := startShmfs(t, e.vars(), "pub", "--type", "text", "--rate", "20", "--repeat", "0", "weather", "sunny")
	pid := int32(pub.PID())

	var topics []topicJSON
	found := func() *topicJSON {
		for i := range topics {
			if topics[i].Name == "weather" {
				return &topics[i]
			}
		}
		return nil
	}
	// The publisher may need a moment to start; ls itself waits ~1 period.
	deadline := time.Now().Add(20 * time.Second)
	for found() == nil && time.Now().Before(deadline) {
		r := runShmfs(t, 30*time.Second, nil, "", append(e.flags(), "ls", "--json")...)
		if r.code != 0 {
			t.Fatalf("ls --json: exit %d: %s", r.code, r.stderr)
		}
		if err := json.Unmarshal([]byte(r.stdout), &topics); err != nil {
			t.Fatalf("ls --json output is not JSON: %v\n%s", err, r.stdout)
		}
	}
	tp := found()
	if tp == nil {
		t.Fatalf("ls --json never listed topic weather: %+v", topics)
	}
	if tp.Type != "text" || len(tp.Publishers) != 1 || len(tp.Subscribers) != 0 {
		t.Fatalf("topic = %+v, want type text, 1 publisher, 0 subscribers", *tp)
	}
	p := tp.Publishers[0]
	if p.PID != pid || !p.Local || p.Kind != "publisher" || len(p.MemFiles) == 0 {
		t.Errorf("publisher = %+v, want pid %d, local, with memory files", p, pid)
	}

	r := runShmfs(t, 30*time.Second, e.vars(), "", "ls")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "TOPIC") || !strings.Contains(r.stdout, "weather") {
		t.Errorf("ls: exit %d, stdout:\n%s\nstderr: %s", r.code, r.stdout, r.stderr)
	}

	// --bw subscribes, measures, and does not list itself.
	r = runShmfs(t, 30*time.Second, e.vars(), "", "ls", "--bw", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &topics); r.code != 0 || err != nil {
		t.Fatalf("ls --bw --json: exit %d, %v: %s", r.code, err, r.stderr)
	}
	if tp = found(); tp == nil || tp.Bandwidth == nil || *tp.Bandwidth <= 0 || tp.Rate == nil || *tp.Rate <= 0 || len(tp.Subscribers) != 0 {
		t.Errorf("ls --bw: topic %+v, want bandwidth and rate > 0 and no subscribers", tp)
	}

	r = runShmfs(t, 30*time.Second, e.vars(), "", "info", "--json", "weather")
	if r.code != 0 {
		t.Fatalf("info --json: exit %d: %s", r.code, r.stderr)
	}
	var info infoJSON
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil {
		t.Fatalf("info --json output is not JSON: %v\n%s", err, r.stdout)
	}
	if info.Name != "weather" || info.Domain != e.domain || info.Port != e.port || len(info.Publishers) != 1 {
		t.Fatalf("info = %+v", info)
	}
	objs := info.Publishers[0].Objects
	var memfile bool
	for _, o := range objs {
		st, err := os.Stat(o.Path)
		if err != nil || st.Size() != o.Size || o.Size <= 0 || !o.Alive || o.CreatorPID != pid {
			t.Errorf("object %+v: stat %v, err %v; want size as on disk, alive creator %d", o, st, err, pid)
		}
		memfile = memfile || (o.Kind == "memfile" && strings.Contains(strings.Join(p.MemFiles, " "), o.Name))
	}
	if !memfile {
		t.Errorf("info lists no memfile of %v among %+v", p.MemFiles, objs)
	}
	r = runShmfs(t, 30*time.Second, e.vars(), "", "info", "weather")
	if r.code != 0 || !strings.Contains(r.stdout, "publisher "+p.ID) || !strings.Contains(r.stdout, "memfile") {
		t.Errorf("info: exit %d, stdout:\n%s", r.code, r.stdout)
	}

	r = runShmfs(t, 30*time.Second, e.vars(), "", "info", "--wait", "200ms", "nosuchtopic")
	if r.code != 1 || !strings.Contains(r.stderr, `shmfs: info: topic "nosuchtopic" not found in domain "`+e.domain+`"`) {
		t.Errorf("info on a missing topic: exit %d, stderr %q", r.code, r.stderr)
	}
	pub.Stop(t, 15*time.Second)
}
