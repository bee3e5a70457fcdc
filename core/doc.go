// Package core is the Go API of shmfs: publishers and subscribers that move
// messages between processes on one host through shared memory.
//
// A Publisher owns one or more memory files (core/memfile), each guarded by a
// named mutex (core/mutex). For every subscriber process it knows of, it keeps
// a pair of named events (core/event): "snd", set after each message, and
// "ack", set by the subscriber process once it has taken the message.
// Publishers and subscribers find each other through UDP registration
// (core/registration); there is no daemon.
//
// All processes of one domain (Config.Domain, default "default" or the
// SHMFS_DOMAIN environment variable) see each other; different domains are
// independent. Inside one process, all publishers and subscribers of a domain
// share one Node: one registration agent, one mapping per memory file and one
// observer goroutine per memory file.
//
// See docs/protocol.md for the shared-memory layouts and the handshake.
package core
