package ecal

import (
	"fmt"
	"net"
	"time"

	"github.com/shmfs/shmfs/internal/udpsock"
)

// eCAL 5.x local mode (network_enabled = false) sends registration to the
// loopback broadcast address, port 14000 by default ([network]
// multicast_port + 0); every eCAL process listens there with SO_REUSEADDR.
const (
	LocalBroadcast = "127.255.255.255"
	DefaultPort    = 14000
)

// openSockets binds the receiving socket to the broadcast address, as
// every eCAL process does (SO_REUSEADDR: Linux hands each broadcast to
// every such socket, eCAL's included), and opens a loopback broadcast
// sender (internal/udpsock).
func openSockets(port int) (recv, send *net.UDPConn, dst *net.UDPAddr, err error) {
	dst = &net.UDPAddr{IP: net.ParseIP(LocalBroadcast).To4(), Port: port}
	recv, err = udpsock.ListenShared(dst.IP, port, nil)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ecal: bind registration %v: %w", dst, err)
	}
	send, err = udpsock.BroadcastSender(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
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
