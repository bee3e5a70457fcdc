// Package glibc imitates, in Go and without cgo, the process-shared
// pthread_mutex_t and pthread_cond_t of glibc on x86-64, so that a Go
// process can take part in the synchronisation of C programs that keep
// these objects in shared memory (eCAL's named mutexes and events).
//
// Only the layout and algorithm that glibc used from 2.25 up to 2.37 (and
// 2.38 to 2.40 before their stable branches took the 2.41 condition
// variable) are imitated: the condition variable with __g_refs. glibc 2.41
// removed __g_refs and moved the fields after it; such objects are refused
// (ErrUnsupported), never touched. See Check and docs/protocol.md.
//
// Every wait here is bounded: futex waits are sliced and end at a deadline,
// so that a peer that died holding a lock can stall a call, never hang it.
// The imitation follows glibc step by step; deviations (bounds on waits that
// glibc makes without a timeout) are marked where they are.
package glibc
