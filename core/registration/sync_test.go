package registration

import (
	"context"
	"testing"
	"time"

	"github.com/shmfs/shmfs/internal/testutil"
)

// TestSyncSeesWhatWasSentBefore: an entity announced (by a datagram that
// reached the socket) before Sync is called is in the registry when Sync
// returns; without Sync the receiver may not have handled it yet.
func TestSyncSeesWhatWasSentBefore(t *testing.T) {
	d, port := testutil.Domain(t), testutil.Port(t)
	cfg := Config{Domain: d, Port: port, Refresh: time.Hour, Timeout: 2 * time.Hour}
	a := newAgent(t, cfg)
	in := newInjector(t, port)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 200; i++ {
		e := remoteEntity(d)
		e.ID = uint64(1000 + i)
		e.Seq = uint64(i + 1)
		in.send(t, rawDatagram(e))
		if !a.Sync(ctx) {
			t.Fatalf("round %d: the marker did not come back", i)
		}
		if got := a.Topic(e.Topic); len(got) != i+1 {
			t.Fatalf("round %d: registry holds %d entities of the topic after Sync, want %d", i, len(got), i+1)
		}
	}
	// Peers ignore the markers: nothing counted as dropped.
	b := newAgent(t, cfg)
	if !b.Sync(ctx) || !a.Sync(ctx) {
		t.Fatal("marker lost")
	}
	if st := a.Stats(); st.DroppedTruncated+st.DroppedVersion+st.DroppedBadValue+st.DroppedBadName != 0 {
		t.Fatalf("markers counted as bad datagrams: %+v", st)
	}
}
