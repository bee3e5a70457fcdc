package registration

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Socket options, and why:
//   - Receivers bind the destination address itself (127.255.255.255 or the
//     group) rather than 0.0.0.0: they then get only registration traffic,
//     never unicast from the network.
//   - SO_REUSEADDR lets every process bind the same address and port; Linux
//     hands every broadcast and multicast datagram to each such socket.
//     (SO_REUSEPORT would do too but requires the same user for all; with
//     it unicast is load-balanced, not copied.) A process that binds the
//     port WITHOUT SO_REUSEADDR first locks everyone else out (EADDRINUSE).
//   - SO_RCVBUF is raised so a burst of re-announcements fits.
//   - Network mode: IP_MULTICAST_ALL off (else a socket gets every group
//     joined by anyone on the host for its port), IP_MULTICAST_LOOP on (peers
//     on this host receive too).
const rcvBuf = 4 << 20

func setInt(c syscall.RawConn, level, opt, v int) error {
	return control(c, func(fd int) error { return unix.SetsockoptInt(fd, level, opt, v) })
}

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

	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		if err := setInt(c, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return fmt.Errorf("SO_REUSEADDR: %w", err)
		}
		_ = setInt(c, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf) // capped by net.core.rmem_max
		if cfg.Mode == ModeNetwork {
			if err := setInt(c, unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0); err != nil {
				return fmt.Errorf("IP_MULTICAST_ALL: %w", err)
			}
		}
		return nil
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", net.JoinHostPort(dstIP.String(), strconv.Itoa(cfg.Port)))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("registration: bind %v: %w", dst, err)
	}
	recv = pc.(*net.UDPConn)
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

// control runs a setsockopt-style call on the socket's descriptor.
func control(c syscall.RawConn, fn func(fd int) error) error {
	var serr error
	if err := c.Control(func(fd uintptr) { serr = fn(int(fd)) }); err != nil {
		return err
	}
	return serr
}

func join(recv *net.UDPConn, group net.IP, ifindex int) error {
	rc, err := recv.SyscallConn()
	if err != nil {
		return err
	}
	mreq := &unix.IPMreqn{Ifindex: int32(ifindex)}
	copy(mreq.Multiaddr[:], group)
	if err := control(rc, func(fd int) error {
		return unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq)
	}); err != nil {
		return fmt.Errorf("registration: join group %v: %w", group, err)
	}
	return nil
}

func openSend(cfg Config, ifindex int) (*net.UDPConn, error) {
	send, err := net.ListenUDP("udp4", nil)
	if err != nil {
		return nil, fmt.Errorf("registration: send socket: %w", err)
	}
	sc, err := send.SyscallConn()
	if err == nil {
		if cfg.Mode == ModeLocal {
			if err = setInt(sc, unix.SOL_SOCKET, unix.SO_BROADCAST, 1); err == nil {
				err = setInt(sc, unix.IPPROTO_IP, unix.IP_TTL, 1)
			}
		} else {
			if err = setInt(sc, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, cfg.TTL); err == nil {
				err = setInt(sc, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 1)
			}
			if err == nil && ifindex != 0 {
				err = control(sc, func(fd int) error {
					return unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifindex)})
				})
			}
		}
	}
	if err != nil {
		send.Close()
		return nil, fmt.Errorf("registration: send socket options: %w", err)
	}
	return send, nil
}
