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
	c, err := parse([]string{"-a", "192.0.2.10"})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", c.handler)
	srv := &dns.Server{PacketConn: pc, Handler: mux}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })

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
