package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/proc"
)

// Host is a simulated second (third, ...) host for tests: its own network
// namespace (loopback up; LinkHosts joins two by a veth pair), its own
// /dev/shm (a private mount namespace with a tmpfs there) and its own host
// name (a UTS namespace). One long-lived anchor process holds the
// namespaces; every process of the host runs in them through nsenter
// (Start, Run, StartChild), sharing the test's PID namespace as shmfs
// requires. At cleanup the anchor is killed (after the host's processes,
// which were started later) and the network namespace deleted; the tmpfs
// goes with the last process of the mount namespace. Needs root, iproute2,
// util-linux (unshare, nsenter): otherwise RequireCI.
type Host struct {
	// Name is the host name inside; NetNS the network namespace's name.
	Name, NetNS string
	// Addr is the host's address on its link (LinkHosts), else "".
	Addr string

	anchor *Child
}

// NewHost makes a simulated host named name plus a random suffix.
func NewHost(t testing.TB, name string) *Host {
	t.Helper()
	if os.Geteuid() != 0 {
		RequireCI(t, "simulated hosts need root (network and mount namespaces)")
	}
	for _, tool := range []string{"ip", "unshare", "nsenter", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			RequireCI(t, tool+" not installed (iproute2, util-linux)")
		}
	}
	suffix := fmt.Sprintf("%06x", proc.RandomID()&0xffffff)
	h := &Host{Name: name + "-" + suffix, NetNS: "shmfs-" + name + "-" + suffix}
	if err := ipCmd(t, "netns", "add", h.NetNS); err != nil {
		RequireCI(t, "cannot create a network namespace: "+err.Error())
	}
	t.Cleanup(func() {
		if err := ipCmd(t, "netns", "del", h.NetNS); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := ipCmd(t, "-n", h.NetNS, "link", "set", "lo", "up"); err != nil {
		t.Fatal(err)
	}
	// ip netns exec, unshare (without --fork) and sh's exec keep one PID:
	// the anchor's PID is the process that holds the namespaces.
	script := "mount -t tmpfs -o size=4g,mode=1777 tmpfs /dev/shm && hostname " + h.Name + " && echo ready && exec sleep 1000000"
	h.anchor = Start(t, Options{}, "ip", "netns", "exec", h.NetNS,
		"unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", script)
	h.anchor.Expect(t, "ready", 10*time.Second)
	return h
}

func ipCmd(t testing.TB, args ...string) error {
	if r := Run(t, 30*time.Second, Options{}, "ip", args...); r.Err != nil {
		return fmt.Errorf("ip %s: %v: %s%s", strings.Join(args, " "), r.Err, r.Stdout, r.Stderr)
	}
	return nil
}

// LinkHosts joins a and b by a veth pair with addresses 10.x.y.1/24 (a)
// and 10.x.y.2/24 (b), which exist only inside their namespaces.
func LinkHosts(t testing.TB, a, b *Host) {
	t.Helper()
	suffix := fmt.Sprintf("%06x", proc.RandomID()&0xffffff)
	va, vb := "shv"+suffix+"a", "shv"+suffix+"b" // at most 15 bytes
	net3 := fmt.Sprintf("10.%d.%d", 200+proc.RandomID()%50, proc.RandomID()%250)
	for _, args := range [][]string{
		{"link", "add", va, "netns", a.NetNS, "type", "veth", "peer", "name", vb, "netns", b.NetNS},
		{"-n", a.NetNS, "addr", "add", net3 + ".1/24", "dev", va},
		{"-n", b.NetNS, "addr", "add", net3 + ".2/24", "dev", vb},
		{"-n", a.NetNS, "link", "set", va, "up"},
		{"-n", b.NetNS, "link", "set", vb, "up"},
	} {
		if err := ipCmd(t, args...); err != nil {
			t.Fatal(err)
		}
	}
	a.Addr, b.Addr = net3+".1", net3+".2"
}

// enter is the nsenter prefix that runs a command in the host.
func (h *Host) enter() []string {
	return []string{"--target", strconv.Itoa(h.anchor.PID()), "--net", "--mount", "--uts", "--"}
}

// Start runs the command name with args in the host (see the package's
// Start).
func (h *Host) Start(t testing.TB, o Options, name string, args ...string) *Child {
	t.Helper()
	c := start(t, o, h.Name+": "+label(name, args), "nsenter", append(append(h.enter(), name), args...))
	return c
}

// Run runs the command in the host to completion (see the package's Run).
func (h *Host) Run(t testing.TB, timeout time.Duration, o Options, name string, args ...string) Result {
	t.Helper()
	o.Group = true
	c := h.Start(t, o, name, args...)
	err := c.Wait(t, timeout)
	code, werr := exitCode(err)
	if werr != nil {
		t.Fatalf("%s: %v", c.name, werr)
	}
	return Result{Stdout: c.Output(), Stderr: c.Stderr(), Code: code, Err: err}
}

// StartChild runs the child function name (see Main) in the host.
func (h *Host) StartChild(t testing.TB, o Options, name string, args ...string) *Child {
	t.Helper()
	o.Env = append([]string{childEnv + "=" + name}, o.Env...)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return start(t, o, h.Name+": "+name, "nsenter", append(append(h.enter(), exe, "-test.run=^$", "--"), args...))
}

func label(name string, args []string) string {
	l := strings.Join(append([]string{name}, args...), " ")
	if len(l) > 80 {
		l = l[:77] + "..."
	}
	return l
}
