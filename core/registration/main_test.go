package registration

import (
	"bufio"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/testutil"
	"github.com/shmfs/shmfs/internal/udpsock"
)

func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func([]string) int{"peer": peerChild, "inject": injectChild})
}

// peerChild runs an agent in a child process. It registers -n entities of
// -topic (numbered if n > 1), prints "ready <instance>", then prints
// "added|removed <topic> <kind>" for every change of another process's
// entity. On SIGTERM it closes the agent, prints "closed" and waits to be
// killed (so that only the unregistration, not its death, tells peers).
func peerChild(args []string) int {
	fs := flag.NewFlagSet("peer", flag.ContinueOnError)
	domain := fs.String("domain", "", "")
	port := fs.Int("port", 0, "")
	refresh := fs.Duration("refresh", time.Second, "")
	topic := fs.String("topic", "", "topic to register (none if empty)")
	kind := fs.String("kind", "pub", "pub or sub")
	n := fs.Int("n", 1, "entities to register")
	query := fs.Bool("query", false, "register with FlagQuery")
	network := fs.Bool("network", false, "network mode")
	iface := fs.String("iface", "", "network interface")
	netns := fs.String("netns", "", "enter this network namespace first")
	if err := fs.Parse(testutil.ChildArgs(args)); err != nil {
		return 2
	}
	if *netns != "" {
		// Sockets belong to the namespace of the thread that creates them:
		// stay on this thread while NewAgent opens them.
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + *netns)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			fmt.Fprintln(os.Stderr, "setns:", err)
			return 1
		}
		f.Close()
	}
	cfg := Config{Domain: *domain, Port: *port, Refresh: *refresh, Timeout: max(10*time.Second, 3**refresh), Interface: *iface}
	if *network {
		cfg.Mode = ModeNetwork
	}
	a, err := NewAgent(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var mu sync.Mutex
	say := func(f string, v ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(f+"\n", v...)
	}
	ch, _ := a.Watch(1024)
	go func() {
		for c := range ch {
			if c.Entity.Instance != proc.InstanceID() {
				say("%s %s %s", c.Kind, c.Entity.Topic, c.Entity.Kind)
			}
		}
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	if *topic != "" {
		k := KindPublisher
		if *kind == "sub" {
			k = KindSubscriber
		}
		for i := range *n {
			e := Entity{Kind: k, ID: proc.RandomID(), Topic: *topic, Type: "test", Encoding: "raw"}
			if *n > 1 {
				e.Topic = fmt.Sprintf("%s%d", *topic, i)
			}
			if *query {
				e.Flags = FlagQuery
			}
			if err := a.Register(e); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
	}
	say("ready %x", proc.InstanceID())
	select {
	case <-sigs:
	case <-time.After(5 * time.Minute): // a hang guard; tests kill children long before
		return 1
	}
	if err := a.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	say("closed")
	time.Sleep(5 * time.Minute)
	return 0
}

// startPeer starts a peer child and waits for its "ready" line.
func startPeer(t *testing.T, domain string, port int, args ...string) *testutil.Child {
	t.Helper()
	c := testutil.StartChild(t, "peer", nil, append([]string{"-domain", domain, "-port", fmt.Sprint(port)}, args...)...)
	for {
		l := c.Line(t, 10*time.Second)
		if strings.HasPrefix(l, "ready ") {
			return c
		}
	}
}

// injectChild sends raw datagrams, as a hostile local user would (tests run
// it as another uid). Args: port. It prints "ready <pid> <start time>",
// then reads commands from stdin, one per line, and answers "ok" after
// each:
//
//	send HEX       send the datagram from an ephemeral port
//	fromport HEX   send it from a socket bound to the registration address
//	               and port itself (SO_REUSEADDR, like every receiver)
func injectChild(args []string) int {
	a := testutil.ChildArgs(args)
	port, err := strconv.Atoi(a[0])
	if err != nil {
		return 2
	}
	dst := &net.UDPAddr{IP: net.ParseIP(LocalBroadcast), Port: port}
	plain, err := openSend(Config{Mode: ModeLocal}, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	shared, err := udpsock.ListenShared(dst.IP, port, func(c syscall.RawConn) error {
		return udpsock.SetInt(c, unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	me := proc.Self()
	fmt.Printf("ready %d %d\n", me.PID, me.StartTime)
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		b, err := hex.DecodeString(arg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		c := plain
		if cmd == "fromport" {
			c = shared
		}
		if _, err := c.WriteToUDP(b, dst); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("ok")
	}
	return 0
}
