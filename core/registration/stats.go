package registration

import (
	"errors"
	"sync/atomic"
)

// Stats counts what an agent sent, received and dropped. Datagram counters
// count datagrams; the others count samples (one entity each) unless noted.
type Stats struct {
	DatagramsSent, DatagramsReceived uint64
	SamplesSent, SamplesReceived     uint64 // received: accepted samples from other agents
	SendErrors, ReceiveErrors        uint64
	Own                              uint64 // datagrams of this agent looped back (skipped)

	// Datagrams dropped whole, by reason (see the Err* values).
	DroppedTruncated, DroppedTooLarge, DroppedVersion, DroppedBadName, DroppedBadValue uint64

	IgnoredDomain uint64 // samples of other domains
	IgnoredKind   uint64 // samples of unknown kinds (newer peers)
	Stale         uint64 // samples older (by Seq) than the known state
	DroppedFull   uint64 // new or growing entities beyond MaxEntities or MaxRegistryBytes, nothing to evict
	DroppedQuota  uint64 // new or growing entities beyond their source's MaxSourceEntities or MaxSourceBytes
	DroppedDead   uint64 // new entities of a local process that is already dead
	// DroppedSpoofed counts samples of a user speaking for another: a
	// sample for an entity another source added, one claiming a process of
	// another uid, or one that changes an entity's process.
	DroppedSpoofed uint64
	// DroppedUnverified counts samples from this host whose sending socket
	// is gone or shared by several users: they cannot be attributed.
	DroppedUnverified uint64
	Evicted           uint64 // untrusted entities removed to make room (see MaxSourceBytes)

	Unregistered uint64 // entities removed by FlagUnregister
	Expired      uint64 // entities removed by Timeout
	DeadRemoved  uint64 // entities removed because their local process died

	Queries     uint64 // new entities with FlagQuery seen
	Reannounces uint64 // announcements of all own entities in answer to queries
	Sweeps      uint64 // expiry and liveness passes

	WatchCoalesced uint64 // changes merged into a pending change of a slow watcher
	Entities       int    // entities in the registry now, own included
}

type counters struct {
	datagramsSent, datagramsReceived, samplesSent, samplesReceived atomic.Uint64
	sendErrors, receiveErrors, own                                 atomic.Uint64
	truncated, tooLarge, version, badName, badValue                atomic.Uint64
	ignoredDomain, ignoredKind, stale, full, quota, dead           atomic.Uint64
	spoofed, unverified, evicted                                   atomic.Uint64
	unregistered, expired, deadRemoved                             atomic.Uint64
	queries, reannounces, sweeps, coalesced                        atomic.Uint64
}

// countDrop counts a datagram rejected by decode under its reason.
func (c *counters) countDrop(err error) {
	switch {
	case errors.Is(err, ErrTruncated):
		c.truncated.Add(1)
	case errors.Is(err, ErrTooLarge):
		c.tooLarge.Add(1)
	case errors.Is(err, ErrVersion):
		c.version.Add(1)
	case errors.Is(err, ErrBadName):
		c.badName.Add(1)
	default:
		c.badValue.Add(1)
	}
}

func (c *counters) snapshot() Stats {
	return Stats{
		DatagramsSent: c.datagramsSent.Load(), DatagramsReceived: c.datagramsReceived.Load(),
		SamplesSent: c.samplesSent.Load(), SamplesReceived: c.samplesReceived.Load(),
		SendErrors: c.sendErrors.Load(), ReceiveErrors: c.receiveErrors.Load(), Own: c.own.Load(),
		DroppedTruncated: c.truncated.Load(), DroppedTooLarge: c.tooLarge.Load(),
		DroppedVersion: c.version.Load(), DroppedBadName: c.badName.Load(), DroppedBadValue: c.badValue.Load(),
		IgnoredDomain: c.ignoredDomain.Load(), IgnoredKind: c.ignoredKind.Load(), Stale: c.stale.Load(),
		DroppedFull: c.full.Load(), DroppedQuota: c.quota.Load(), DroppedDead: c.dead.Load(),
		DroppedSpoofed: c.spoofed.Load(), DroppedUnverified: c.unverified.Load(), Evicted: c.evicted.Load(),
		Unregistered: c.unregistered.Load(), Expired: c.expired.Load(), DeadRemoved: c.deadRemoved.Load(),
		Queries: c.queries.Load(), Reannounces: c.reannounces.Load(), Sweeps: c.sweeps.Load(),
		WatchCoalesced: c.coalesced.Load(),
	}
}
