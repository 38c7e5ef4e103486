package main

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// The socket tables as the kernel prints them (x86: an IPv4 address is
// its four bytes as a little-endian number); 10.253.53.53 is 3535FD0A.
const (
	udpHeader = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n"
	udpOther  = "  1: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 0\n"
	udpBound  = "  2: 3535FD0A:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2 2 0000000000000000 0\n"
	udpAny    = "  3: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3 2 0000000000000000 0\n"
	udpPort   = "  4: 3535FD0A:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4 2 0000000000000000 0\n"
	udp6Any   = "  5: 00000000000000000000000000000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 5 2 0000000000000000 0\n"
)

func TestServed(t *testing.T) {
	a := netip.MustParseAddr("10.253.53.53")
	for _, tc := range []struct {
		name     string
		v4, v6   string
		port     uint16
		isServed bool
	}{
		{"nothing", udpHeader, udpHeader, 53, false},
		{"another address", udpHeader + udpOther, "", 53, false},
		{"another port", udpHeader + udpPort, "", 53, false},
		{"the address", udpHeader + udpOther + udpBound, "", 53, true},
		{"the port of the other row", udpHeader + udpPort, "", 5353, true},
		{"IPv4 wildcard", udpHeader + udpAny, "", 53, true},
		{"IPv6 wildcard", udpHeader, udpHeader + udp6Any, 53, true},
		{"header only matches nothing", udpBound, "", 53, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := served([]byte(tc.v4), []byte(tc.v6), a, tc.port); got != tc.isServed {
				t.Fatalf("served = %v, want %v", got, tc.isServed)
			}
		})
	}
}

// waitServed returns once a socket is bound to the address and port, not
// before: here a socket bound on loopback 50 ms after the wait began.
func TestWaitServedWaitsForTheSocket(t *testing.T) {
	probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(probe.LocalAddr().(*net.UDPAddr).Port)
	probe.Close() // a port nobody holds now
	lo := netip.MustParseAddr("127.0.0.1")
	if waitServed(lo, port, 0) {
		t.Skipf("port %d taken again before the test could use it", port)
	}
	var binding atomic.Bool // set just before the bind
	done := make(chan *net.UDPConn, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		binding.Store(true)
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
		if err != nil {
			done <- nil
			return
		}
		done <- c
	}()
	ok := waitServed(lo, port, 10*time.Second)
	wasBound := binding.Load()
	c := <-done
	if c == nil {
		t.Skipf("port %d taken before the test could bind it", port)
	}
	defer c.Close()
	if !ok || !wasBound {
		t.Fatalf("waitServed = %v with the socket bound %v; want true after the bind", ok, wasBound)
	}
	if !waitServed(lo, 0, 0) {
		t.Fatal("port 0 (no port known) must not wait")
	}
}
