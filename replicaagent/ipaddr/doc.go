// Package ipaddr moves a service address on and off a Linux link and
// announces it: the address operations that the replica agent
// (package replicaagent) and the containers' address helper
// (cmd/ars-nethelper) both perform. Everything here acts on the network
// namespace of the calling thread through rtnetlink and an AF_PACKET
// socket, so it needs CAP_NET_ADMIN (addresses, routes) and CAP_NET_RAW
// (announcements). Only IPv4 is implemented: an IPv6 address is refused
// with ErrIPv6, since announcing one needs an unsolicited neighbour
// advertisement this package does not send yet.
//
// On other operating systems every operation returns ErrUnsupportedOS.
package ipaddr

import "errors"

var (
	// ErrUnsupportedOS: this build has no implementation for the
	// operating system it runs on.
	ErrUnsupportedOS = errors.New("address handover is implemented for Linux only")
	// ErrIPv6: the address is an IPv6 address.
	ErrIPv6 = errors.New("IPv6 service addresses are not supported (no unsolicited neighbour advertisement yet)")
	// ErrNoLink: no link matches (no such name, or no link has an
	// address in the subnet).
	ErrNoLink = errors.New("no such link")
)
