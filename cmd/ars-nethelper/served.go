package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// DefaultServeWait bounds how long the address is held back from being
// announced while no UDP socket is bound to it on the service port.
const DefaultServeWait = 300 * time.Millisecond

// waitServed waits, at most bound, until a UDP socket of this network
// namespace is bound to a (or to a wildcard address) on port, polling the
// kernel's socket table every millisecond. It reports whether one was.
//
// Why: the address was just added. A server that binds every address on
// its own (BIND 9 does, and picks a new address up from the kernel's
// notifications a few milliseconds later) is not yet listening on it; a
// query sent in that window gets an ICMP port unreachable and is lost.
// Announcing only once the address is served moves the clients after the
// server can answer them (seen in the lab: one query lost in one exploit
// switch of ten to a BIND 9 container). A server on the wildcard address
// is found at the first look. After bound the address is announced
// anyway: a server that never binds it answers nobody either way, and the
// switch's verification finds that.
func waitServed(a netip.Addr, port uint16, bound time.Duration) bool {
	if port == 0 {
		return true
	}
	deadline := time.Now().Add(bound)
	for {
		v4, err4 := os.ReadFile("/proc/net/udp")
		v6, _ := os.ReadFile("/proc/net/udp6") // absent without IPv6
		if err4 == nil && served(v4, v6, a, port) {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// served reports whether the socket tables (the contents of
// /proc/net/udp and /proc/net/udp6) hold a socket bound to a, or to the
// IPv4 or IPv6 wildcard address, on port. An IPv6 wildcard socket takes
// IPv4 datagrams too unless it is IPv6-only, which the table does not
// say; it counts.
func served(udp4, udp6 []byte, a netip.Addr, port uint16) bool {
	ip := a.As4()
	want := fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(ip[:]), port)
	any4 := fmt.Sprintf("%08X:%04X", 0, port)
	any6 := fmt.Sprintf("%032X:%04X", 0, port)
	return hasLocal(udp4, want, any4) || hasLocal(udp6, any6)
}

// hasLocal reports whether a line of a /proc/net/udp-style table has one
// of locals as its local address (the second field).
func hasLocal(table []byte, locals ...string) bool {
	sc := bufio.NewScanner(bytes.NewReader(table))
	for first := true; sc.Scan(); first = false {
		if first {
			continue // the header
		}
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		for _, l := range locals {
			if strings.EqualFold(f[1], l) {
				return true
			}
		}
	}
	return false
}
