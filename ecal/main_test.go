package ecal

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

func TestMain(m *testing.M) {
	testutil.Main(m, map[string]func([]string) int{
		"sub":     childSub,
		"pub":     childPub,
		"pong":    childPong,
		"gateway": childGateway,
	})
}

// childSub subscribes to a shmfs topic and prints one line per message:
// "msg CLOCK SIZE DROPPED HEX TEXT" (the first 8 payload bytes in hex, the
// first 24 as text with non-printables as '_'), then "done N" after -count
// messages.
func childSub(args []string) int {
	fs := flag.NewFlagSet("sub", flag.ContinueOnError)
	domain := fs.String("domain", "", "")
	topic := fs.String("topic", "", "")
	count := fs.Int("count", 1, "")
	timeout := fs.Duration("timeout", 60*time.Second, "")
	quiet := fs.Bool("quiet", false, "print only the summary")
	if err := fs.Parse(testutil.ChildArgs(args)); err != nil {
		return 2
	}
	n, err := core.OpenNode(core.Config{Domain: *domain})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer n.Close()
	s, err := n.NewSubscriber(*topic, &core.SubscriberOptions{MaxMessageSize: 64 << 20})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	// SIGTERM (the tests' cleanup) ends it cleanly: it closes what it made
	// in /dev/shm.
	term, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	fmt.Println("ready")
	ctx, cancel := context.WithTimeout(term, *timeout)
	defer cancel()
	var dropped uint64
	for i := 0; i < *count; i++ {
		m, err := s.Receive(ctx)
		if err != nil {
			if term.Err() != nil {
				return 0
			}
			fmt.Printf("error %v after %d\n", err, i)
			return 1
		}
		dropped += m.Dropped
		if !*quiet {
			p := m.Data
			if len(p) > 24 {
				p = p[:24]
			}
			var idx [8]byte
			copy(idx[:], p)
			text := strings.Map(func(r rune) rune {
				if r <= ' ' || r >= 0x7f {
					return '_'
				}
				return r
			}, string(p))
			fmt.Printf("msg %d %d %d %x %s\n", m.Clock, m.Size, m.Dropped, idx, text)
		}
	}
	fmt.Printf("done %d dropped %d\n", *count, dropped)
	return 0
}

// childPub publishes -count messages of the given sizes (cycled) with acks;
// byte 0..7 of each carry its index, the rest 'x'. It prints "sent N".
func childPub(args []string) int {
	fs := flag.NewFlagSet("pub", flag.ContinueOnError)
	domain := fs.String("domain", "", "")
	topic := fs.String("topic", "", "")
	typ := fs.String("type", "raw", "")
	count := fs.Int("count", 1, "")
	sizes := fs.String("sizes", "16", "comma-separated sizes, cycled")
	subs := fs.Int("subs", 0, "wait until this many subscriber processes are connected")
	if err := fs.Parse(testutil.ChildArgs(args)); err != nil {
		return 2
	}
	var sz []int
	for _, s := range strings.Split(*sizes, ",") {
		var v int
		fmt.Sscan(s, &v)
		sz = append(sz, max(v, 8))
	}
	n, err := core.OpenNode(core.Config{Domain: *domain})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer n.Close()
	p, err := n.NewPublisher(*topic, &core.PublisherOptions{Type: *typ, AckTimeout: 2 * time.Second, MaxMessageSize: 64 << 20})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer p.Close()
	fmt.Println("ready")
	for deadline := time.Now().Add(30 * time.Second); p.Stats().Subscribers < *subs; {
		if time.Now().After(deadline) {
			fmt.Println("no subscribers")
			return 1
		}
		time.Sleep(10 * time.Millisecond)
	}
	term, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	buf := make([]byte, 0, 64<<20)
	for i := 0; i < *count && term.Err() == nil; i++ {
		b := buf[:sz[i%len(sz)]]
		for j := range b {
			b[j] = 'x'
		}
		binary.LittleEndian.PutUint64(b, uint64(i))
		if err := p.Send(context.Background(), b); err != nil {
			fmt.Printf("send %d: %v\n", i, err)
		}
	}
	fmt.Printf("sent %d\n", *count)
	return 0
}

// childPong listens to eCAL's ping sample through shmfs: every message on
// pulse_send carries the sender's time in µs (8 bytes), so the one-way
// latency is now minus that. With -reply it publishes each back on
// pulse_reply (as eCAL's pong does). On SIGTERM it prints
// "latency N p50 p90 p99 mean" (µs).
func childPong(args []string) int {
	fs := flag.NewFlagSet("pong", flag.ContinueOnError)
	domain := fs.String("domain", "", "")
	reply := fs.Bool("reply", false, "")
	if err := fs.Parse(testutil.ChildArgs(args)); err != nil {
		return 2
	}
	n, err := core.OpenNode(core.Config{Domain: *domain})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer n.Close()
	s, err := n.NewSubscriber("pulse_send", &core.SubscriberOptions{ZeroCopy: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var p *core.Publisher
	if *reply {
		if p, err = n.NewPublisher("pulse_reply", &core.PublisherOptions{Type: "long long"}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	fmt.Println("ready")
	var lat []float64
	for {
		var sent int64
		err := s.ReceiveFunc(ctx, func(h core.Header, view []byte) error {
			if len(view) >= 8 {
				sent = int64(binary.LittleEndian.Uint64(view))
			}
			return nil
		})
		if err != nil {
			break
		}
		now := time.Now().UnixMicro()
		lat = append(lat, float64(now-sent))
		if p != nil {
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], uint64(now-sent))
			_ = p.Send(ctx, b[:])
		}
	}
	fmt.Println(summary("latency", lat))
	return 0
}

// summary renders "name N p50 p90 p99 mean" of values in µs.
func summary(name string, v []float64) string {
	if len(v) == 0 {
		return name + " 0"
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	var sum float64
	for _, x := range s {
		sum += x
	}
	q := func(p float64) float64 { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return fmt.Sprintf("%s %d %.0f %.0f %.0f %.0f", name, len(s), q(0.5), q(0.9), q(0.99), sum/float64(len(s)))
}

// childGateway runs a gateway until SIGTERM/SIGKILL; it prints "ready",
// then its counters on SIGTERM.
func childGateway(args []string) int {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	domain := fs.String("domain", "", "")
	group := fs.String("group", "", "")
	imp := fs.String("import", "", "")
	exp := fs.String("export", "", "")
	port := fs.Int("port", 0, "eCAL registration port")
	accept := fs.Bool("accept-gateways", false, "")
	if err := fs.Parse(testutil.ChildArgs(args)); err != nil {
		return 2
	}
	cfg := Config{Core: core.Config{Domain: *domain}, HostGroup: *group, Port: *port, acceptGateways: *accept,
		Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }}
	cfg.Import, cfg.Export = Patterns{}, Patterns{}
	if *imp != "" {
		cfg.Import = Patterns{*imp}
	}
	if *exp != "" {
		cfg.Export = Patterns{*exp}
	}
	g, err := Start(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	st := g.Stats()
	_ = g.Close()
	fmt.Printf("stats imported %d exported %d importErrors %d ackTimeouts %d\n", st.Imported, st.Exported, st.ImportErrors, st.ExportAckTimeouts)
	return 0
}
