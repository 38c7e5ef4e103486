package ipaddr

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
)

// TestGARPFrame: the announcement is an ARP request whose sender and
// target protocol addresses are both the service address, from the
// link's MAC, with the target MAC left zero.
func TestGARPFrame(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x42, 0xac, 0x1f, 0xfa, 0x81}
	b := GARPFrame(mac, netip.MustParseAddr("172.31.250.3"))
	want := []byte{
		0, 1, 8, 0, 6, 4, 0, 1, // Ethernet, IPv4, lengths, request
		0x02, 0x42, 0xac, 0x1f, 0xfa, 0x81, 172, 31, 250, 3, // sender
		0, 0, 0, 0, 0, 0, 172, 31, 250, 3, // target
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("frame\n% x\nwant\n% x", b, want)
	}
}
