package probe

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The test zone served by testServer.
const (
	testName = "www.lab.internal."
	testAddr = "192.0.2.10"
	testV6   = "2001:db8::10"
	otherIP  = "198.51.100.99"
)

// mode is how a testServer answers.
type mode int32

const (
	modeAnswer          mode = iota // correct answers (NXDOMAIN for names outside the zone)
	modeDrop                        // no reply at all
	modeDelay                       // answer after the server's delay
	modeStall                       // hold every query until resume(), then answer
	modeTruncate                    // UDP: TC bit and no records; TCP: the full answer
	modeTruncateTCPDrop             // UDP: TC bit; TCP: no reply
	modeWrongAddr                   // the A record carries another address
	modeNXDomain                    // rcode NXDOMAIN
	modeServFail                    // rcode SERVFAIL
	modeRefused                     // rcode REFUSED, question echoed
	modeRefusedBare                 // rcode REFUSED, header only (no question)
	modeWrongQuestion               // echoes another name
	modeUpperQuestion               // echoes the name in upper case (still the same name)
	modeWrongID                     // answers with another message ID
	modeSpoofThenAnswer             // a wrong-ID reply first, then the real answer
	modeGarbage                     // right ID, a body that does not parse
	modeNoQR                        // right ID and question, QR bit clear
)

// testServer is an in-process DNS server on 127.0.0.1, UDP and TCP on one
// port, in the manner of CoreDNS's plugin/pkg/dnstest.
type testServer struct {
	Addr    string
	mode    atomic.Int32
	delay   atomic.Int64 // modeDelay
	queries atomic.Int64 // queries received, any transport
	tcpQ    atomic.Int64 // queries received over TCP

	mu      sync.Mutex
	resumed chan struct{} // modeStall: closed by resume
	done    chan struct{} // closed at cleanup: releases held handlers
	servers []*dns.Server
}

func startServer(tb testing.TB, m mode) *testServer {
	tb.Helper()
	s := &testServer{resumed: make(chan struct{}), done: make(chan struct{})}
	s.setMode(m)
	var (
		l   net.Listener
		pc  net.PacketConn
		err error
	)
	for range 20 {
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			tb.Fatalf("listen tcp: %v", err)
		}
		if pc, err = net.ListenPacket("udp", l.Addr().String()); err == nil {
			break
		}
		l.Close() // the UDP port is taken: try another one
	}
	if err != nil {
		tb.Fatalf("listen udp: %v", err)
	}
	s.Addr = l.Addr().String()
	var started sync.WaitGroup
	for _, srv := range []*dns.Server{
		{Listener: l, Handler: s},
		{PacketConn: pc, Handler: s},
	} {
		started.Add(1)
		srv.NotifyStartedFunc = started.Done
		s.servers = append(s.servers, srv)
		go func() { _ = srv.ActivateAndServe() }()
	}
	started.Wait()
	tb.Cleanup(s.close)
	return s
}

func (s *testServer) close() {
	close(s.done)
	for _, srv := range s.servers {
		_ = srv.Shutdown()
	}
}

func (s *testServer) setMode(m mode) { s.mode.Store(int32(m)) }

func (s *testServer) setDelay(d time.Duration) { s.delay.Store(int64(d)) }

// stall makes the server hold queries until resume (modeStall).
func (s *testServer) stall() {
	s.mu.Lock()
	s.resumed = make(chan struct{})
	s.mu.Unlock()
	s.setMode(modeStall)
}

// resume answers the held queries and returns to modeAnswer.
func (s *testServer) resume() {
	s.setMode(modeAnswer)
	s.mu.Lock()
	close(s.resumed)
	s.mu.Unlock()
}

func (s *testServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	udp := w.LocalAddr().Network() == "udp"
	if !udp {
		s.tcpQ.Add(1)
	}
	if len(req.Question) != 1 {
		return
	}
	q := req.Question[0]
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true

	switch mode(s.mode.Load()) {
	case modeDrop:
		return
	case modeDelay:
		select {
		case <-time.After(time.Duration(s.delay.Load())):
		case <-s.done:
			return
		}
	case modeStall:
		s.mu.Lock()
		resumed := s.resumed
		s.mu.Unlock()
		select {
		case <-resumed:
		case <-s.done:
			return
		}
	case modeTruncate, modeTruncateTCPDrop:
		if udp {
			m.Truncated = true
			_ = w.WriteMsg(m)
			return
		}
		if mode(s.mode.Load()) == modeTruncateTCPDrop {
			return
		}
	case modeNXDomain:
		m.Rcode = dns.RcodeNameError
		_ = w.WriteMsg(m)
		return
	case modeServFail:
		m.Rcode = dns.RcodeServerFailure
		_ = w.WriteMsg(m)
		return
	case modeRefused:
		m.Rcode = dns.RcodeRefused
		_ = w.WriteMsg(m)
		return
	case modeRefusedBare:
		m.Rcode = dns.RcodeRefused
		m.Question = nil
		_ = w.WriteMsg(m)
		return
	case modeWrongQuestion:
		m.Question[0].Name = "evil.example."
	case modeUpperQuestion:
		m.Question[0].Name = "WWW.LAB.Internal."
	case modeWrongID:
		m.Id = req.Id + 1
	case modeSpoofThenAnswer:
		spoof := m.Copy()
		spoof.Id = req.Id + 1
		s.answer(spoof, q, otherIP)
		_ = w.WriteMsg(spoof)
	case modeGarbage:
		b := []byte{byte(req.Id >> 8), byte(req.Id), 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 3, 'w', 'w'}
		_, _ = w.Write(b)
		return
	case modeNoQR:
		m.Response = false
	}
	addr := testAddr
	if mode(s.mode.Load()) == modeWrongAddr {
		addr = otherIP
	}
	s.answer(m, q, addr)
	_ = w.WriteMsg(m)
}

// answer fills m with the zone's records for q.
func (s *testServer) answer(m *dns.Msg, q dns.Question, addr string) {
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: 60}
	}
	switch dns.CanonicalName(q.Name) {
	case testName:
		switch q.Qtype {
		case dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: net.ParseIP(addr).To4()})
		case dns.TypeAAAA:
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: net.ParseIP(testV6)})
		case dns.TypeTXT:
			m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: []string{"ars probe", "v=1"}})
		case dns.TypeMX:
			m.Answer = append(m.Answer, &dns.MX{Hdr: hdr(dns.TypeMX), Preference: 10, Mx: "Mail.Lab.Internal."})
		}
		// other types: NOERROR without records (NODATA)
	case "alias.lab.internal.":
		m.Answer = append(m.Answer, &dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: testName})
		if q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: testName, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   net.ParseIP(addr).To4(),
			})
		}
	default:
		m.Rcode = dns.RcodeNameError
	}
}
