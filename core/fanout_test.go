package core_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

// Fan-out in ack mode: every subscriber gets every message, in order.

func TestFanOutSixteenProcesses(t *testing.T) {
	testFanOut(t, 16, 1)
}

func TestFanOutSixtyFourSubscribersInEightProcesses(t *testing.T) {
	testFanOut(t, 8, 8)
}

func testFanOut(t *testing.T, procs, perProc int) {
	n, e := openNode(t)
	const count = 2000
	topic := fmt.Sprintf("fan%dx%d", procs, perProc)
	var subs []*testutil.Child
	for i := 0; i < procs; i++ {
		subs = append(subs, testutil.StartChild(t, "sub", e, topic, strconv.Itoa(count), "1", "copy", strconv.Itoa(perProc)))
	}
	for _, c := range subs {
		c.Expect(t, "ready", 30*time.Second)
	}
	p, err := n.NewPublisher(topic, &core.PublisherOptions{AckTimeout: 10 * time.Second, Window: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sizes := []int{64, 512, 4096, 100}
	ctx := testCtx(t, 2*time.Minute)
	for i := 0; i < count; i++ {
		if err := p.Send(ctx, payload(p.ID(), uint64(i), sizes[i%len(sizes)])); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
		// The first Send waited for every subscriber process to connect
		// (they exit once they have everything: check now).
		if i == 0 {
			if st := p.Stats(); st.Subscribers != procs {
				t.Fatalf("publisher stats %+v after the first message, want %d subscriber processes", st, procs)
			}
		}
	}
	if st := p.Stats(); st.AckTimeouts != 0 {
		t.Errorf("publisher stats %+v, want no ack timeout", st)
	}
	want := fmt.Sprintf("done %d %s", count, expectedSum(p.ID(), count, sizes))
	for _, c := range subs {
		expectDone(t, c, perProc, want)
	}
}
