// Package udpsock opens the UDP sockets that every process of a host
// shares for discovery (shmfs registration, eCAL's registration, doctor's
// probe): receivers bound to a broadcast or multicast address with
// SO_REUSEADDR, and broadcast senders.
//
// Why these options:
//   - A receiver binds the destination address itself (127.255.255.255 or
//     the group) rather than 0.0.0.0: it then gets only that traffic,
//     never unicast from the network.
//   - SO_REUSEADDR lets every process bind the same address and port;
//     Linux hands every broadcast and multicast datagram to each such
//     socket. (SO_REUSEPORT would do too but requires the same user for
//     all; with it unicast is load-balanced, not copied.) A process that
//     binds the port WITHOUT SO_REUSEADDR first locks everyone else out
//     (EADDRINUSE).
//   - SO_RCVBUF is raised so that a burst of announcements fits.
//   - A loopback broadcast sender has SO_BROADCAST and TTL 1.
package udpsock

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// RcvBuf is the receive buffer asked for (the kernel caps it at
// net.core.rmem_max).
const RcvBuf = 4 << 20

// Control runs a setsockopt-style call on the socket's descriptor.
func Control(c syscall.RawConn, fn func(fd int) error) error {
	var serr error
	if err := c.Control(func(fd uintptr) { serr = fn(int(fd)) }); err != nil {
		return err
	}
	return serr
}

// SetInt sets an integer socket option.
func SetInt(c syscall.RawConn, level, opt, v int) error {
	return Control(c, func(fd int) error { return unix.SetsockoptInt(fd, level, opt, v) })
}

// ListenShared binds ip:port with SO_REUSEADDR and a large receive buffer;
// more, when not nil, sets further options before the bind.
func ListenShared(ip net.IP, port int, more func(c syscall.RawConn) error) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		if err := SetInt(c, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return fmt.Errorf("SO_REUSEADDR: %w", err)
		}
		_ = SetInt(c, unix.SOL_SOCKET, unix.SO_RCVBUF, RcvBuf)
		if more != nil {
			return more(c)
		}
		return nil
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", net.JoinHostPort(ip.String(), strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// BroadcastSender opens a socket bound to laddr (nil: any) that may send
// to a broadcast address, with TTL 1 (it never leaves the host or link).
func BroadcastSender(laddr *net.UDPAddr) (*net.UDPConn, error) {
	send, err := net.ListenUDP("udp4", laddr)
	if err != nil {
		return nil, err
	}
	sc, err := send.SyscallConn()
	if err == nil {
		if err = SetInt(sc, unix.SOL_SOCKET, unix.SO_BROADCAST, 1); err == nil {
			err = SetInt(sc, unix.IPPROTO_IP, unix.IP_TTL, 1)
		}
	}
	if err != nil {
		send.Close()
		return nil, err
	}
	return send, nil
}
