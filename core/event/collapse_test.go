package event

import (
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

// BenchmarkEventCollapse: a producer Sets once per message as fast as it
// can while a consumer waits. Several Sets between two wake-ups collapse
// into one. A binary event (eCAL's: a flag that Wait consumes) tells the
// consumer only that something happened: it can account for one message
// per wake-up (binary-counted-%). The counting event's sequence tells it
// how many Sets there were (counting-counted-%): a subscriber knows
// exactly how many messages it may have missed.
func BenchmarkEventCollapse(b *testing.B) {
	_, e := newShared(b, testutil.Domain(b), "evt")
	defer e.Close()
	total := uint32(b.N)
	done := make(chan struct{})
	var wakes, counted uint32
	seq := e.Seq()
	go func() {
		defer close(done)
		for counted < total {
			next, err := e.Wait(seq, 10*time.Second)
			if err != nil {
				b.Error(err)
				return
			}
			wakes++
			counted += (next - seq) & seqMask
			seq = next
		}
	}()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.Set()
	}
	<-done
	b.StopTimer()
	if counted != total {
		b.Fatalf("the sequence counted %d of %d Sets", counted, total)
	}
	b.ReportMetric(100*float64(wakes)/float64(total), "binary-counted-%")
	b.ReportMetric(100*float64(counted)/float64(total), "counting-counted-%")
}
