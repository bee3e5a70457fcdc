package bench

// The transports of each suite, in the order of tables and legends.

func latencyTransports() []transport {
	return []transport{
		shmfsTransport("shmfs-ack1-copy", "shmfs copy, ack each (window 1)", ack1, false),
		shmfsTransport("shmfs-ack1-zc", "shmfs zero-copy (in place), ack each (window 1)", ack1, true),
		shmfsTransport("shmfs-ff-copy", "shmfs copy, fire-and-forget", ff, false),
		streamTransport("unix", "Unix stream socket", "unix"),
		pipeTransport(),
		streamTransport("tcp", "TCP loopback", "tcp"),
		natsTransport(),
	}
}

func throughputTransports() []transport {
	return []transport{
		shmfsTransport("shmfs-window-copy", "shmfs copy, windowed ack (1024)", window, false),
		shmfsTransport("shmfs-window-zc", "shmfs zero-copy (in place), windowed ack (1024)", window, true),
		shmfsTransport("shmfs-ack1-copy", "shmfs copy, ack each (window 1)", ack1, false),
		shmfsTransport("shmfs-ff-copy", "shmfs copy, fire-and-forget (lossy)", ff, false),
		streamTransport("unix", "Unix stream socket", "unix"),
		pipeTransport(),
		streamTransport("tcp", "TCP loopback", "tcp"),
		natsTransport(),
	}
}

func fanOutTransports() []transport {
	return []transport{
		shmfsTransport("shmfs-window-copy", "shmfs copy, windowed ack (1024)", window, false),
		streamTransport("unix", "Unix stream socket (one per receiver)", "unix"),
		streamTransport("tcp", "TCP loopback (one per receiver)", "tcp"),
		natsTransport(),
	}
}

// IDs of the series every complete report has, per suite (tests check them).
func LatencyIDs() []string    { return ids(latencyTransports(), "memmove") }
func ThroughputIDs() []string { return ids(throughputTransports(), "memmove") }
func FanOutIDs() []string     { return ids(fanOutTransports()) }

func ids(ts []transport, extra ...string) []string {
	out := append([]string{}, extra...)
	for _, t := range ts {
		out = append(out, t.id)
	}
	return out
}
