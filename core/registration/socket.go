package registration

import (
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/shmfs/shmfs/internal/udpsock"
)

// Socket options: those of every shared discovery socket
// (internal/udpsock: bound to the destination address, SO_REUSEADDR, a
// large receive buffer, broadcast senders with TTL 1), and in network mode
// IP_MULTICAST_ALL off (else a socket gets every group joined by anyone on
// the host for its port) and IP_MULTICAST_LOOP on (peers on this host
// receive too).

// openSockets returns the receiving and sending sockets and the destination.
func openSockets(cfg Config) (recv, send *net.UDPConn, dst *net.UDPAddr, err error) {
	dstIP := net.ParseIP(LocalBroadcast).To4()
	var ifindex int
	if cfg.Mode == ModeNetwork {
		dstIP = net.ParseIP(cfg.Group).To4()
		if cfg.Interface != "" {
			ifc, err := net.InterfaceByName(cfg.Interface)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("registration: interface %q: %w", cfg.Interface, err)
			}
			ifindex = ifc.Index
		}
	}
	dst = &net.UDPAddr{IP: dstIP, Port: cfg.Port}

	var multicastOpts func(syscall.RawConn) error
	if cfg.Mode == ModeNetwork {
		multicastOpts = func(c syscall.RawConn) error {
			if err := udpsock.SetInt(c, unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0); err != nil {
				return fmt.Errorf("IP_MULTICAST_ALL: %w", err)
			}
			return nil
		}
	}
	recv, err = udpsock.ListenShared(dstIP, cfg.Port, multicastOpts)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("registration: bind %v: %w", dst, err)
	}
	if send, err = openSend(cfg, ifindex); err == nil && cfg.Mode == ModeNetwork {
		err = join(recv, dstIP, ifindex)
	}
	if err != nil {
		recv.Close()
		if send != nil {
			send.Close()
		}
		return nil, nil, nil, err
	}
	return recv, send, dst, nil
}

func join(recv *net.UDPConn, group net.IP, ifindex int) error {
	rc, err := recv.SyscallConn()
	if err != nil {
		return err
	}
	mreq := &unix.IPMreqn{Ifindex: int32(ifindex)}
	copy(mreq.Multiaddr[:], group)
	if err := udpsock.Control(rc, func(fd int) error {
		return unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq)
	}); err != nil {
		return fmt.Errorf("registration: join group %v: %w", group, err)
	}
	return nil
}

func openSend(cfg Config, ifindex int) (*net.UDPConn, error) {
	if cfg.Mode == ModeLocal {
		send, err := udpsock.BroadcastSender(nil)
		if err != nil {
			return nil, fmt.Errorf("registration: send socket: %w", err)
		}
		return send, nil
	}
	send, err := net.ListenUDP("udp4", nil)
	if err != nil {
		return nil, fmt.Errorf("registration: send socket: %w", err)
	}
	sc, err := send.SyscallConn()
	if err == nil {
		if err = udpsock.SetInt(sc, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, cfg.TTL); err == nil {
			err = udpsock.SetInt(sc, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 1)
		}
		if err == nil && ifindex != 0 {
			err = udpsock.Control(sc, func(fd int) error {
				return unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifindex)})
			})
		}
	}
	if err != nil {
		send.Close()
		return nil, fmt.Errorf("registration: send socket options: %w", err)
	}
	return send, nil
}
