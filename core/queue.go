package core

import (
	"context"
	"sync"
)

// queue is a subscriber's bounded FIFO of copied messages. Several observers
// (one per memory file) push; Receive callers pop. A pop happens only when a
// message is returned, so a Receive cancelled by its context consumes
// nothing.
type queue struct {
	// avail has a token whenever the queue may be non-empty; space has one
	// whenever it may have room.
	avail, space chan struct{}

	mu      sync.Mutex
	items   []Message // ring buffer of len cap
	head, n int
	// dropped counts, per publisher, messages evicted on overflow and not
	// yet reported: the next message of the same publisher carries them.
	dropped map[uint64]uint64
}

func newQueue(size int) *queue {
	return &queue{avail: make(chan struct{}, 1), space: make(chan struct{}, 1), items: make([]Message, size), dropped: map[uint64]uint64{}}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push appends m. When the queue is full it either waits for room (block,
// used in ack mode: the acknowledgement is held back) until stop closes, or
// drops the oldest message and counts it. It reports false if stop or
// closed closed first.
func (q *queue) push(m Message, block bool, stop, closed <-chan struct{}) bool {
	for {
		q.mu.Lock()
		if q.n < len(q.items) {
			q.items[(q.head+q.n)%len(q.items)] = m
			q.n++
			q.mu.Unlock()
			signal(q.avail)
			return true
		}
		if !block {
			// The evicted message and the ones it already reported missed.
			ev := q.items[q.head]
			q.dropped[ev.Publisher] += 1 + ev.Dropped
			q.items[q.head] = Message{}
			q.head = (q.head + 1) % len(q.items)
			q.n--
			q.mu.Unlock()
			continue
		}
		q.mu.Unlock()
		select {
		case <-q.space:
		case <-stop:
			return false
		case <-closed:
			return false
		}
	}
}

// tryPop removes and returns the oldest message. Overflow losses of its
// publisher not reported yet are added to its Header.Dropped.
func (q *queue) tryPop() (Message, bool) {
	q.mu.Lock()
	if q.n == 0 {
		q.mu.Unlock()
		return Message{}, false
	}
	m := q.items[q.head]
	q.items[q.head] = Message{}
	q.head = (q.head + 1) % len(q.items)
	q.n--
	if d := q.dropped[m.Publisher]; d > 0 {
		m.Dropped += d
		delete(q.dropped, m.Publisher)
	}
	more := q.n > 0
	q.mu.Unlock()
	signal(q.space)
	if more {
		signal(q.avail)
	}
	return m, true
}

// pop waits for a message until ctx is done, closed is closed or an error
// arrives on errs.
func (q *queue) pop(ctx context.Context, closed <-chan struct{}, errs <-chan error) (Message, error) {
	for {
		if m, ok := q.tryPop(); ok {
			return m, nil
		}
		select {
		case <-q.avail:
		case err := <-errs:
			return Message{}, err
		case <-ctx.Done():
			return Message{}, ctx.Err()
		case <-closed:
			return Message{}, ErrClosed
		}
	}
}
