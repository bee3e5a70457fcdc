package bench

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Every message starts with 16 bytes: a sequence number (warm-up messages
// have warmBit set) and the sender's wall clock in ns when it began to send
// (processes share CLOCK_REALTIME; Go's monotonic clock is per process).
const (
	headerLen = 16
	warmBit   = 1 << 63
	// pointTimeout bounds one point (latency or throughput) in a receiver.
	pointTimeout = 2 * time.Minute
)

func stamp(b []byte, seq uint64) {
	binary.LittleEndian.PutUint64(b, seq)
	binary.LittleEndian.PutUint64(b[8:], uint64(time.Now().UnixNano()))
}

// receiver is a child's end of a transport.
type receiver interface {
	// begin starts a point that must end by deadline.
	begin(deadline time.Time)
	// recv takes the next message (of size bytes) and hands it to fn; b is
	// valid only inside fn.
	recv(size int, fn func(b []byte)) error
	// answer tells the sender a latency message was taken (a no-op where
	// the transport's own acknowledgement does it).
	answer() error
	// dropped counts messages the transport reports lost so far.
	dropped() uint64
	close()
}

// ChildMain runs a receiving child: args are the kind and its arguments
// (as the sender's startChild passes them); commands come on in, answers go
// to out. It returns the exit code. Binaries call it from a hidden mode
// (`shmfs bench --child ...`).
func ChildMain(args []string, in io.Reader, out io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(out, "error no receiver kind")
		return 2
	}
	var rx receiver
	var err error
	switch kind, a := args[0], args[1:]; kind {
	case "futex":
		err = childFutex(a, out)
		if err != nil {
			fmt.Fprintf(out, "error %v\n", err)
			return 1
		}
		return 0
	case "shmfs":
		rx, err = newShmfsRx(a)
	case "unix", "tcp":
		rx, err = dialStreamRx(kind, a)
	case "pipe":
		rx, err = pipeRx()
	case "nats":
		rx, err = newNatsRx(a)
	default:
		err = fmt.Errorf("unknown receiver kind %q", kind)
	}
	if err != nil {
		fmt.Fprintf(out, "error %v\n", err)
		return 1
	}
	defer rx.close()
	if err := serve(rx, in, out); err != nil {
		fmt.Fprintf(out, "error %v\n", err)
		return 1
	}
	return 0
}

// serve answers the sender's commands until its stdin ends:
//
//	lat SIZE COUNT WARM  → "ready", then WARM+COUNT messages each answered,
//	                       then "lat P50-NS P99-NS N" of the COUNT measured
//	tp SIZE COUNT WARM   → "ready", the warm-up messages, "warm", then
//	                       messages until sequence COUNT-1, "got N DROPPED"
func serve(rx receiver, in io.Reader, out io.Writer) error {
	fmt.Fprintln(out, "up")
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || (f[0] != "lat" && f[0] != "tp") {
			return fmt.Errorf("bad command %q", sc.Text())
		}
		var n [3]int
		for i := range n {
			v, err := strconv.Atoi(f[i+1])
			if err != nil || v < 0 || (i == 0 && v < headerLen) {
				return fmt.Errorf("bad command %q", sc.Text())
			}
			n[i] = v
		}
		size, count, warm := n[0], n[1], n[2]
		rx.begin(time.Now().Add(pointTimeout))
		fmt.Fprintln(out, "ready")
		var err error
		if f[0] == "lat" {
			err = serveLatency(rx, out, size, count, warm)
		} else {
			err = serveThroughput(rx, out, size, count, warm)
		}
		if err != nil {
			return err
		}
	}
	return sc.Err()
}

// errSize: a message of the wrong size arrived.
var errSize = errors.New("message of the wrong size")

func serveLatency(rx receiver, out io.Writer, size, count, warm int) error {
	lat := make([]int64, 0, count)
	bad := 0
	for i := 0; i < warm+count; i++ {
		err := rx.recv(size, func(b []byte) {
			if len(b) != size {
				bad = len(b)
				return
			}
			if binary.LittleEndian.Uint64(b)&warmBit == 0 {
				lat = append(lat, time.Now().UnixNano()-int64(binary.LittleEndian.Uint64(b[8:])))
			}
		})
		if err != nil {
			return fmt.Errorf("latency, message %d of %d: %w", i, warm+count, err)
		}
		if bad != 0 {
			return fmt.Errorf("%w: %d bytes, want %d", errSize, bad, size)
		}
		if err := rx.answer(); err != nil {
			return fmt.Errorf("answer: %w", err)
		}
	}
	p50, p99 := percentiles(lat)
	fmt.Fprintf(out, "lat %d %d %d\n", p50, p99, len(lat))
	return nil
}

func serveThroughput(rx receiver, out io.Writer, size, count, warm int) error {
	d0 := rx.dropped()
	bad := 0
	// Warm-up: until the last warm-up message (the newest, so it arrives
	// even over a transport that loses the older ones).
	for done := warm == 0; !done; {
		err := rx.recv(size, func(b []byte) {
			if len(b) != size {
				bad = len(b)
				return
			}
			done = binary.LittleEndian.Uint64(b) == warmBit|uint64(warm-1)
		})
		if err != nil {
			return fmt.Errorf("throughput warm-up: %w", err)
		}
		if bad != 0 {
			return fmt.Errorf("%w: %d bytes, want %d", errSize, bad, size)
		}
	}
	fmt.Fprintln(out, "warm")
	got := 0
	for last := false; !last; {
		err := rx.recv(size, func(b []byte) {
			if len(b) != size {
				bad = len(b)
				return
			}
			seq := binary.LittleEndian.Uint64(b)
			if seq&warmBit == 0 {
				got++
				last = seq == uint64(count-1)
			}
		})
		if err != nil {
			return fmt.Errorf("throughput, after %d of %d messages: %w", got, count, err)
		}
		if bad != 0 {
			return fmt.Errorf("%w: %d bytes, want %d", errSize, bad, size)
		}
	}
	fmt.Fprintf(out, "got %d %d\n", got, rx.dropped()-d0)
	return nil
}

// percentiles returns p50 and p99 of samples (sorted in place).
func percentiles(s []int64) (p50, p99 int64) {
	if len(s) == 0 {
		return 0, 0
	}
	slices.Sort(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)]
}
