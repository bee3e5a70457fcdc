package ecal

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// eCAL 5.x local mode (network_enabled = false) sends registration to the
// loopback broadcast address, port 14000 by default ([network]
// multicast_port + 0); every eCAL process listens there with SO_REUSEADDR.
const (
	LocalBroadcast = "127.255.255.255"
	DefaultPort    = 14000
)

// openSockets binds the receiving socket to the broadcast address itself
// (so that it gets registration traffic only, never unicast) with
// SO_REUSEADDR (Linux hands each broadcast to every such socket, eCAL's
// included), and opens a sending socket with SO_BROADCAST and TTL 1.
func openSockets(port int) (recv, send *net.UDPConn, dst *net.UDPAddr, err error) {
	dst = &net.UDPAddr{IP: net.ParseIP(LocalBroadcast).To4(), Port: port}
	setopt := func(c syscall.RawConn, level, opt, v int) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, v) }); err != nil {
			return err
		}
		return serr
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		if err := setopt(c, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return fmt.Errorf("SO_REUSEADDR: %w", err)
		}
		_ = setopt(c, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20) // capped by net.core.rmem_max
		return nil
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", net.JoinHostPort(LocalBroadcast, strconv.Itoa(port)))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ecal: bind registration %v: %w", dst, err)
	}
	recv = pc.(*net.UDPConn)
	send, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err == nil {
		var sc syscall.RawConn
		if sc, err = send.SyscallConn(); err == nil {
			if err = setopt(sc, unix.SOL_SOCKET, unix.SO_BROADCAST, 1); err == nil {
				err = setopt(sc, unix.IPPROTO_IP, unix.IP_TTL, 1)
			}
		}
		if err != nil {
			send.Close()
		}
	}
	if err != nil {
		recv.Close()
		return nil, nil, nil, fmt.Errorf("ecal: registration send socket: %w", err)
	}
	return recv, send, dst, nil
}

// sendDatagrams writes each datagram with a short deadline (a full socket
// buffer must not stall the caller).
func sendDatagrams(c *net.UDPConn, dst *net.UDPAddr, dgs [][]byte) error {
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	for _, d := range dgs {
		if _, err := c.WriteToUDP(d, dst); err != nil {
			return err
		}
	}
	return nil
}
