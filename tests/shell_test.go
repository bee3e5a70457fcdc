package tests

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

// TestReadmeShellExamples runs the self-contained lines of README.md's
// "From the shell" block, as written, in a directory where T links to a
// topic of a mount served by a child `shmfs mount`, and checks the message
// boundaries the README claims with a reader child that reports every
// read(2). The README's own `cat T/data &` runs alongside and must get
// every byte ("two cats both get everything").
func TestReadmeShellExamples(t *testing.T) {
	requireFUSE(t)
	block := readmeBlocks(t, "From the shell")
	if len(block) == 0 {
		t.Fatal("README: no ```sh block under \"From the shell\"")
	}
	lines := block[0]
	e := newEnv(t)
	work := t.TempDir()
	mp := filepath.Join(t.TempDir(), "mnt")
	mount := startMount(t, e, mp)
	topicDir := filepath.Join(mp, "T")
	if err := os.Mkdir(topicDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(topicDir, filepath.Join(work, "T")); err != nil {
		t.Fatal(err)
	}
	dataPath := filepath.Join(topicDir, "data")
	frame := make([]byte, 3<<20) // frame.raw: 3 MiB of random bytes
	if _, err := rand.Read(frame); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "frame.raw"), frame, 0o644); err != nil {
		t.Fatal(err)
	}
	sh := func(line string) string { t.Helper(); return runSh(t, work, e.vars(), line, 30*time.Second) }
	// background runs line (a command that blocks reading T/data) and
	// waits until it has opened the file, or has exited.
	background := func(line string, stdout *os.File) *testutil.Child {
		t.Helper()
		o := options(work, e.vars())
		if stdout != nil {
			o.Stdout = stdout
		}
		p := testutil.Start(t, o, "sh", "-c", line)
		testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
			if done, _ := p.Exited(); !done && !p.HasOpen(dataPath) {
				return fmt.Errorf("%q has not opened %s yet", line, dataPath)
			}
			return nil
		})
		return p
	}
	// waits checks that p, started by background, is still waiting for
	// the next message: no message was published since it opened T/data.
	waits := func(p *testutil.Child, line, output string) {
		t.Helper()
		if done, _ := p.Exited(); done {
			t.Errorf("%q did not wait for the next message: it ended before one was published (exit status %d), output %s",
				line, p.ExitCode(t, time.Second), output)
		}
	}

	// Two subscribers for everything below: the README's cat (raw bytes
	// into a file) and the reader child (one line per read(2)).
	catOut, err := os.Create(filepath.Join(work, "cat.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer catOut.Close()
	cat := background(strings.TrimSpace(strings.TrimSuffix(findLine(t, lines, "cat T/data &"), "&")), catOut)
	reader := testutil.StartChild(t, "reader", nil, dataPath)
	reader.Expect(t, "ready", 5*time.Second)
	var stream bytes.Buffer // every message published since both opened

	// echo: one message "hello\n".
	sh(findLine(t, lines, "echo hello > T/data"))
	expectRead(t, reader, []byte("hello\n"))
	stream.WriteString("hello\n")

	// printf with two lines: ONE message (one write).
	sh(findLine(t, lines, `printf 'a\nb\n' > T/data`))
	expectRead(t, reader, []byte("a\nb\n"))
	stream.WriteString("a\nb\n")

	// 10 000 messages, in order, none lost (the mount's ack holds the loop
	// back when a reader is slower).
	start := time.Now()
	sh(findLine(t, lines, "for i in $(seq 10000); do echo $i; done > T/data"))
	t.Logf("10000-line loop took %v", time.Since(start).Round(time.Millisecond))
	for i := 1; i <= 10000; i++ {
		m := []byte(strconv.Itoa(i) + "\n")
		expectRead(t, reader, m)
		stream.Write(m)
	}

	// head -n1 waits for the NEXT message (not the latest one, "10000"),
	// prints its first line and exits.
	headLine := findLine(t, lines, "head -n1 T/data")
	head := background(headLine, nil)
	waits(head, headLine, strconv.Quote(head.Transcript()))
	sh(`printf 'first\nsecond\n' > T/data`)
	code := head.ExitCode(t, 5*time.Second)
	if out := head.Output(); code != 0 || out != "first\n" {
		t.Errorf("%q: exit status %d, stdout %q; want 0 and \"first\\n\"", headLine, code, out)
	}
	// GNU head tries to seek back over what it read past the line; data is
	// a stream (FOPEN_NONSEEKABLE), so it warns. The README says so; any
	// other message is an error.
	if msg := head.Stderr(); msg != "" && !strings.Contains(msg, "Illegal seek") {
		t.Errorf("%q printed an error: %q", headLine, msg)
	}
	expectRead(t, reader, []byte("first\nsecond\n"))
	stream.WriteString("first\nsecond\n")

	// tail -n +1 -f prints each message as it comes (it never sees an end
	// of file, so it never stops). In a terminal, as typed: tail writes to a
	// file or pipe only in blocks (stdbuf -oL fixes that), so script(1)
	// gives it one.
	tailOut, err := os.Create(filepath.Join(work, "tail.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer tailOut.Close()
	tailLine := findLine(t, lines, "tail -n +1 -f T/data")
	tail := background("script -qfec '"+tailLine+"' /dev/null", tailOut)
	waits(tail, tailLine, "")
	sh(`echo t1 > T/data`)
	sh(`echo t2 > T/data`)
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		got, _ := os.ReadFile(tailOut.Name())
		if s := strings.ReplaceAll(string(got), "\r\n", "\n"); s != "t1\nt2\n" {
			return fmt.Errorf("%q printed %q, want \"t1\\nt2\\n\"", tailLine, s)
		}
		return nil
	})
	tail.Signal(syscall.SIGTERM)
	expectRead(t, reader, []byte("t1\n"))
	expectRead(t, reader, []byte("t2\n"))
	stream.WriteString("t1\nt2\n")

	// dd count=1 reads exactly one message, though two are published.
	msg1 := bytes.Repeat([]byte("0123456789abcdef"), 300000/16)
	if err := os.WriteFile(filepath.Join(work, "msg1"), msg1, 0o644); err != nil {
		t.Fatal(err)
	}
	ddOut, err := os.Create(filepath.Join(work, "dd.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer ddOut.Close()
	ddLine := findLine(t, lines, "dd if=T/data bs=1M count=1")
	dd := background(ddLine, ddOut)
	ddEarly, _ := os.ReadFile(ddOut.Name())
	waits(dd, ddLine, preview(ddEarly))
	sh(`dd if=msg1 of=T/data bs=1M 2>/dev/null && echo tail > T/data`)
	if code := dd.ExitCode(t, 5*time.Second); code != 0 {
		t.Errorf("%q: exit status %d", ddLine, code)
	}
	if got, _ := os.ReadFile(ddOut.Name()); !bytes.Equal(got, msg1) {
		t.Errorf("%q read %s, want exactly the next message (%s)", ddLine, preview(got), preview(msg1))
	}
	expectRead(t, reader, msg1)
	expectRead(t, reader, []byte("tail\n"))
	stream.Write(msg1)
	stream.WriteString("tail\n")

	// dd bs=1M into data: one message per 1 MiB block.
	sh(findLine(t, lines, "dd if=frame.raw of=T/data bs=1M"))
	for off := 0; off < len(frame); off += 1 << 20 {
		expectRead(t, reader, frame[off:off+1<<20])
	}
	stream.Write(frame)

	// cat > T/whole: the whole 3 MiB file as ONE message, as a core
	// subscriber in another process sees it.
	sub := testutil.Start(t, options(work, e.vars()), shmfsBin, "sub", "--format", "json", "-v", "T")
	sub.ExpectStderr(t, "subscribed", 10*time.Second)
	sh("echo probe > T/data")
	for { // messages before the probe are the topic's history (a late subscriber gets the latest)
		if m := subMessage(t, sub); string(m) == "probe\n" {
			break
		}
	}
	expectRead(t, reader, []byte("probe\n"))
	stream.WriteString("probe\n")
	sh(findLine(t, lines, "cat frame.raw > T/whole"))
	sh("echo end > T/data")
	if m := subMessage(t, sub); !bytes.Equal(m, frame) {
		t.Errorf("shmfs sub: after `cat frame.raw > T/whole` got a message of %d bytes (sha256 %s), want ONE message of %d bytes (sha256 %s)",
			len(m), sum(m), len(frame), sum(frame))
	}
	if m := subMessage(t, sub); string(m) != "end\n" {
		t.Errorf("shmfs sub: after the whole message got %s, want \"end\\n\"", preview(m))
	}
	sub.Signal(syscall.SIGINT)
	if code := sub.ExitCode(t, 5*time.Second); code != 0 {
		t.Errorf("shmfs sub: exit status %d after SIGINT, want 0", code)
	}
	// Through data, a message longer than the read buffer continues on the
	// next read(2)s.
	for off := 0; off < len(frame); {
		n := expectPart(t, reader, frame[off:])
		off += n
	}
	expectRead(t, reader, []byte("end\n"))
	stream.Write(frame)
	stream.WriteString("end\n")

	// The README's cat got every byte of every message, in order.
	want := stream.Bytes()
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		st, err := catOut.Stat()
		if err != nil {
			return err
		}
		if st.Size() < int64(len(want)) {
			return fmt.Errorf("cat T/data wrote %d bytes of %d", st.Size(), len(want))
		}
		return nil
	})
	if got, _ := os.ReadFile(catOut.Name()); !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Errorf("cat T/data output (%d bytes) differs from the published messages (%d bytes) at byte %d: got %s, want %s",
			len(got), len(want), i, preview(got[i:]), preview(want[i:]))
	}

	// Ctrl-C on the mount ends the readers' blocked reads.
	stopMount(t, mount, e, mp)
	reader.Expect(t, "eof", 10*time.Second)
	if err := reader.Wait(t, 5*time.Second); err != nil {
		t.Errorf("reader: %v", err)
	}
	if code := cat.ExitCode(t, 10*time.Second); code != 0 {
		t.Logf("cat T/data: exit status %d after the unmount", code)
	}
}

// readerChild opens a data file and reports every read(2) as one line:
// "<n> <sha256 hex>" and, for short reads, " <quoted bytes>"; "eof" at end
// of file. It uses raw system calls so that Go's poller stays out.
func readerChild(args []string) int {
	a := testutil.ChildArgs(args)
	if len(a) != 1 {
		fmt.Println("error: want one path")
		return 2
	}
	fd, err := syscall.Open(a[0], syscall.O_RDONLY, 0)
	if err != nil {
		fmt.Println("error: open:", err)
		return 1
	}
	defer syscall.Close(fd)
	fmt.Println("ready")
	buf := make([]byte, 1<<20)
	for {
		n, err := syscall.Read(fd, buf)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			fmt.Println("error: read:", err)
			return 1
		case n == 0:
			fmt.Println("eof")
			return 0
		}
		fmt.Println(readLine(buf[:n]))
	}
}

// readLine is how readerChild reports one read.
func readLine(b []byte) string {
	s := fmt.Sprintf("%d %s", len(b), sum(b))
	if len(b) <= 64 {
		s += " " + strconv.Quote(string(b))
	}
	return s
}

// expectRead checks that the reader's next read(2) returned exactly want.
func expectRead(t *testing.T, r *testutil.Child, want []byte) {
	t.Helper()
	if got := r.Line(t, 10*time.Second); got != readLine(want) {
		t.Fatalf("reader: read %q, want %q (one read(2) = one message)", got, readLine(want))
	}
}

// expectPart checks that the reader's next read(2) returned a non-empty
// prefix of rest and returns its length.
func expectPart(t *testing.T, r *testutil.Child, rest []byte) int {
	t.Helper()
	got := r.Line(t, 10*time.Second)
	f, _, _ := strings.Cut(got, " ")
	n, err := strconv.Atoi(f)
	if err != nil || n <= 0 || n > len(rest) || got != readLine(rest[:n]) {
		t.Fatalf("reader: read %q, want a part of the %d bytes left of the message", got, len(rest))
	}
	return n
}

// subMessage decodes the payload of the next `shmfs sub --format json` line.
func subMessage(t *testing.T, p *testutil.Child) []byte {
	t.Helper()
	l := p.Line(t, 10*time.Second)
	var m struct {
		Size       int     `json:"size"`
		Data       *string `json:"data"`
		DataBase64 *string `json:"data_base64"`
	}
	if err := json.Unmarshal([]byte(l), &m); err != nil {
		t.Fatalf("shmfs sub --format json: %v in line %s", err, preview([]byte(l)))
	}
	var b []byte
	switch {
	case m.Data != nil && m.DataBase64 == nil:
		b = []byte(*m.Data)
	case m.DataBase64 != nil && m.Data == nil:
		var err error
		if b, err = base64.StdEncoding.DecodeString(*m.DataBase64); err != nil {
			t.Fatalf("shmfs sub --format json: data_base64: %v", err)
		}
	default:
		t.Fatalf("shmfs sub --format json: want exactly one of data and data_base64 in %s", preview([]byte(l)))
	}
	if len(b) != m.Size {
		t.Fatalf("shmfs sub --format json: size %d but %d bytes of data", m.Size, len(b))
	}
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// preview shows short data as is and long data by size and hash.
func preview(b []byte) string {
	if len(b) <= 64 {
		return strconv.Quote(string(b))
	}
	return fmt.Sprintf("%d bytes %q... (sha256 %s)", len(b), b[:32], sum(b))
}
