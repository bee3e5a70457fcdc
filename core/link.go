package core

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shmfs/shmfs/core/event"
	"github.com/shmfs/shmfs/internal/proc"
	"github.com/shmfs/shmfs/internal/shm"
)

// link is the connection between one publisher and one subscriber process:
// the subscriber process's bell for the topic (the publisher rings it after
// each message) and its ack event for this publisher (its value word is the
// newest clock every subscriber of that process has consumed; the publisher
// waits on it). Both events are created by the subscriber process, which
// alone removes them; the publisher opens them after checking that their
// creator is the process registration announced. docs/protocol.md
// ("Publish/subscribe") describes the protocol; this type is its one
// implementation, used by both sides.
type link struct {
	bell *event.Event
	ack  *event.Event
	// peer is the process at the other end.
	peer proc.Identity
}

// ackSlice bounds one sleep on an ack event, so that a publisher notices a
// subscriber process that died (or detached) within this time.
const ackSlice = 10 * time.Millisecond

// openLink opens (publisher side) the bell and ack event that subscriber
// process inst created for the publisher's memory file memfile. Each must
// have been created by that very process (instance, pid and start time),
// which must be alive: a registration cannot make a publisher open, ring or
// trust another process's objects. owner is the subscriber process's uid,
// which may own them besides ours and root.
func openLink(bellName, ackName string, inst uint64, peer proc.Identity, owner uint32) (*link, error) {
	open := func(name string) (*event.Event, error) {
		e, err := event.Open(name, event.Options{Owner: owner})
		if err != nil {
			return nil, err
		}
		if err := checkCreator(e.Creator(), inst, peer); err != nil {
			e.Close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return e, nil
	}
	bell, err := open(bellName)
	if err != nil {
		return nil, err
	}
	ack, err := open(ackName)
	if err != nil {
		bell.Close()
		return nil, err
	}
	return &link{bell: bell, ack: ack, peer: peer}, nil
}

// checkCreator verifies that an object was created by the process that
// registration announced.
func checkCreator(c shm.Creator, inst uint64, peer proc.Identity) error {
	if c.Instance != inst || c.ID.PID != peer.PID || c.ID.StartTime != peer.StartTime {
		return fmt.Errorf("%w: created by %v (instance %016x), registration announced %v (instance %016x)",
			ErrUnverified, c.ID, c.Instance, peer, inst)
	}
	if !peer.Alive() {
		return fmt.Errorf("%w: %v is not running", ErrUnverified, peer)
	}
	return nil
}

// close releases the publisher's handles (the subscriber process owns the
// objects).
func (l *link) close() {
	_ = l.bell.Close()
	_ = l.ack.Close()
}

// ring wakes the subscriber process's waiter, if one sleeps.
func (l *link) ring() { l.bell.Set() }

// acked returns the newest clock the subscriber process acknowledged. The
// word is shared memory: a value beyond limit (the newest clock the
// publisher sent) acknowledges messages that do not exist, so it is
// corrupt and counts as nothing — else it would let the publisher
// overwrite freely, for as long as it trusted it.
func (l *link) acked(limit uint64) uint64 {
	if v := l.ack.Value(); v <= limit {
		return v
	}
	return 0
}

// attached reports whether the subscriber process reads this publisher
// (it clears the word when none of its subscribers takes the messages).
func (l *link) attached() bool {
	pid, _ := l.ack.Attached()
	return pid != 0
}

// errLinkGone: the subscriber process died or detached during an ack wait.
var errLinkGone = errors.New("subscriber process gone")

// awaitAck waits until the subscriber process acknowledged clock target
// (limit: the newest clock sent, see acked), until deadline, ctx is done
// or stop reports true (ErrClosed). A process that dies or detaches ends
// the wait with errLinkGone within ackSlice.
func (l *link) awaitAck(ctx context.Context, target, limit uint64, deadline time.Time, stop func() bool) error {
	for {
		seq := l.ack.Seq()
		if l.acked(limit) >= target {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if stop() {
			return ErrClosed
		}
		if !l.attached() || !l.peer.Alive() {
			return errLinkGone
		}
		rem := time.Until(deadline)
		if rem <= 0 {
			return ErrAckTimeout
		}
		_, _ = l.ack.Wait(seq, min(rem, ackSlice))
	}
}

// publishAck (subscriber side) stores the process's consumed clock and
// wakes the publisher if it waits for it. waiting returns the clock the
// publisher posted in its memory file (0 when it does not wait); it is read
// after the store, and the publisher posts it before it reads the value, so
// at least one of the two sees the other (Go's atomics are sequentially
// consistent): a Set is skipped only when the publisher will see the value.
func (l *link) publishAck(clock uint64, waiting func() uint64) {
	l.ack.StoreValue(clock)
	if w := waiting(); w != 0 && clock >= w {
		l.ack.Set()
	}
}
