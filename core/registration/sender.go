package registration

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"
)

// UDP carries no credentials, but for a datagram from this host the kernel
// still says who sent it: the source port belongs to exactly one socket
// (an agent's send socket is bound to 0.0.0.0:<ephemeral> without
// SO_REUSEADDR, so no other socket can share its port), and /proc/net/udp
// lists the uid that owns each socket. An unprivileged user cannot forge the
// source address on the loopback interface (that needs CAP_NET_RAW in the
// host's network namespace), and Linux drops packets from outside that
// carry one of this host's addresses as source (martian source). So a
// datagram from a local address is attributed to the uid owning its source
// port, and a sample is believed only as far as that uid may speak: for a
// process of its own (root: any).

// origin is where a datagram came from, as the kernel tells it.
type origin struct {
	addr   netip.AddrPort // source address and port
	sender uint64         // the header's sender id (a claim; not checked)
	local  bool           // addr is an address of this host
	known  bool           // local, and exactly one uid owns sockets on its port
	uid    uint32         // that uid
	// lookup, when set, fills known and uid on first use (owner): the
	// socket table is read only for datagrams that need it, once per
	// batch.
	lookup func(port uint16) (uint32, bool)
	looked bool
}

// owner returns the uid owning the source port, if exactly one does.
func (o *origin) owner() (uint32, bool) {
	if o.lookup != nil && !o.looked {
		o.uid, o.known = o.lookup(o.addr.Port())
		o.looked = true
	}
	return o.uid, o.known
}

// source is the unit that quotas and entity ownership are counted in: the
// uid owning the sending socket for datagrams from this host, the source
// address for datagrams from other hosts (network mode), which nothing
// here can verify.
type source struct {
	remote netip.Addr // the zero Addr for a local uid
	uid    uint32
}

func (s source) String() string {
	if s.remote.IsValid() {
		return "host " + s.remote.String()
	}
	return "uid " + strconv.FormatUint(uint64(s.uid), 10)
}

// socketOwners maps local UDP ports to the uid owning the sockets bound to
// them; ambiguous marks ports that sockets of several uids share (sockets
// bound with SO_REUSEADDR, e.g. every agent's receive socket): a datagram
// from such a port cannot be attributed.
type socketOwners struct {
	uid       map[uint16]uint32
	ambiguous map[uint16]bool
}

// readSocketOwners parses /proc/net/udp and /proc/net/udp6 (the sockets of
// this process's network namespace). Lines look like
//
//	sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ...
//	3625: FFFFFF7F:9BBB 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 334954 ...
//
// Every socket on a port counts, whatever address it is bound to: a socket
// bound to 127.255.255.255 sends with source 127.0.0.1.
func readSocketOwners() socketOwners {
	s := socketOwners{uid: map[uint16]uint32{}, ambiguous: map[uint16]bool{}}
	for _, path := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for i, line := range bytes.Split(b, []byte("\n")) {
			f := bytes.Fields(line)
			if i == 0 || len(f) < 8 {
				continue
			}
			c := bytes.LastIndexByte(f[1], ':')
			if c < 0 {
				continue
			}
			port, err1 := strconv.ParseUint(string(f[1][c+1:]), 16, 16)
			uid, err2 := strconv.ParseUint(string(f[7]), 10, 32)
			if err1 != nil || err2 != nil {
				continue
			}
			p := uint16(port)
			if old, ok := s.uid[p]; ok && old != uint32(uid) {
				s.ambiguous[p] = true
			}
			s.uid[p] = uint32(uid)
		}
	}
	return s
}

// owner returns the uid owning the sockets on port, if exactly one does.
func (s socketOwners) owner(port uint16) (uint32, bool) {
	uid, ok := s.uid[port]
	return uid, ok && !s.ambiguous[port]
}

// localAddrs tells whether an address belongs to this host: loopback, or an
// address of one of its interfaces (network mode: peers on this host send
// from their interface's address). The interface list is re-read at most
// once per localAddrsTTL.
type localAddrs struct {
	mu    sync.Mutex
	addrs map[netip.Addr]bool
	read  time.Time
}

const localAddrsTTL = 5 * time.Second

func (l *localAddrs) contains(a netip.Addr) bool {
	a = a.Unmap()
	if a.IsLoopback() {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.read) > localAddrsTTL {
		l.addrs = map[netip.Addr]bool{}
		if as, err := net.InterfaceAddrs(); err == nil {
			for _, x := range as {
				if n, ok := x.(*net.IPNet); ok {
					if ip, ok := netip.AddrFromSlice(n.IP); ok {
						l.addrs[ip.Unmap()] = true
					}
				}
			}
		}
		l.read = time.Now()
	}
	return l.addrs[a]
}
