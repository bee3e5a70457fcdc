package udpsock

import (
	"net"
	"testing"
	"time"
)

// Two receivers share the loopback broadcast address and port, and each
// gets every datagram a broadcast sender sends there.
func TestSharedReceiversEachGetTheBroadcast(t *testing.T) {
	ip := net.ParseIP("127.255.255.255")
	a, err := ListenShared(ip, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	port := a.LocalAddr().(*net.UDPAddr).Port
	b, err := ListenShared(ip, port, nil)
	if err != nil {
		t.Fatalf("second receiver on port %d: %v", port, err)
	}
	defer b.Close()
	s, err := BroadcastSender(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.WriteToUDP([]byte("hello"), &net.UDPAddr{IP: ip, Port: port}); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*net.UDPConn{"first": a, "second": b} {
		buf := make([]byte, 16)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := c.ReadFromUDP(buf)
		if err != nil || string(buf[:n]) != "hello" {
			t.Errorf("%s receiver: %q, %v; want hello", name, buf[:n], err)
		}
	}
}
