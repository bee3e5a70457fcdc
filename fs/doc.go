// Package fs is the shmfs FUSE filesystem: every topic of a domain is a
// directory holding
//
//	data    write(2) publishes one message, read(2) subscribes (one
//	        subscriber per open file description)
//	whole   write-only: everything written through one open file until
//	        close(2) is published as ONE message (for messages > 1 MiB)
//	header  the latest message's header and the topic's facts, key: value
//	events  a blocking stream of lines, one per thing that happens on the topic
//
// Mount serves the filesystem until its context is cancelled or Unmount is
// called; see docs/fs.md for the semantics.
package fs
