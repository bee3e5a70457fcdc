package registration

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/testutil"
)

// TestNetworkModeNamespaces runs one agent in each of two network
// namespaces joined by a veth pair and checks that they discover each other
// over multicast. Addresses (10.x) exist only inside the namespaces; nothing
// is sent on the host's own interfaces. Needs root and iproute2.
func TestNetworkModeNamespaces(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		testutil.RequireCI(t, "network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		testutil.RequireCI(t, "iproute2 (ip) not installed")
	}
	suffix := fmt.Sprintf("%06x", proc.RandomID()&0xffffff)
	nsA, nsB := "shmfs-"+suffix+"-a", "shmfs-"+suffix+"-b"
	vA, vB := "shm"+suffix+"a", "shm"+suffix+"b" // interface names: at most 15 bytes
	net3 := fmt.Sprintf("10.%d.%d", 200+proc.RandomID()%50, proc.RandomID()%250)

	ip := func(args ...string) error {
		if r := testutil.Run(t, 30*time.Second, testutil.Options{}, "ip", args...); r.Err != nil {
			return fmt.Errorf("ip %s: %v: %s%s", strings.Join(args, " "), r.Err, r.Stdout, r.Stderr)
		}
		return nil
	}
	if err := ip("netns", "add", nsA); err != nil {
		testutil.RequireCI(t, "cannot create network namespaces: "+err.Error())
	}
	t.Cleanup(func() {
		for _, ns := range []string{nsA, nsB} {
			if _, err := os.Stat("/run/netns/" + ns); err != nil {
				continue // never created
			}
			if err := ip("netns", "del", ns); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	for _, args := range [][]string{
		{"netns", "add", nsB},
		{"link", "add", vA, "netns", nsA, "type", "veth", "peer", "name", vB, "netns", nsB},
		{"-n", nsA, "addr", "add", net3 + ".1/24", "dev", vA},
		{"-n", nsB, "addr", "add", net3 + ".2/24", "dev", vB},
		{"-n", nsA, "link", "set", "lo", "up"},
		{"-n", nsB, "link", "set", "lo", "up"},
		{"-n", nsA, "link", "set", vA, "up"},
		{"-n", nsB, "link", "set", vB, "up"},
		{"-n", nsA, "route", "add", "224.0.0.0/4", "dev", vA},
		{"-n", nsB, "route", "add", "224.0.0.0/4", "dev", vB},
	} {
		if err := ip(args...); err != nil {
			t.Fatal(err)
		}
	}
	d, port := testutil.Domain(t), testutil.Port(t)
	// A chooses its interface by the multicast route, B names it.
	a := startPeer(t, d, port, "-netns", nsA, "-network", "-refresh", "200ms", "-topic", "from-a")
	b := startPeer(t, d, port, "-netns", nsB, "-network", "-iface", vB, "-refresh", "200ms", "-topic", "from-b", "-kind", "sub")
	start := time.Now()
	a.Expect(t, "added from-b subscriber", 5*time.Second)
	b.Expect(t, "added from-a publisher", 5*time.Second)
	t.Logf("peers in two namespaces discovered each other within %v", time.Since(start))
}
