package ecal

import (
	"encoding/binary"
	"encoding/hex"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

// Without eCAL installed (CI), two gateways in two processes talk eCAL's
// protocol to each other: X exports shmfs domain A's topic into "eCAL"
// (registration on a private UDP port, memory files, glibc-style events),
// Y imports it into domain B. A shmfs publisher in A sends in ack mode, a
// shmfs subscriber in B receives: every message, in order, of growing
// sizes, nothing dropped. (The gateways normally ignore each other's
// entities; the test lets them see each other.)
func TestTwoGatewaysBridgeDomainsThroughECALProtocol(t *testing.T) {
	a, b, port := testutil.Domain(t), testutil.Domain(t), strconv.Itoa(testutil.Port(t))
	t.Cleanup(func() {
		if left, _ := Sweep(true); len(left) > 0 {
			t.Errorf("gateway files left in /dev/shm: %v", left)
			_, _ = Sweep(false)
		}
	})
	x := startChild(t, "gateway", "-domain", a, "-group", "cihost", "-port", port, "-export", "bridged", "-accept-gateways")
	y := startChild(t, "gateway", "-domain", b, "-group", "cihost", "-port", port, "-import", "bridged", "-accept-gateways")
	x.Expect(t, "ready", 10*time.Second)
	y.Expect(t, "ready", 10*time.Second)
	const n = 2000
	sub := startChild(t, "sub", "-domain", b, "-topic", "bridged", "-count", strconv.Itoa(n), "-timeout", "120s")
	sub.Expect(t, "ready", 10*time.Second)
	// Y shows the topic in B once X announced its eCAL publisher, which X
	// does once A has a publisher; the publisher then waits for X's
	// subscriber, which X creates once Y subscribed in eCAL.
	pub := startChild(t, "pub", "-domain", a, "-topic", "bridged", "-count", strconv.Itoa(n), "-sizes", "8,100,5000,70000,300000", "-subs", "1")
	waitLine(t, pub, "sent", 120*time.Second)
	exited(t, pub)
	re := regexp.MustCompile(`^msg \d+ (\d+) (\d+) ([0-9a-f]{16}) `)
	sizes := []int{8, 100, 5000, 70000, 300000}
	for i := 0; i < n; i++ {
		l := waitLine(t, sub, "msg", 60*time.Second)
		m := re.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line %q", l)
		}
		if size, _ := strconv.Atoi(m[1]); size != sizes[i%len(sizes)] || m[2] != "0" {
			t.Fatalf("message %d: %q, want size %d and nothing dropped", i, l, sizes[i%len(sizes)])
		}
		if idx, _ := hex.DecodeString(m[3]); binary.LittleEndian.Uint64(idx) != uint64(i) {
			t.Fatalf("message %d out of order: %q", i, l)
		}
	}
	waitLine(t, sub, "done", 10*time.Second)
	exited(t, sub)
	for _, g := range []*testutil.Child{x, y} {
		_ = g.Cmd.Process.Signal(syscall.SIGTERM)
		l := waitLine(t, g, "stats", 10*time.Second)
		if !strings.Contains(l, "ackTimeouts 0") || !strings.Contains(l, "importErrors 0") {
			t.Errorf("gateway: %s", l)
		}
		if err := g.Wait(t, 10*time.Second); err != nil {
			t.Errorf("gateway exit: %v", err)
		}
	}
}
