package ecal

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmfs/shmfs/core"
	"github.com/shmfs/shmfs/internal/testutil"
)

// Tests against a real eCAL 5.13 install: set SHMFS_ECAL_PREFIX to its
// prefix (bin/ecal_sample_*, lib/, etc/ecal/ecal.ini), e.g. what
// shared/tools/ecal-peer/build.sh makes. Without it they skip (also in CI:
// CI has no eCAL). The whole scenario runs in a network and mount namespace
// of its own (unshare -n -m): only lo, so eCAL's registration cannot leave
// the host, and a private tmpfs on /dev/shm, so nothing eCAL leaves behind
// survives the test.

const insideEnv = "SHMFS_ECAL_INSIDE"

func TestRealECAL(t *testing.T) {
	prefix := os.Getenv("SHMFS_ECAL_PREFIX")
	if prefix == "" {
		t.Skip("SHMFS_ECAL_PREFIX not set: no eCAL 5.13 install to test against")
	}
	if os.Getenv(insideEnv) == "" {
		runInNamespace(t)
		return
	}
	enterNamespace(t)
	env := newECALEnv(t, prefix)

	t.Run("MinimalSndToShmfsSubCommand", env.minimalSndToShmfsSub)
	t.Run("ShmfsPubCommandToMinimalRecCb", env.shmfsPubToMinimalRecCb)
	t.Run("PersonSndTypeAppearsInShmfsLs", env.personType)
	t.Run("ShmfsSubscribersLeaveAndComeBack", env.resubscribe)
	t.Run("LatencySndAckModeToShmfsBesideLatencyRec", func(t *testing.T) { env.latencySnd(t, "-s", "1") })
	t.Run("LatencySndMultiBuffer", func(t *testing.T) { env.latencySnd(t, "-s", "1", "-b", "3") })
	t.Run("LatencySndZeroCopy", func(t *testing.T) { env.latencySnd(t, "-s", "64", "-z") })
	t.Run("LatencySndLargeMessagesRecreatedFile", func(t *testing.T) { env.latencySnd(t, "-s", "4096", "-r", "200") })
	t.Run("DynsizeSndGrowingMessages", env.dynsizeSnd)
	t.Run("ExportGrowingMessagesToBinaryRec", env.exportGrowing)
	t.Run("LatencySndThroughShmfsToLatencyRecOfAnotherHostGroup", env.islands)
	t.Run("PingThroughGatewayBesidePingPong", env.pingPong)
	t.Run("ECALPublisherKilledMidStream", env.publisherKilled)
	t.Run("ECALSubscriberKilledMidStream", env.subscriberKilled)
	t.Run("GatewayKilledMidStream", env.gatewayKilled)
}

// runInNamespace re-runs this test inside unshare -n -m.
func runInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the real-eCAL tests need root (unshare -n -m)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare (util-linux) not installed")
	}
	pattern := "^TestRealECAL$"
	if f := flagValue("test.run"); strings.HasPrefix(f, "TestRealECAL/") {
		pattern = f
	}
	cmd := exec.Command("unshare", "--net", "--mount", "--", os.Args[0], "-test.run="+pattern, "-test.v", "-test.count=1", "-test.timeout=20m")
	cmd.Env = append(os.Environ(), insideEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		t.Log(sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("real-eCAL tests in the namespace failed: %v", err)
	}
}

func flagValue(name string) string {
	for _, a := range os.Args {
		if v, ok := strings.CutPrefix(a, "-"+name+"="); ok {
			return v
		}
	}
	return ""
}

// enterNamespace brings lo up and puts a private tmpfs on /dev/shm.
func enterNamespace(t *testing.T) {
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make mounts private: %v", err)
	}
	if err := unix.Mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=1g"); err != nil {
		t.Fatalf("private /dev/shm: %v", err)
	}
}

type ecalEnv struct {
	prefix string
	dir    string
	shmfs  string // the shmfs command, built for this test
}

func newECALEnv(t *testing.T, prefix string) *ecalEnv {
	e := &ecalEnv{prefix: prefix, dir: t.TempDir()}
	for _, bin := range []string{"ecal_sample_minimal_snd", "ecal_sample_latency_snd", "ecal_sample_ping"} {
		if _, err := os.Stat(filepath.Join(prefix, "bin", bin)); err != nil {
			t.Fatalf("SHMFS_ECAL_PREFIX=%s: %v", prefix, err)
		}
	}
	e.shmfs = filepath.Join(e.dir, "shmfs")
	if out, err := exec.Command("go", "build", "-o", e.shmfs, "github.com/shmfs/shmfs/cmd/shmfs").CombinedOutput(); err != nil {
		t.Fatalf("build shmfs: %v: %s", err, out)
	}
	return e
}

// dataDir returns an ECAL_DATA directory whose ecal.ini is the install's
// with network_enabled = false (loopback only) and the given host group.
func (e *ecalEnv) dataDir(t *testing.T, group string) string {
	dir := filepath.Join(e.dir, "etc-"+group)
	if _, err := os.Stat(dir); err == nil {
		return dir
	}
	b, err := os.ReadFile(filepath.Join(e.prefix, "etc", "ecal", "ecal.ini"))
	if err != nil {
		t.Fatal(err)
	}
	set := func(s, key, val string) string {
		re := regexp.MustCompile(`(?m)^` + key + `\s*=.*$`)
		if !re.MatchString(s) {
			t.Fatalf("ecal.ini has no %s", key)
		}
		return re.ReplaceAllString(s, key+" = "+val)
	}
	ini := set(string(b), "network_enabled", "false")
	ini = set(ini, "host_group_name", group)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ecal.ini"), []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// start runs an eCAL program of the install ("" group: the host name).
func (e *ecalEnv) start(t *testing.T, group, stdin, bin string, args ...string) *testutil.Child {
	t.Helper()
	o := testutil.Options{Env: []string{"LD_LIBRARY_PATH=" + filepath.Join(e.prefix, "lib"), "ECAL_DATA=" + e.dataDir(t, group)}}
	if stdin != "" {
		o.Stdin = strings.NewReader(stdin)
	}
	return testutil.Start(t, o, "stdbuf", append([]string{"-oL", filepath.Join(e.prefix, "bin", bin)}, args...)...)
}

// startChild runs a child of this test binary that is stopped with SIGTERM
// at cleanup, so that it closes what it made in /dev/shm.
func startChild(t *testing.T, name string, args ...string) *testutil.Child {
	t.Helper()
	return testutil.StartChildWith(t, testutil.Options{StopSignal: syscall.SIGTERM}, name, args...)
}

// shmfsCmd runs the shmfs command.
func (e *ecalEnv) shmfsCmd(t *testing.T, args ...string) *testutil.Child {
	t.Helper()
	// SIGTERM at cleanup: shmfs closes what it made in /dev/shm.
	return testutil.Start(t, testutil.Options{StopSignal: syscall.SIGTERM}, e.shmfs, args...)
}

// gateway starts an in-process gateway for domain d and closes it at cleanup.
func (e *ecalEnv) gateway(t *testing.T, d, group string, imp, exp Patterns) *Gateway {
	t.Helper()
	if group != "" {
		_ = e.dataDir(t, group)
	}
	g, err := Start(Config{Core: core.Config{Domain: d}, HostGroup: group, Import: imp, Export: exp,
		Logf: func(f string, a ...any) { t.Logf("gateway: "+f, a...) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("gateway close: %v", err)
		}
	})
	return g
}

// cleanShm fails the test if the gateway left files in /dev/shm, and
// removes what the (killed) eCAL processes left. Register it first: it
// runs after every process has been stopped.
func cleanShm(t *testing.T) {
	t.Cleanup(func() {
		left, _ := filepath.Glob("/dev/shm/ecal_*")
		var ours []string
		for _, p := range left {
			if strings.HasPrefix(filepath.Base(p), gatewayFilePrefix) {
				ours = append(ours, filepath.Base(p))
			}
			os.Remove(p)
		}
		if len(ours) > 0 {
			t.Errorf("the gateway left %v in /dev/shm", ours)
		}
	})
}

// exited waits until a child that finished its work has exited (and so
// closed its shmfs objects) before the test's cleanup kills it.
func exited(t *testing.T, c *testutil.Child) {
	t.Helper()
	if err := c.Wait(t, 10*time.Second); err != nil {
		t.Errorf("%s: %v", c.Cmd.Path, err)
	}
}

func waitLine(t *testing.T, c *testutil.Child, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		l := c.Line(t, time.Until(deadline))
		if strings.HasPrefix(strings.TrimSpace(l), prefix) {
			return strings.TrimSpace(l)
		}
	}
}

var helloRE = regexp.MustCompile(`Hello_World_\((\d+)\)`)

// minimal_snd publishes "Hello World (N)" every 10 ms; 'shmfs sub' reads 20
// of them through the gateway: consecutive N, nothing dropped.
func (e *ecalEnv) minimalSndToShmfsSub(t *testing.T) {
	cleanShm(t)
	d := testutil.Domain(t)
	e.gateway(t, d, "", nil, nil)
	e.start(t, "", "", "ecal_sample_minimal_snd")
	sub := e.shmfsCmd(t, "sub", "--domain", d, "--count", "20", "--timeout", "30s", "--format", "json", "Hello")
	var prev int
	for i := 0; i < 20; i++ {
		l := sub.Line(t, 30*time.Second)
		m := regexp.MustCompile(`"data":"Hello World \((\d+)\)"`).FindStringSubmatch(l)
		if m == nil || !strings.Contains(l, `"dropped":0`) {
			t.Fatalf("unexpected line %q", l)
		}
		n, _ := strconv.Atoi(m[1])
		if i > 0 && n != prev+1 {
			t.Fatalf("message %d after %d: not consecutive", n, prev)
		}
		prev = n
	}
	if err := sub.Wait(t, 10*time.Second); err != nil {
		t.Fatalf("shmfs sub: %v", err)
	}
	if l := sub.Output(); !strings.Contains(l, `"type"`) && !strings.Contains(l, "Hello") {
		t.Fatal(l)
	}
}

// 'shmfs pub' sends 50 messages; minimal_rec_cb (callback: every message)
// prints all 50, in order.
func (e *ecalEnv) shmfsPubToMinimalRecCb(t *testing.T) {
	cleanShm(t)
	d := testutil.Domain(t)
	g := e.gateway(t, d, "", nil, nil)
	rec := e.start(t, "", "", "ecal_sample_minimal_rec_cb")
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if g.reg.statsCopy().Added == 0 {
			return fmt.Errorf("the gateway has not seen minimal_rec_cb's subscriber yet")
		}
		return nil
	})
	var msgs []string
	for i := 1; i <= 50; i++ {
		msgs = append(msgs, fmt.Sprintf("m%02d", i))
	}
	pub := e.shmfsCmd(t, append([]string{"pub", "--domain", d, "--type", "base:std::string", "Hello"}, msgs...)...)
	if err := pub.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("shmfs pub: %v: %s", err, pub.Output())
	}
	for _, m := range msgs {
		waitLine(t, rec, `Received "`+m+`"`, 10*time.Second)
	}
	if st := g.Stats(); st.Exported != 50 || st.ExportAckTimeouts != 0 {
		t.Fatalf("gateway stats %+v, want 50 exported without ack timeouts", st)
	}
}

// The gateway subscribes in eCAL only while shmfs subscribers exist: three
// shmfs subscribers in a row, each after the previous one left, all get
// minimal_snd's messages (the eCAL publisher's event files stay valid
// across the gateway's unsubscribe and subscribe).
func (e *ecalEnv) resubscribe(t *testing.T) {
	cleanShm(t)
	d := testutil.Domain(t)
	g := e.gateway(t, d, "", nil, nil)
	e.start(t, "", "", "ecal_sample_minimal_snd")
	for i := 0; i < 3; i++ {
		sub := startChild(t, "sub", "-domain", d, "-topic", "Hello", "-count", "10", "-timeout", "30s")
		waitLine(t, sub, "done 10 dropped 0", 30*time.Second)
		exited(t, sub)
		testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			g.mu.Lock()
			defer g.mu.Unlock()
			if len(g.importSubs) != 0 {
				return fmt.Errorf("still subscribed in eCAL")
			}
			return nil
		})
	}
}

// person_snd publishes protobuf pb.People.Person (with its descriptor):
// 'shmfs ls --json' shows the topic with type "proto:pb.People.Person".
func (e *ecalEnv) personType(t *testing.T) {
	cleanShm(t)
	d := testutil.Domain(t)
	e.gateway(t, d, "", nil, nil)
	e.start(t, "", "", "ecal_sample_person_snd")
	var out string
	testutil.CheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		b, _ := exec.Command(e.shmfs, "ls", "--json", "--domain", d).Output()
		out = string(b)
		if !strings.Contains(out, `"proto:pb.People.Person"`) {
			return fmt.Errorf("shmfs ls: %s", out)
		}
		return nil
	})
	t.Logf("shmfs ls --json: %s", strings.TrimSpace(out))
}

// latency_snd sends in ack mode (100 ms) to latency_rec and, through the
// gateway, to a shmfs subscriber: both get every message; the gateway
// acknowledges in time (no import errors).
func (e *ecalEnv) latencySnd(t *testing.T, args ...string) {
	cleanShm(t)
	d := testutil.Domain(t)
	g := e.gateway(t, d, "", nil, nil)
	runs := 1000
	for i, a := range args {
		if a == "-r" {
			runs, _ = strconv.Atoi(args[i+1])
		}
	}
	if !strings.Contains(strings.Join(args, " "), "-r ") {
		args = append(args, "-r", strconv.Itoa(runs))
	}
	total := runs + 100 // latency_snd's warm-up messages
	sub := startChild(t, "sub", "-domain", d, "-topic", "ping", "-count", strconv.Itoa(total), "-quiet", "-timeout", "120s")
	sub.Expect(t, "ready", 10*time.Second)
	rec := e.start(t, "", "", "ecal_sample_latency_rec")
	snd := e.start(t, "", "", "ecal_sample_latency_snd", args...)
	done := waitLine(t, sub, "done", 180*time.Second)
	if done != fmt.Sprintf("done %d dropped 0", total) {
		t.Fatalf("shmfs subscriber: %q, want all %d messages, none dropped", done, total)
	}
	exited(t, sub)
	got := waitLine(t, rec, "Messages received", 60*time.Second)
	if !strings.HasSuffix(got, ": "+strconv.Itoa(runs)) {
		t.Fatalf("latency_rec: %q, want %d", got, runs)
	}
	avg := waitLine(t, rec, "Message average latency", 10*time.Second)
	if err := snd.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("latency_snd: %v", err)
	}
	st := g.Stats()
	t.Logf("eCAL -> eCAL (latency_rec, same run): %s; gateway: %+v", avg, st)
	if st.Imported != uint64(total) || st.ImportErrors != 0 {
		t.Fatalf("gateway imported %d with %d errors, want %d and 0", st.Imported, st.ImportErrors, total)
	}
}

// dynsize_snd sends messages of growing size (fire and forget, no ack):
// eCAL recreates its memory file under new names as they grow; the gateway
// follows. Every message that arrives is intact (ABCD... pattern) and the
// sizes grow past the initial 4 KiB file.
func (e *ecalEnv) dynsizeSnd(t *testing.T) {
	cleanShm(t)
	d := testutil.Domain(t)
	e.gateway(t, d, "", nil, nil)
	n, err := core.OpenNode(core.Config{Domain: d})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	s, err := n.NewSubscriber("Performance", &core.SubscriberOptions{MaxMessageSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e.start(t, "", "", "ecal_sample_dynsize_snd")
	var sizes []int
	deadline := time.Now().Add(60 * time.Second)
	for len(sizes) < 2000 && (len(sizes) == 0 || sizes[len(sizes)-1] < 20000) {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		m, err := s.Receive(ctx)
		cancel()
		if err != nil {
			t.Fatalf("after %d messages (sizes up to %v): %v", len(sizes), last(sizes), err)
		}
		for i, c := range m.Data {
			if c != "ABCD"[i%4] {
				t.Fatalf("message of %d bytes: byte %d is %q", len(m.Data), i, c)
			}
		}
		if len(sizes) > 0 && len(m.Data) < last(sizes) {
			t.Fatalf("size went down from %d to %d", last(sizes), len(m.Data))
		}
		sizes = append(sizes, len(m.Data))
	}
	if last(sizes) <= memMinSize {
		t.Fatalf("sizes stayed within the first memory file: up to %d", last(sizes))
	}
	t.Logf("%d messages, sizes %d..%d bytes", len(sizes), sizes[0], last(sizes))
}

func last(s []int) int {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

// A shmfs publisher sends growing messages (up to 24 MiB) to binary_rec
// through the gateway, whose memory file grows in place: binary_rec
// receives every one with its size, in order.
func (e *ecalEnv) exportGrowing(t *testing.T) {
	cleanShm(t)
	d := testutil.Domain(t)
	g := e.gateway(t, d, "", nil, nil)
	rec := e.start(t, "", "", "ecal_sample_binary_rec")
	sizes := []int{100, 5000, 4000, 70000, 1 << 20, 3 << 20, 24 << 20, 10}
	var ss []string
	for _, s := range sizes {
		ss = append(ss, strconv.Itoa(s))
	}
	pub := startChild(t, "pub", "-domain", d, "-topic", "blob", "-count", strconv.Itoa(len(sizes)), "-sizes", strings.Join(ss, ","), "-subs", "1")
	waitLine(t, pub, "sent", 60*time.Second)
	exited(t, pub)
	for _, s := range sizes {
		l := waitLine(t, rec, "Size", 30*time.Second)
		if !strings.HasSuffix(l, ": "+strconv.Itoa(s)) {
			t.Fatalf("binary_rec got %q, want size %d", l, s)
		}
	}
	if st := g.Stats(); st.Exported != uint64(len(sizes)) || st.ExportAckTimeouts != 0 {
		t.Fatalf("gateway stats %+v", st)
	}
}

// Two eCAL host groups see nothing of each other (network mode is off);
// latency_snd in group A and latency_rec in group B are connected only
// through shmfs: gateway A imports "ping" into the domain, gateway B (a
// separate process) exports it to group B. latency_rec gets every message.
func (e *ecalEnv) islands(t *testing.T) {
	cleanShm(t)
	d := testutil.Domain(t)
	e.gateway(t, d, "islandA", Patterns{"ping"}, Patterns{})
	gb := startChild(t, "gateway", "-domain", d, "-group", "islandB", "-export", "ping")
	gb.Expect(t, "ready", 10*time.Second)
	_ = e.dataDir(t, "islandB")
	rec := e.start(t, "islandB", "", "ecal_sample_latency_rec")
	snd := e.start(t, "islandA", "", "ecal_sample_latency_snd", "-r", "500", "-s", "1")
	got := waitLine(t, rec, "Messages received", 120*time.Second)
	if !strings.HasSuffix(got, ": 500") {
		t.Fatalf("latency_rec in the other host group: %q, want 500", got)
	}
	avg := waitLine(t, rec, "Message average latency", 10*time.Second)
	t.Logf("eCAL (group A) -> gateway -> shmfs -> gateway -> eCAL (group B): %s", avg)
	if err := snd.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("latency_snd: %v", err)
	}
	_ = gb.Cmd.Process.Signal(syscall.SIGTERM)
	if l := waitLine(t, gb, "stats", 10*time.Second); !strings.Contains(l, "ackTimeouts 0") {
		t.Errorf("gateway B: %s", l)
	}
}

// pingPong measures latencies in one run. eCAL's ping sends 10000 pulses
// whose payload is its clock in µs and waits (100 ms at most) for a reply.
// Phase 1: eCAL's pong replies; a shmfs subscriber behind the gateway
// listens to the same pulses: the one-way latency eCAL -> eCAL (pong) and
// eCAL -> gateway -> shmfs, for the same messages. Phase 2: the shmfs side
// replies through the gateway instead of eCAL's pong: round trips
// eCAL <-> eCAL (phase 1) against eCAL <-> gateway <-> shmfs.
func (e *ecalEnv) pingPong(t *testing.T) {
	cleanShm(t)
	d := testutil.Domain(t)
	g := e.gateway(t, d, "", nil, nil)
	listen := startChild(t, "pong", "-domain", d)
	listen.Expect(t, "ready", 10*time.Second)
	pong := e.start(t, "", "", "ecal_sample_pong")
	ping, enter := e.startWithInput(t, "ecal_sample_ping")
	e.waitImported(t, g, "pulse_send")
	time.Sleep(time.Second) // eCAL's ping and pong match each other by registration; nothing to observe from here
	enter()
	rtt1 := pingRTTs(t, ping)
	ecalOneWay := pongLatencies(t, pong)
	_ = listen.Cmd.Process.Signal(syscall.SIGTERM)
	gwOneWay := waitLine(t, listen, "latency", 30*time.Second)
	if err := listen.Wait(t, 10*time.Second); err != nil {
		t.Errorf("listener: %v", err)
	}
	ping.Kill()
	pong.Kill()

	replier := startChild(t, "pong", "-domain", d, "-reply")
	replier.Expect(t, "ready", 10*time.Second)
	ping2, enter2 := e.startWithInput(t, "ecal_sample_ping")
	e.waitImported(t, g, "pulse_send")
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		for _, en := range g.reg.snapshot() {
			if en.Kind == CmdRegSub && en.Topic.Name == "pulse_reply" && en.Topic.PID == int32(ping2.Cmd.Process.Pid) && g.Stats().Exports > 0 {
				return nil
			}
		}
		return fmt.Errorf("ping's pulse_reply subscriber not connected to the gateway yet")
	})
	time.Sleep(time.Second) // let ping receive the gateway's registrations
	enter2()
	rtt2 := pingRTTs(t, ping2)
	_ = replier.Cmd.Process.Signal(syscall.SIGTERM)
	waitLine(t, replier, "latency", 30*time.Second)
	if err := replier.Wait(t, 10*time.Second); err != nil {
		t.Errorf("replier: %v", err)
	}

	t.Logf("one-way eCAL ping -> eCAL pong (same pulses): %s", ecalOneWay)
	t.Logf("one-way eCAL ping -> gateway -> shmfs sub:    %s", gwOneWay)
	t.Logf("round trip eCAL <-> eCAL pong:                %s", rtt1)
	t.Logf("round trip eCAL <-> gateway <-> shmfs pong:   %s", rtt2)
	if f := strings.Fields(gwOneWay); len(f) < 2 || f[1] == "0" {
		t.Fatalf("the shmfs side received no pulses: %s", gwOneWay)
	}
	if strings.HasPrefix(rtt2, "rtt 0") {
		t.Fatalf("no pulse came back through the gateway: %s", rtt2)
	}
}

// startWithInput starts an eCAL program that waits for Enter; enter sends it.
func (e *ecalEnv) startWithInput(t *testing.T, bin string) (*testutil.Child, func()) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c := testutil.Start(t, testutil.Options{
		Env:   []string{"LD_LIBRARY_PATH=" + filepath.Join(e.prefix, "lib"), "ECAL_DATA=" + e.dataDir(t, "")},
		Stdin: r,
	}, "stdbuf", "-oL", filepath.Join(e.prefix, "bin", bin))
	r.Close()
	t.Cleanup(func() { w.Close() })
	return c, func() { fmt.Fprintln(w) }
}

// waitImported waits until the gateway has an eCAL subscription on topic.
func (e *ecalEnv) waitImported(t *testing.T, g *Gateway, topic string) {
	t.Helper()
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.importSubs[topic] == nil {
			return fmt.Errorf("the gateway has not subscribed to %q in eCAL", topic)
		}
		return nil
	})
}

var pulseRE = regexp.MustCompile(`Pulse sent/received in (\d+) us`)

// pingRTTs reads ping's 10000 "Pulse sent/received in X us" lines (0 for a
// pulse without reply) and summarises the answered ones.
func pingRTTs(t *testing.T, ping *testutil.Child) string {
	var v []float64
	lost := 0
	for i := 0; i < 10000; i++ {
		l := waitLine(t, ping, "Pulse sent/received in", 300*time.Second)
		m := pulseRE.FindStringSubmatch(l)
		x, _ := strconv.Atoi(m[1])
		if x == 0 {
			lost++
			continue
		}
		v = append(v, float64(x))
	}
	return fmt.Sprintf("%s (unanswered %d)", summary("rtt", v), lost)
}

var pongRE = regexp.MustCompile(`Pulse received in (-?\d+) us`)

// pongLatencies reads eCAL pong's per-pulse one-way latencies, printed once
// it got all 10000 pulses.
func pongLatencies(t *testing.T, pong *testutil.Child) string {
	var v []float64
	for i := 0; i < 10000; i++ {
		l := waitLine(t, pong, "Pulse received in", 60*time.Second)
		m := pongRE.FindStringSubmatch(l)
		x, _ := strconv.Atoi(m[1])
		v = append(v, float64(x))
	}
	return summary("latency", v)
}

// An eCAL publisher SIGKILLed mid-stream: the gateway drops its import
// within about one refresh (its PID is gone), removes the event files it
// used, and keeps working: a new publisher of the topic is imported again.
func (e *ecalEnv) publisherKilled(t *testing.T) {
	cleanShm(t)
	d := testutil.Domain(t)
	g := e.gateway(t, d, "", nil, nil)
	sub := startChild(t, "sub", "-domain", d, "-topic", "Hello", "-count", "60", "-timeout", "60s")
	sub.Expect(t, "ready", 10*time.Second)
	snd := e.start(t, "", "", "ecal_sample_minimal_snd")
	waitLine(t, sub, "msg", 30*time.Second)
	for i := 0; i < 10; i++ {
		waitLine(t, sub, "msg", 10*time.Second)
	}
	snd.Kill()
	_ = snd.Wait(t, 10*time.Second)
	killed := time.Now()
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := g.Stats().Imports; n != 0 {
			return fmt.Errorf("%d imports left", n)
		}
		evts, _ := filepath.Glob(fmt.Sprintf("/dev/shm/ecal_*_%d_*evt", os.Getpid()))
		evts2, _ := filepath.Glob(fmt.Sprintf("/dev/shm/ecal_*_%d_evt", os.Getpid()))
		if len(evts)+len(evts2) > 0 {
			return fmt.Errorf("event files of the dead publisher left: %v %v", evts, evts2)
		}
		return nil
	})
	t.Logf("import of the killed publisher removed %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
	e.start(t, "", "", "ecal_sample_minimal_snd")
	l := waitLine(t, sub, "msg", 30*time.Second)
	if !helloRE.MatchString(l) {
		t.Fatalf("after restart: %q", l)
	}
}

// An eCAL subscriber SIGKILLed while a shmfs publisher sends in ack mode:
// the gateway stops waiting for it (its PID is gone) instead of timing out
// on every message, the publisher finishes, and a new subscriber receives.
func (e *ecalEnv) subscriberKilled(t *testing.T) {
	cleanShm(t)
	d := testutil.Domain(t)
	g := e.gateway(t, d, "", nil, nil)
	rec := e.start(t, "", "", "ecal_sample_binary_rec")
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if len(g.reg.snapshot()) == 0 {
			return fmt.Errorf("binary_rec not registered yet")
		}
		return nil
	})
	pub := startChild(t, "pub", "-domain", d, "-topic", "blob", "-count", "3000", "-sizes", "1000", "-subs", "1")
	for i := 0; i < 20; i++ {
		waitLine(t, rec, "Size", 30*time.Second)
	}
	rec.Kill()
	_ = rec.Wait(t, 10*time.Second)
	waitLine(t, pub, "sent 3000", 120*time.Second)
	exited(t, pub)
	st := g.Stats()
	if st.ExportAckTimeouts > 1 {
		t.Fatalf("%d ack timeouts after the subscriber died: the gateway waited for a dead process", st.ExportAckTimeouts)
	}
	rec2 := e.start(t, "", "", "ecal_sample_binary_rec")
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for _, en := range g.reg.snapshot() {
			if en.Topic.PID == int32(rec2.Cmd.Process.Pid) {
				return nil
			}
		}
		return fmt.Errorf("new binary_rec not registered yet")
	})
	pub2 := startChild(t, "pub", "-domain", d, "-topic", "blob", "-count", "5", "-sizes", "777", "-subs", "1")
	waitLine(t, pub2, "sent 5", 30*time.Second)
	exited(t, pub2)
	for i := 0; i < 5; i++ {
		if l := waitLine(t, rec2, "Size", 30*time.Second); !strings.HasSuffix(l, ": 777") {
			t.Fatalf("new subscriber got %q", l)
		}
	}
}

// The gateway SIGKILLed while latency_snd sends in ack mode to it and to
// latency_rec: eCAL is not hung (latency_snd finishes) and latency_rec
// loses nothing; the next gateway removes what the dead one left.
func (e *ecalEnv) gatewayKilled(t *testing.T) {
	cleanShm(t)
	d := testutil.Domain(t)
	gw := startChild(t, "gateway", "-domain", d, "-import", "*", "-export", "*")
	gw.Expect(t, "ready", 10*time.Second)
	sub := startChild(t, "sub", "-domain", d, "-topic", "ping", "-count", "2100", "-timeout", "120s")
	sub.Expect(t, "ready", 10*time.Second)
	rec := e.start(t, "", "", "ecal_sample_latency_rec")
	snd := e.start(t, "", "", "ecal_sample_latency_snd", "-r", "2000", "-s", "1")
	for i := 0; i < 300; i++ {
		waitLine(t, sub, "msg", 60*time.Second)
	}
	gw.Kill()
	_ = gw.Wait(t, 10*time.Second)
	got := waitLine(t, rec, "Messages received", 120*time.Second)
	if !strings.HasSuffix(got, ": 2000") {
		t.Fatalf("latency_rec after the gateway was killed: %q, want 2000", got)
	}
	if err := snd.Wait(t, 60*time.Second); err != nil {
		t.Fatalf("latency_snd: %v", err)
	}
	// A new gateway sweeps what the killed one left (nothing of its own
	// here: it only imported) and works.
	g := e.gateway(t, d, "", nil, nil)
	if st := g.Stats(); st.Imports != 0 {
		t.Logf("stats %+v", st)
	}
}
