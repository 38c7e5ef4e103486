package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestParse(t *testing.T) {
	c, err := parse([]string{"-name", "WWW.Lab.Internal", "-a", "192.0.2.11", "-ttl", "5"})
	if err != nil {
		t.Fatal(err)
	}
	if c.name != "www.lab.internal." || c.zone != "lab.internal." || c.addr.String() != "192.0.2.11" || c.ttl != 5 {
		t.Fatalf("parsed %+v", c)
	}
	for _, bad := range [][]string{{"-a", "::1"}, {"-a", "x"}, {"-name", "a.b.", "-zone", "c."}, {"-ttl", "-1"}, {"extra"}} {
		if _, err := parse(bad); err == nil {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
	t.Setenv("DNSD_A", "198.51.100.7")
	if c, err := parse(nil); err != nil || c.addr.String() != "198.51.100.7" {
		t.Fatalf("env: %+v %v", c, err)
	}
}

// TestServe answers over UDP on loopback: the record, NXDOMAIN inside the
// zone, REFUSED outside it.
func TestServe(t *testing.T) {
	pc := serveUDP(t)
	var err error
	cl := &dns.Client{Timeout: 2 * time.Second}
	ask := func(name string) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		var r *dns.Msg
		deadline := time.Now().Add(5 * time.Second)
		for {
			r, _, err = cl.Exchange(m, pc.LocalAddr().String())
			if err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := ask("www.lab.internal.")
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !r.Authoritative || !strings.Contains(r.Answer[0].String(), "192.0.2.10") {
		t.Fatalf("answer %v", r)
	}
	if r := ask("nope.lab.internal."); r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 {
		t.Fatalf("other name in zone: %v", r)
	}
	if r := ask("example.org."); r.Rcode != dns.RcodeRefused {
		t.Fatalf("outside the zone: %v", r)
	}
}

// A wedged server reads queries and answers none; unwedged it answers
// again (the signals only flip this flag, tested through it).
func TestWedged(t *testing.T) {
	pc := serveUDP(t)
	t.Cleanup(func() { wedged.Store(false) })
	var err error
	m := new(dns.Msg)
	m.SetQuestion("www.lab.internal.", dns.TypeA)
	cl := &dns.Client{Timeout: 300 * time.Millisecond}
	wedged.Store(true)
	if _, _, err := cl.Exchange(m, pc.LocalAddr().String()); err == nil {
		t.Fatal("a wedged server answered")
	}
	wedged.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, _, err = cl.Exchange(m, pc.LocalAddr().String()); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("unwedged server: %v", err)
	}
}

// serveUDP serves the default record (A 192.0.2.10) on a loopback UDP port
// for the test.
func serveUDP(t *testing.T) net.PacketConn {
	t.Helper()
	c, err := parse([]string{"-a", "192.0.2.10"})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(c.handler)}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc
}
