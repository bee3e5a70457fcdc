package core

import "time"

// Header describes one message.
type Header struct {
	// Publisher is the entity id of the publisher that sent it.
	Publisher uint64
	// ID is the application's message id (SendID); 0 by default.
	ID int64
	// Clock counts the publisher's messages: 1, 2, 3, ...
	Clock uint64
	// Time is when the publisher committed the message.
	Time time.Time
	// Size is the payload length in bytes.
	Size int
	// Hash is the CRC-32C of the payload when the publisher computes one
	// (PublisherOptions.Checksum), else 0.
	Hash uint64
	// ZeroCopy is true when this subscriber read the payload in place.
	ZeroCopy bool
	// AckTimeout is the publisher's acknowledgement timeout (0: none).
	AckTimeout time.Duration
	// Dropped counts messages of this publisher that this subscriber missed
	// right before this one (clock gap or queue overflow).
	Dropped uint64
	// Generation of the memory file; it changes when the file grew.
	Generation uint64
}

// Message is a header plus a private copy of the payload.
type Message struct {
	Header
	Data []byte
}
