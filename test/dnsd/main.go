// Command dnsd is a tiny authoritative DNS responder for tests and the lab:
// it answers one A record (default www.lab.internal. A 192.0.2.10) over UDP
// and TCP, NXDOMAIN for other names of its zone and REFUSED for names
// outside it. It is built statically (CGO_ENABLED=0) and imported into the
// Docker engine as a one-file image (see images/build.sh and the Docker
// driver's tests), so it needs no registry and no base image.
//
// Flags (each also settable through the environment variable in brackets):
//
//	-listen ADDR   address to listen on, UDP and TCP [DNSD_LISTEN] (default ":53")
//	-name NAME     the record's owner name [DNSD_NAME] (default "www.lab.internal.")
//	-a IP          the record's IPv4 address [DNSD_A] (default "192.0.2.10")
//	-zone ZONE     the zone it is authoritative for [DNSD_ZONE] (default: NAME's parent)
//	-ttl SECONDS   the record's TTL [DNSD_TTL] (default 60)
//
// It exits 0 on SIGTERM or SIGINT, non-zero when it cannot listen.
// SIGUSR1 wedges it: it keeps running and reading queries but answers none
// (a hang bug, as a DoS leaves a server); SIGUSR2 unwedges it. Tests and
// the lab inject a DoS this way without the platform seeing any change.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "dnsd:", err)
		os.Exit(1)
	}
}

// config is what dnsd serves.
type config struct {
	listen string
	name   string
	zone   string
	addr   netip.Addr
	ttl    uint32
}

func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func parse(args []string) (config, error) {
	fs := flag.NewFlagSet("dnsd", flag.ContinueOnError)
	listen := fs.String("listen", env("DNSD_LISTEN", ":53"), "address to listen on (UDP and TCP)")
	name := fs.String("name", env("DNSD_NAME", "www.lab.internal."), "owner name of the A record")
	a := fs.String("a", env("DNSD_A", "192.0.2.10"), "IPv4 address of the A record")
	zone := fs.String("zone", env("DNSD_ZONE", ""), "zone served authoritatively (default: the name's parent)")
	ttl := fs.String("ttl", env("DNSD_TTL", "60"), "TTL of the record in seconds")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() != 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c := config{listen: *listen, name: dns.CanonicalName(*name)}
	if _, ok := dns.IsDomainName(c.name); !ok || c.name == "." {
		return config{}, fmt.Errorf("-name %q is not a domain name", *name)
	}
	ip, err := netip.ParseAddr(*a)
	if err != nil || !ip.Is4() {
		return config{}, fmt.Errorf("-a %q is not an IPv4 address", *a)
	}
	c.addr = ip
	t, err := strconv.ParseUint(*ttl, 10, 31)
	if err != nil {
		return config{}, fmt.Errorf("-ttl %q: %w", *ttl, err)
	}
	c.ttl = uint32(t)
	c.zone = dns.CanonicalName(*zone)
	if *zone == "" {
		labels := dns.SplitDomainName(c.name)
		c.zone = dns.Fqdn(strings.Join(labels[1:], "."))
		if len(labels) == 1 {
			c.zone = "."
		}
	}
	if !dns.IsSubDomain(c.zone, c.name) {
		return config{}, fmt.Errorf("-name %s is not inside -zone %s", c.name, c.zone)
	}
	return c, nil
}

// wedged is set while the server answers nothing (SIGUSR1 .. SIGUSR2).
var wedged atomic.Bool

// handler answers one query.
func (c config) handler(w dns.ResponseWriter, q *dns.Msg) {
	if wedged.Load() {
		return
	}
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	switch {
	case len(q.Question) != 1 || q.Opcode != dns.OpcodeQuery:
		m.SetRcode(q, dns.RcodeNotImplemented)
	case !dns.IsSubDomain(c.zone, dns.CanonicalName(q.Question[0].Name)):
		m.Authoritative = false
		m.SetRcode(q, dns.RcodeRefused)
	case dns.CanonicalName(q.Question[0].Name) != c.name:
		m.SetRcode(q, dns.RcodeNameError)
		m.Ns = []dns.RR{c.soa()}
	case q.Question[0].Qtype == dns.TypeA || q.Question[0].Qtype == dns.TypeANY:
		m.Answer = []dns.RR{&dns.A{
			Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: c.ttl},
			A:   net.IP(c.addr.AsSlice()),
		}}
	default: // the name exists, no data of that type
		m.Ns = []dns.RR{c.soa()}
	}
	_ = w.WriteMsg(m)
}

func (c config) soa() dns.RR {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: c.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: c.ttl},
		Ns:      "ns." + strings.TrimPrefix(c.zone, "."),
		Mbox:    "hostmaster." + strings.TrimPrefix(c.zone, "."),
		Serial:  1,
		Refresh: 3600, Retry: 600, Expire: 86400, Minttl: c.ttl,
	}
}

func run(args []string) error {
	c, err := parse(args)
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", c.listen)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		pc.Close()
		return err
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", c.handler)
	servers := []*dns.Server{
		{PacketConn: pc, Handler: mux},
		{Listener: ln, Handler: mux, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second},
	}
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errc <- s.ActivateAndServe() }()
	}
	log.Printf("dnsd: serving %s A %s (zone %s) on %s udp+tcp", c.name, c.addr, c.zone, c.listen)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	wedge := make(chan os.Signal, 4)
	signal.Notify(wedge, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(wedge)
	go func() {
		for sig := range wedge {
			wedged.Store(sig == syscall.SIGUSR1)
			log.Printf("dnsd: wedged=%t (%s)", wedged.Load(), sig)
		}
	}()
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.ShutdownContext(sctx)
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}
