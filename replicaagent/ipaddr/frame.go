package ipaddr

import (
	"net"
	"net/netip"
)

// GARPFrame is the ARP payload that announces a at mac: an ARP request
// whose sender and target protocol addresses are both a, with the target
// hardware address left zero. Linux neighbours take it as an override of
// an existing entry whatever its age. a must be IPv4.
func GARPFrame(mac net.HardwareAddr, a netip.Addr) []byte {
	b := make([]byte, 28)
	b[0], b[1] = 0, 1       // hardware: Ethernet
	b[2], b[3] = 0x08, 0x00 // protocol: IPv4
	b[4], b[5] = 6, 4       // address lengths
	b[6], b[7] = 0, 1       // request
	copy(b[8:14], mac)
	ip4 := a.As4()
	copy(b[14:18], ip4[:]) // sender address
	copy(b[24:28], ip4[:]) // target address (target MAC stays zero)
	return b
}
