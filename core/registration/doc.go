// Package registration lets shmfs processes find each other without a daemon.
//
// Every process runs one Agent per domain. The agent announces the process's
// publishers and subscribers (entities) in UDP datagrams: at once when an
// entity is created, changed in a way peers must act on, or closed, and again
// every refresh period. Every agent receives every datagram of its domain and
// keeps a registry of all known entities, its own included, with their last
// announced state. Entries expire when their owner falls silent for the
// timeout, when it unregisters them, or — for processes on this host, in this
// PID namespace — within about one refresh period after the owner died.
//
// Local mode (the default) broadcasts to 127.255.255.255, which never leaves
// the host; network mode sends to an IPv4 multicast group. The wire format,
// limits and timing are documented in docs/protocol.md (section
// "Registration") and in codec.go.
//
// Datagrams carry no credentials: everything received is validated and
// bounded before use, and a caller must still check the owner and mode of a
// memory file named in a registration before opening it.
package registration
