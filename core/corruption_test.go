package core_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
)

// Hostile bytes in live shared memory: a process of the same user (the
// only one the file modes let in) writes random bytes into a publisher's
// memory file (ring header, slot table, payloads) and into the
// subscribers' bells and ack events while messages flow. Subscribers
// verify checksums (VerifyChecksum) and check every payload they are given
// against what the publisher sent: nothing corrupt may be delivered,
// nobody may panic or hang, and what was corrupted is reported (an error
// or a counted loss).

func init() {
	children["corruptpub"] = childCorruptPub
	children["corruptsub"] = childCorruptSub
}

// corruptPayloadKey derives the payloads of these tests (payload()).
const corruptPayloadKey = 0xc0ffee

// childCorruptPub: args topic. Publishes checksummed messages of 64 B..16
// KiB (payload(corruptPayloadKey, seq, size), with Send) in ack mode, window 64, as
// fast as it can; prints "ready <memory file>", then "sent N" every 50 ms.
// Until SIGTERM; exit 1 on an error other than an ack timeout.
func childCorruptPub(args []string) int {
	a := testutil.ChildArgs(args)
	ctx, n, p, done, err := childPublisher(a[0], &core.PublisherOptions{Checksum: true, AckTimeout: 200 * time.Millisecond, Window: 64}, 2*time.Minute)
	if err != nil {
		return fail("%v", err)
	}
	defer done()
	ti, _ := n.Topic(a[0])
	for _, e := range ti.Publishers {
		if e.ID == p.ID() {
			fmt.Println("ready", e.MemFiles[0])
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	last := time.Now()
	buf := make([]byte, 16<<10+64)
	for seq := uint64(1); ctx.Err() == nil; seq++ {
		// Send, not SendFunc: the checksum is computed over these bytes,
		// so that shared memory changed while they are copied in is
		// caught too (a SendFunc payload exists only in shared memory).
		size := 64 + rng.IntN(16<<10)
		fill(buf[:size], corruptPayloadKey, seq)
		err := p.Send(ctx, buf[:size])
		if err != nil && ctx.Err() == nil && !errors.Is(err, core.ErrAckTimeout) {
			return fail("Send %d: %v", seq, err)
		}
		if time.Since(last) > 50*time.Millisecond {
			fmt.Printf("sent %d\n", seq)
			last = time.Now()
		}
	}
	return 0
}

// childCorruptSub: args topic copy|zerocopy. Receives with VerifyChecksum
// and checks each payload against payload(corruptPayloadKey, seq, size),
// seq from its first 8 bytes. Prints "recv N" every 50 ms, "DELIVERED
// CORRUPT ..." for a payload that differs from what was sent, and at
// SIGTERM "done recv=N errors=E checksum=C corrupt=K overruns=O dropped=D"
// (E: errors Receive returned, C, K and O of them ErrChecksum, ErrCorrupt
// and ErrOverrun; D: Stats.Dropped).
func childCorruptSub(args []string) int {
	a := testutil.ChildArgs(args)
	ctx, subs, done, err := childSubscribers(a[0], 1, &core.SubscriberOptions{VerifyChecksum: true, ZeroCopy: a[1] == "zerocopy"}, 2*time.Minute)
	if err != nil {
		return fail("%v", err)
	}
	defer done()
	s := subs[0]
	fmt.Println("ready")
	var recv, errs, checksum, corrupt, overruns uint64
	last := time.Now()
	for ctx.Err() == nil {
		// A zero-copy view overwritten while the callback ran may be torn:
		// ReceiveFunc then says so (ErrOverrun), and that is no delivery.
		var bad string
		err := s.ReceiveFunc(ctx, func(h core.Header, b []byte) error {
			bad = ""
			if len(b) < 8 {
				bad = fmt.Sprintf("clock %d: %d bytes", h.Clock, len(b))
				return nil
			}
			seq := binary.LittleEndian.Uint64(b)
			if !bytes.Equal(b, payload(corruptPayloadKey, seq, len(b))) {
				bad = fmt.Sprintf("clock %d: %d bytes, seq %d", h.Clock, len(b), seq)
			}
			return nil
		})
		if err == nil && bad != "" {
			fmt.Println("DELIVERED CORRUPT", bad)
		}
		if errors.Is(err, core.ErrOverrun) {
			overruns++
		}
		switch {
		case err == nil:
			recv++
		case ctx.Err() != nil:
		case errors.Is(err, core.ErrClosed):
			return fail("Receive: %v", err)
		default:
			errs++
			if errors.Is(err, core.ErrChecksum) {
				checksum++
			}
			if errors.Is(err, core.ErrCorrupt) {
				corrupt++
			}
		}
		if time.Since(last) > 50*time.Millisecond {
			fmt.Printf("recv %d\n", recv)
			last = time.Now()
		}
	}
	fmt.Printf("done recv=%d errors=%d checksum=%d corrupt=%d overruns=%d dropped=%d\n", recv, errs, checksum, corrupt, overruns, s.Stats().Dropped)
	return 0
}

// corruptDuration is how long the random writes go on: SHMFS_CORRUPT_DURATION
// (a Go duration), else 3 s.
func corruptDuration(t *testing.T) time.Duration {
	if s := os.Getenv("SHMFS_CORRUPT_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("SHMFS_CORRUPT_DURATION=%q: %v", s, err)
		}
		return d
	}
	return 3 * time.Second
}

// lastCount returns the number in the last "<word> N" line of out.
func lastCount(out, word string) uint64 {
	var n uint64
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, word+" "); ok {
			if x, err := strconv.ParseUint(v, 10, 64); err == nil {
				n = x
			}
		}
	}
	return n
}

func TestRandomBytesInLiveSharedMemory(t *testing.T) {
	n, e := openNode(t)
	subs := []*testutil.Child{
		testutil.StartChildWith(t, testutil.Options{Env: e, StopSignal: 15}, "corruptsub", "hostile", "copy"),
		testutil.StartChildWith(t, testutil.Options{Env: e, StopSignal: 15}, "corruptsub", "hostile", "zerocopy"),
	}
	for _, s := range subs {
		s.Expect(t, "ready", 10*time.Second)
	}
	pub := testutil.StartChildWith(t, testutil.Options{Env: e, StopSignal: 15}, "corruptpub", "hostile")
	ready := strings.Fields(pub.Line(t, 10*time.Second))
	if len(ready) != 2 || ready[0] != "ready" {
		t.Fatalf("publisher: %v", ready)
	}
	memfile := shmname.Path(ready[1])
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		for _, s := range subs {
			if lastCount(s.Output(), "recv") < 100 {
				return fmt.Errorf("subscriber received %d messages", lastCount(s.Output(), "recv"))
			}
		}
		return nil
	})

	// Targets: regions of the memory file, and the events of the
	// subscriber processes (their data words, 64..88).
	st, err := os.Stat(memfile)
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 1024)
	f, err := os.OpenFile(memfile, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(hdr, 0); err != nil {
		t.Fatal(err)
	}
	slots := int64(binary.LittleEndian.Uint32(hdr[92:]))
	dataOff := int64(binary.LittleEndian.Uint32(hdr[104:]))
	type region struct {
		name     string
		file     *os.File
		from, to int64
	}
	regions := []region{
		{"common header", f, 0, 64},
		// The ring header without the flags word (offset 200): the closed
		// flag is the owner's to set, and a subscriber leaves a publisher
		// whose file says closed (documented, docs/reliability.md).
		{"ring header", f, 64, 200},
		{"ring header", f, 204, 1024},
		{"slot table", f, 1024, 1024 + 64*slots},
		{"payloads", f, dataOff, st.Size()},
	}
	for _, name := range testutil.ShmObjects(n.Config().Domain) {
		if strings.HasSuffix(name, "_snd") || strings.HasSuffix(name, "_ack") {
			ef, err := os.OpenFile(shmname.Path(name), os.O_RDWR, 0)
			if err != nil {
				continue // gone meanwhile
			}
			defer ef.Close()
			regions = append(regions, region{"event " + name, ef, 64, 88})
		}
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	writes := map[string]int{}
	for end := time.Now().Add(corruptDuration(t)); time.Now().Before(end); {
		r := regions[rng.IntN(len(regions))]
		b := make([]byte, 1+rng.IntN(8))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		off := r.from + rng.Int64N(max(1, r.to-r.from-int64(len(b))))
		if _, err := r.file.WriteAt(b, off); err == nil {
			writes[r.name]++
		}
		time.Sleep(time.Duration(200+rng.IntN(600)) * time.Microsecond)
	}
	t.Logf("random writes: %v", writes)

	// After the corruption stops, everyone goes on.
	sentAfter := lastCount(pub.Output(), "sent")
	recvAfter := []uint64{lastCount(subs[0].Output(), "recv"), lastCount(subs[1].Output(), "recv")}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if s := lastCount(pub.Output(), "sent"); s < sentAfter+200 {
			return fmt.Errorf("publisher sent %d messages since, want 200", s-sentAfter)
		}
		for i, s := range subs {
			if r := lastCount(s.Output(), "recv"); r < recvAfter[i]+200 {
				return fmt.Errorf("subscriber %d received %d messages since, want 200", i, r-recvAfter[i])
			}
		}
		return nil
	})
	pub.Stop(t, 10*time.Second)
	for _, s := range subs {
		s.Stop(t, 10*time.Second)
		out := s.Output()
		if strings.Contains(out, "DELIVERED CORRUPT") {
			t.Errorf("a corrupt payload was delivered:\n%s", out)
		}
		var recv, errs, cs, cr, ov, dropped uint64
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "done ") {
				fmt.Sscanf(l, "done recv=%d errors=%d checksum=%d corrupt=%d overruns=%d dropped=%d", &recv, &errs, &cs, &cr, &ov, &dropped)
			}
		}
		t.Logf("subscriber: %d delivered intact; %d errors (%d checksum, %d corrupt, %d zero-copy overruns); dropped %d (slots' lost fields included)", recv, errs, cs, cr, ov, dropped)
		if errs+dropped == 0 {
			t.Errorf("%d random writes and the subscriber reported nothing", writes["payloads"]+writes["slot table"])
		}
	}
}

// Each corrupted message is reported (an error, or a counted loss), and
// every other one is delivered intact: a deterministic version of the
// random test above, one corruption of each kind per message.
func TestEveryCorruptionReported(t *testing.T) {
	n, _ := openNode(t)
	s, err := n.NewSubscriber("marked", &core.SubscriberOptions{VerifyChecksum: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := n.NewPublisher("marked", &core.PublisherOptions{Checksum: true, DiscoveryWait: -1, Window: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := testCtx(t, 10*time.Second)
	const total = 40
	for seq := uint64(1); seq <= total; seq++ {
		if err := p.Send(ctx, payload(corruptPayloadKey, seq, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	ti, _ := n.Topic("marked")
	var name string
	for _, e := range ti.Publishers {
		name = e.MemFiles[0]
	}
	f, err := os.OpenFile(shmname.Path(name), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdr := make([]byte, 1024)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		t.Fatal(err)
	}
	dataOff := int64(binary.LittleEndian.Uint32(hdr[104:]))
	slot := func(clock uint64) int64 { return 1024 + int64(clock%64)*64 }
	u64 := func(off int64) uint64 {
		b := make([]byte, 8)
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatal(err)
		}
		return binary.LittleEndian.Uint64(b)
	}
	put := func(off int64, b []byte) {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	le := binary.LittleEndian
	corruptions := map[uint64]string{
		3:  "payload byte",
		6:  "hash",
		9:  "size smaller",
		12: "size beyond the file",
		15: "offset into another message",
		18: "checksum option cleared, payload changed",
		21: "seq",
		24: "payload first bytes (its seq)",
		27: "offset beyond the file",
	}
	for clock, what := range corruptions {
		s0 := slot(clock)
		off := dataOff + int64(u64(s0+8))
		switch what {
		case "payload byte":
			put(off+500, []byte{^byte(u64(off + 500))})
		case "hash":
			put(s0+40, le.AppendUint64(nil, u64(s0+40)^1))
		case "size smaller":
			put(s0+16, le.AppendUint64(nil, 999))
		case "size beyond the file":
			put(s0+16, le.AppendUint64(nil, 1<<30))
		case "offset into another message":
			put(s0+8, le.AppendUint64(nil, u64(slot(clock+1)+8)))
		case "checksum option cleared, payload changed":
			opts := make([]byte, 4)
			f.ReadAt(opts, s0+48)
			opts[0] &^= 1 << 2
			put(s0+48, opts)
			put(off+10, []byte{^byte(u64(off + 10))})
		case "seq":
			put(s0, le.AppendUint64(nil, clock+64))
		case "payload first bytes (its seq)":
			put(off, le.AppendUint64(nil, clock+1000))
		case "offset beyond the file":
			put(s0+8, le.AppendUint64(nil, 1<<38))
		}
	}
	var errs, dropped uint64
	delivered := map[uint64]bool{}
	for {
		rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		m, err := s.Receive(rctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Logf("reported: %v", err)
			errs++
			continue
		}
		dropped += m.Dropped
		seq := le.Uint64(m.Data)
		if !bytes.Equal(m.Data, payload(corruptPayloadKey, seq, len(m.Data))) || len(m.Data) != 1000 {
			t.Errorf("clock %d: corrupt payload delivered (%s)", m.Clock, corruptions[m.Clock])
			continue
		}
		if what, ok := corruptions[m.Clock]; ok {
			t.Errorf("clock %d (%s) delivered", m.Clock, what)
		}
		delivered[m.Clock] = true
	}
	// Every message is delivered intact or counted lost (Header.Dropped),
	// and each corruption but one is an error too: a corrupt sequence word
	// looks like a message overwritten by a newer one, a loss.
	if want := total - len(corruptions); len(delivered) != want || dropped != uint64(len(corruptions)) || errs != uint64(len(corruptions)-1) {
		t.Fatalf("%d delivered intact (want %d), %d counted lost (want %d), %d errors (want %d)",
			len(delivered), want, dropped, len(corruptions), errs, len(corruptions)-1)
	}
}
