package tests

import (
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"strings"
	"time"

	"github.com/shmfs/shmfs/core/registration"
	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shmname"
	"github.com/shmfs/shmfs/internal/testutil"
	"github.com/shmfs/shmfs/internal/udpsock"
)

// attackerChild is a hostile local user (the tests run it as a second
// uid): plain UDP datagrams to the registration port, as anyone can send
// them. Flags: -port, -domain, -mode, -topic, -target, -n, -for. Modes:
//
//	unregister  sniff a publisher of -topic, resend its sample with the
//	            unregister flag and sequence 2^64-1, every 100 ms
//	nomem       the same with an empty memory-file list instead
//	redirect    sniff a publisher of -topic, announce publishers of -target
//	            that name its memory file: one claiming its process, one
//	            claiming the attacker's own, every 100 ms
//	flood       announce -n large fake publishers (256 memory files, 1 KiB
//	            type) of topics flood-<i>, as fast as it can
//	fakesubs    announce -n fake subscribers of -topic (the attacker's own
//	            process, and the publisher's), each with its own bell name
//
// It prints "sniffed" when it has a sample to work from, "forged N" after
// sending, and "done N" at the end (-for elapsed, or -n sent).
func attackerChild(args []string) int {
	fs := flag.NewFlagSet("attacker", flag.ContinueOnError)
	port := fs.Int("port", 0, "")
	domain := fs.String("domain", "", "")
	mode := fs.String("mode", "", "")
	topic := fs.String("topic", "", "")
	target := fs.String("target", "", "")
	n := fs.Int("n", 1000, "")
	dur := fs.Duration("for", 3*time.Second, "")
	if err := fs.Parse(testutil.ChildArgs(args)); err != nil {
		return 2
	}
	dst := &net.UDPAddr{IP: net.ParseIP(registration.LocalBroadcast), Port: *port}
	out, err := udpsock.BroadcastSender(nil)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	send := func(es ...registration.Entity) int {
		b, err := registration.Encode(nil, es)
		if err != nil {
			fmt.Println("error: encode:", err)
			os.Exit(1)
		}
		if _, err := out.WriteToUDP(b, dst); err != nil {
			fmt.Println("error: send:", err)
			os.Exit(1)
		}
		return len(es)
	}
	me := proc.Self()
	host, _ := os.Hostname()
	mine := func(kind registration.Kind, topic string) registration.Entity {
		return registration.Entity{
			Domain: *domain, HostName: host, MachineID: proc.MachineID(), BootID: proc.BootID(),
			Instance: proc.RandomID(), PID: me.PID, StartTime: me.StartTime, PIDNamespace: proc.PIDNamespace(),
			ProcessName: "attacker", Kind: kind, ID: proc.RandomID(), Topic: topic, Type: "raw", Seq: 1,
		}
	}
	total := 0
	switch *mode {
	case "flood":
		files := make([]string, registration.MaxMemFiles)
		for i := range files {
			files[i] = shmname.Object(*domain, proc.RandomID())
		}
		for i := 0; i < *n; i++ {
			e := mine(registration.KindPublisher, fmt.Sprintf("flood-%d", i))
			e.Type, e.MemFiles, e.BufferCount = strings.Repeat("t", registration.MaxType), files, registration.MaxMemFiles
			total += send(e)
		}
		fmt.Println("done", total)
		return 0
	case "unregister", "nomem", "redirect", "fakesubs":
	default:
		fmt.Println("error: unknown mode", *mode)
		return 2
	}
	victim, err := sniff(*port, *domain, *topic)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("sniffed")
	if *mode == "fakesubs" {
		for i := 0; i < *n; i++ {
			for _, e := range []registration.Entity{mine(registration.KindSubscriber, *topic), victim} {
				e.Kind, e.ID, e.Topic, e.Seq, e.Flags = registration.KindSubscriber, proc.RandomID(), *topic, 1, registration.FlagQuery
				e.Instance = proc.RandomID()
				e.MemFiles = []string{shmname.Object(*domain, proc.RandomID(), "snd")}
				total += send(e)
			}
		}
		fmt.Println("done", total)
		return 0
	}
	for end := time.Now().Add(*dur); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		switch *mode {
		case "unregister":
			e := victim
			e.Seq, e.Flags = math.MaxUint64, registration.FlagUnregister
			total += send(e)
		case "nomem":
			e := victim
			e.Seq, e.MemFiles = math.MaxUint64, nil
			total += send(e)
		case "redirect":
			same := victim // the camera's process and memory file, topic -target
			same.ID, same.Topic, same.Seq = proc.RandomID(), *target, 1
			own := mine(registration.KindPublisher, *target) // the attacker's process
			own.MemFiles = victim.MemFiles
			total += send(same, own)
		}
		fmt.Println("forged", total)
	}
	fmt.Println("done", total)
	return 0
}

// sniff listens on the registration port like every agent does and returns
// the first sample of a publisher of topic.
func sniff(port int, domain, topic string) (registration.Entity, error) {
	pc, err := udpsock.ListenShared(net.ParseIP(registration.LocalBroadcast), port, nil)
	if err != nil {
		return registration.Entity{}, err
	}
	defer pc.Close()
	buf := make([]byte, 1<<16)
	_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return registration.Entity{}, fmt.Errorf("no publisher of %q heard: %w", topic, err)
		}
		es, err := registration.Decode(buf[:n])
		if err != nil {
			continue
		}
		for _, e := range es {
			if e.Domain == domain && e.Topic == topic && e.Kind == registration.KindPublisher && len(e.MemFiles) > 0 {
				return e, nil
			}
		}
	}
}
