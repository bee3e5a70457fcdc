package tests

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

// Benchmarks of the bridge between two simulated hosts, each beside its
// baseline measured in the same run:
//
//	go test -run '^$' -bench Bridge -benchtime 1x ./tests/
//
// Throughput: a sender on host a, a receiver on host b; through the
// bridges (shmfs publisher -> bridge a -> NATS a -> route -> NATS b ->
// bridge b -> shmfs subscriber) and plain NATS between the same two
// namespaces (nats.go client on a's server -> route -> client on b's
// server). Rate = bytes received / time from the first to the last
// receipt. Latency: ping-pong between the hosts (one-way = round trip / 2)
// through the bridges and through plain NATS, and on one host through
// shmfs alone (the core's one-way latency, the yardstick of the target).

func init() {
	children["tputrecv"] = tputRecvChild
	children["tputsend"] = tputSendChild
	children["echo"] = echoChild
	children["ping"] = pingChild
}

// benchURL is the client URL of a host's NATS server (with the bridges'
// credentials).
func benchURL(h *testutil.Host) string { return "nats://bridge:s3cret@" + h.Addr + ":4222" }

func BenchmarkBridgeThroughput(b *testing.B) {
	h := newTwoHosts(b)
	sizes := []struct {
		name        string
		size, count int
	}{{"1KiB", 1 << 10, 50000}, {"64KiB", 64 << 10, 3000}, {"1MiB", 1 << 20, 300}}
	// One iteration measures plain NATS and then the bridge, back to back,
	// so that both see the same load on this shared machine; the reported
	// values are medians over the iterations (-benchtime Nx).
	run := func(b *testing.B, mode, size string, bytesPer, count, i int) (mbs, lost float64) {
		topic := fmt.Sprintf("tput-%s-%s-%d", mode, size, i)
		args := []string{mode, benchURL(h.b), topic, strconv.Itoa(bytesPer), strconv.Itoa(count)}
		recv := h.b.StartChild(b, options("", h.e.vars()), "tputrecv", args...)
		recv.Expect(b, "ready", 20*time.Second)
		if mode == "bridge" {
			h.waitExported(h.a, topic)
		}
		args[1] = benchURL(h.a)
		send := h.a.StartChild(b, options("", h.e.vars()), "tputsend", args...)
		line := recv.Line(b, 120*time.Second)
		var got, bytes, ns int64
		if _, err := fmt.Sscanf(line, "got %d %d %d", &got, &bytes, &ns); err != nil || ns <= 0 {
			b.Fatalf("receiver: %q", line)
		}
		send.Wait(b, 30*time.Second)
		return float64(bytes) / float64(ns) * 1e3, 100 * float64(int64(count)-got) / float64(count)
	}
	for _, sz := range sizes {
		b.Run(sz.name, func(b *testing.B) {
			var nats, bridge, ratio, lostN, lostB []float64
			for i := 0; i < b.N; i++ {
				n, ln := run(b, "nats", sz.name, sz.size, sz.count, i)
				br, lb := run(b, "bridge", sz.name, sz.size, sz.count, i)
				nats, bridge, ratio = append(nats, n), append(bridge, br), append(ratio, br/n)
				lostN, lostB = append(lostN, ln), append(lostB, lb)
			}
			b.ReportMetric(median(nats), "nats-MB/s")
			b.ReportMetric(median(bridge), "bridge-MB/s")
			b.ReportMetric(median(bridge)*1e6/float64(sz.size), "bridge-msg/s")
			b.ReportMetric(median(ratio), "bridge/nats")
			b.ReportMetric(median(lostN), "nats-%lost")
			b.ReportMetric(median(lostB), "bridge-%lost")
		})
	}
}

// median of the runs (-benchtime Nx runs N; the machine is shared and
// noisy).
func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

func BenchmarkBridgeLatency(b *testing.B) {
	h := newTwoHosts(b)
	// One iteration measures the core on host a, plain NATS and the bridge
	// between the hosts, back to back; medians over -benchtime Nx.
	type path struct {
		mode, echoURL string
		echoHost      *testutil.Host
	}
	paths := map[string]path{
		"core":   {"shm", "", h.a},
		"nats":   {"nats", benchURL(h.b), h.b},
		"bridge": {"shm", "", h.b},
	}
	measure := func(b *testing.B, name string, i int) (p50, mean float64) {
		c := paths[name]
		ping, pong := fmt.Sprint(name, "-ping-", i), fmt.Sprint(name, "-pong-", i)
		echo := c.echoHost.StartChild(b, options("", h.e.vars()), "echo", c.mode, c.echoURL, ping, pong)
		echo.Expect(b, "ready", 20*time.Second)
		p := h.a.StartChild(b, options("", h.e.vars()), "ping", c.mode, benchURL(h.a), ping, pong, "1024", "2000")
		line := p.Line(b, 120*time.Second)
		if _, err := fmt.Sscanf(line, "oneway p50 %g mean %g", &p50, &mean); err != nil {
			b.Fatalf("ping: %q", line)
		}
		echo.Signal(syscall.SIGTERM)
		echo.Wait(b, 10*time.Second)
		return p50, mean
	}
	b.Run("1KiB", func(b *testing.B) {
		v := map[string][]float64{}
		for i := 0; i < b.N; i++ {
			r := map[string]float64{}
			for _, name := range []string{"core", "nats", "bridge"} {
				p50, mean := measure(b, name, i)
				r[name] = p50
				v[name+"-p50-us"] = append(v[name+"-p50-us"], p50)
				v[name+"-mean-us"] = append(v[name+"-mean-us"], mean)
			}
			v["added-p50-us"] = append(v["added-p50-us"], r["bridge"]-r["nats"])
			v["added/core"] = append(v["added/core"], (r["bridge"]-r["nats"])/r["core"])
		}
		for unit, vals := range v {
			b.ReportMetric(median(vals), unit)
		}
	})
}

// childContext is cancelled on SIGTERM.
func childContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
}

func benchNode() (*core.Node, error) { return core.OpenNode(core.Config{}) }

// tputRecvChild: MODE URL TOPIC SIZE COUNT. Prints "ready" once
// subscribed, then "got N BYTES NS" after COUNT messages or 3 s without
// one (NS: first to last receipt).
func tputRecvChild(args []string) int {
	a := testutil.ChildArgs(args)
	mode, url, topic := a[0], a[1], a[2]
	count, _ := strconv.Atoi(a[4])
	// The rate is measured from the receipt of the first tenth of the
	// messages to the last: start-up (connecting, the first message's
	// discovery wait) is not throughput.
	var n, measured int64
	var first, last time.Time
	warm := int64(count / 10)
	got := func(size int) {
		now := time.Now()
		n++
		if n == warm {
			first = now
		}
		if n > warm {
			measured += int64(size)
			last = now
		}
	}
	report := func() int {
		fmt.Printf("got %d %d %d\n", n, measured, last.Sub(first).Nanoseconds())
		return 0
	}
	if mode == "nats" {
		nc, err := nats.Connect(url)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer nc.Close()
		ch := make(chan int, 1<<16)
		sub, err := nc.Subscribe(topic, func(m *nats.Msg) { ch <- len(m.Data) })
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_ = sub.SetPendingLimits(-1, -1)
		_ = nc.Flush()
		fmt.Println("ready")
		for n < int64(count) {
			select {
			case size := <-ch:
				got(size)
			case <-time.After(3 * time.Second):
				return report()
			}
		}
		return report()
	}
	node, err := benchNode()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer node.Close()
	sub, err := node.NewSubscriber(topic, &core.SubscriberOptions{ZeroCopy: true, Spin: 200 * time.Microsecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer sub.Close()
	fmt.Println("ready")
	for n < int64(count) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := sub.ReceiveFunc(ctx, func(h core.Header, v []byte) error { got(len(v)); return nil })
		cancel()
		if err != nil {
			break
		}
	}
	return report()
}

// tputSendChild: MODE URL TOPIC SIZE COUNT.
func tputSendChild(args []string) int {
	a := testutil.ChildArgs(args)
	mode, url, topic := a[0], a[1], a[2]
	size, _ := strconv.Atoi(a[3])
	count, _ := strconv.Atoi(a[4])
	data := make([]byte, size)
	if mode == "nats" {
		nc, err := nats.Connect(url)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer nc.Close()
		for range count {
			if err := nc.Publish(topic, data); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		if err := nc.FlushTimeout(60 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	node, err := benchNode()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer node.Close()
	pub, err := node.NewPublisher(topic, &core.PublisherOptions{AckTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	for range count {
		if err := pub.Send(ctx, data); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// echoChild: MODE URL PING PONG: sends every ping back as a pong until
// SIGTERM; prints "ready" once it listens.
func echoChild(args []string) int {
	a := testutil.ChildArgs(args)
	mode, url, ping, pong := a[0], a[1], a[2], a[3]
	ctx, cancel := childContext()
	defer cancel()
	if mode == "nats" {
		nc, err := nats.Connect(url)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer nc.Close()
		if _, err := nc.Subscribe(ping, func(m *nats.Msg) { _ = nc.Publish(pong, m.Data) }); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_ = nc.Flush()
		fmt.Println("ready")
		<-ctx.Done()
		return 0
	}
	node, err := benchNode()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer node.Close()
	pub, err := node.NewPublisher(pong, &core.PublisherOptions{AckTimeout: time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer pub.Close()
	sub, err := node.NewSubscriber(ping, &core.SubscriberOptions{ZeroCopy: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer sub.Close()
	fmt.Println("ready")
	for {
		err := sub.ReceiveFunc(ctx, func(h core.Header, v []byte) error { return pub.Send(ctx, v) })
		if ctx.Err() != nil {
			return 0
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
}

// pingChild: MODE URL PING PONG SIZE COUNT: sends COUNT pings one at a
// time, each after the previous pong, and prints "oneway p50 US mean US"
// (half the round trips, after 100 warm-up rounds).
func pingChild(args []string) int {
	a := testutil.ChildArgs(args)
	mode, url, ping, pong := a[0], a[1], a[2], a[3]
	size, _ := strconv.Atoi(a[4])
	count, _ := strconv.Atoi(a[5])
	data := make([]byte, size)
	var send func() error
	var recv func(ctx context.Context) error
	if mode == "nats" {
		nc, err := nats.Connect(url)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer nc.Close()
		sub, err := nc.SubscribeSync(pong)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_ = nc.Flush()
		send = func() error { return nc.Publish(ping, data) }
		recv = func(ctx context.Context) error { _, err := sub.NextMsgWithContext(ctx); return err }
	} else {
		node, err := benchNode()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer node.Close()
		sub, err := node.NewSubscriber(pong, &core.SubscriberOptions{ZeroCopy: true, OnlyNew: true})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer sub.Close()
		pub, err := node.NewPublisher(ping, &core.PublisherOptions{AckTimeout: time.Second})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer pub.Close()
		// Wait until the echo (or the bridge's exporter) reads the pings
		// and the pongs' publisher (the echo's or the bridge's) is there.
		deadline := time.Now().Add(20 * time.Second)
		for pub.Stats().Subscribers == 0 || sub.Stats().Publishers == 0 {
			if time.Now().After(deadline) {
				fmt.Fprintln(os.Stderr, "ping: no echo")
				return 1
			}
			time.Sleep(10 * time.Millisecond)
		}
		send = func() error { return pub.Send(context.Background(), data) }
		recv = func(ctx context.Context) error {
			return sub.ReceiveFunc(ctx, func(core.Header, []byte) error { return nil })
		}
	}
	var rtts []time.Duration
	for i := 0; i < count+100; i++ {
		start := time.Now()
		if err := send(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := recv(ctx)
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "ping", i, err)
			return 1
		}
		if i >= 100 {
			rtts = append(rtts, time.Since(start))
		}
	}
	slices.Sort(rtts)
	var sum time.Duration
	for _, r := range rtts {
		sum += r
	}
	us := func(d time.Duration) float64 { return float64(d) / 2 / float64(time.Microsecond) }
	fmt.Printf("oneway p50 %.1f mean %.1f\n", us(rtts[len(rtts)/2]), us(sum/time.Duration(len(rtts))))
	return 0
}
