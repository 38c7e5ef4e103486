package probe

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/ars-project/ars/fsm"
)

// Timeouts of the query tests: failures that must wait for the deadline use
// a short one; answers that must arrive use a long one, so that a slow race
// build never turns a success into a timeout.
const (
	shortTimeout = fsm.Duration(250 * time.Millisecond)
	longTimeout  = fsm.Duration(10 * time.Second)
)

func TestQuery(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		mode    mode
		spec    fsm.ProbeSpec
		reason  Reason
		rcode   int
		tcp     bool
		errHas  string  // a substring of Err
		alsoIs  []error // besides reason.Err()
		waitTil bool    // the probe must have waited for its deadline
	}{
		{name: "answer", mode: modeAnswer, spec: spec("A", ""), reason: ReasonOK},
		{name: "answer-expect", mode: modeAnswer, spec: spec("A", testAddr), reason: ReasonOK},
		{name: "answer-aaaa-expect", mode: modeAnswer, spec: spec("AAAA", "2001:DB8:0:0::10"), reason: ReasonOK},
		{name: "answer-txt-expect", mode: modeAnswer, spec: spec("TXT", `"ars probe"   "v=1"`), reason: ReasonOK},
		{name: "answer-mx-expect-relative-case", mode: modeAnswer, spec: spec("MX", "10 mail.lab.internal"), reason: ReasonOK},
		{name: "answer-through-cname", mode: modeAnswer, spec: withQuery(spec("A", testAddr), "alias.lab.internal"), reason: ReasonOK},
		{name: "question-echo-other-case", mode: modeUpperQuestion, spec: spec("A", testAddr), reason: ReasonOK},
		{name: "nodata-without-expect", mode: modeAnswer, spec: spec("SRV", ""), reason: ReasonOK},
		{name: "spoofed-id-then-answer", mode: modeSpoofThenAnswer, spec: spec("A", testAddr), reason: ReasonOK},
		{name: "truncated-udp-answered-over-tcp", mode: modeTruncate, spec: spec("A", testAddr), reason: ReasonOK, tcp: true},

		{name: "wrong-address", mode: modeWrongAddr, spec: spec("A", testAddr), reason: ReasonUnexpected, errHas: otherIP},
		{name: "wrong-txt", mode: modeAnswer, spec: spec("TXT", `"ars probe"`), reason: ReasonUnexpected},
		{name: "missing-record", mode: modeAnswer, spec: spec("SRV", "0 0 53 ns.lab.internal."), reason: ReasonMissing},
		{name: "nxdomain", mode: modeNXDomain, spec: spec("A", testAddr), reason: ReasonRcode, rcode: dns.RcodeNameError, errHas: "NXDOMAIN"},
		{name: "nxdomain-name-outside-zone", mode: modeAnswer, spec: withQuery(spec("A", ""), "nowhere.lab.internal."), reason: ReasonRcode, rcode: dns.RcodeNameError},
		{name: "servfail", mode: modeServFail, spec: spec("A", testAddr), reason: ReasonRcode, rcode: dns.RcodeServerFailure, errHas: "SERVFAIL"},
		{name: "refused", mode: modeRefused, spec: spec("A", ""), reason: ReasonRcode, rcode: dns.RcodeRefused, errHas: "REFUSED"},
		{name: "refused-header-only", mode: modeRefusedBare, spec: spec("A", ""), reason: ReasonRcode, rcode: dns.RcodeRefused},

		{name: "drop", mode: modeDrop, spec: short(spec("A", testAddr)), reason: ReasonTimeout, waitTil: true},
		{name: "slower-than-timeout", mode: modeDelay, spec: short(spec("A", testAddr)), reason: ReasonTimeout, waitTil: true},
		{name: "truncated-tcp-drop", mode: modeTruncateTCPDrop, spec: short(spec("A", testAddr)), reason: ReasonTruncated, tcp: true, alsoIs: []error{ErrTimeout}, waitTil: true},
		{name: "wrong-question", mode: modeWrongQuestion, spec: short(spec("A", testAddr)), reason: ReasonQuestion, errHas: "evil.example.", waitTil: true},
		{name: "wrong-id", mode: modeWrongID, spec: short(spec("A", testAddr)), reason: ReasonID, waitTil: true},
		{name: "garbage", mode: modeGarbage, spec: short(spec("A", "")), reason: ReasonMalformed, waitTil: true},
		{name: "not-a-response", mode: modeNoQR, spec: short(spec("A", "")), reason: ReasonMalformed, waitTil: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, tc.mode)
			srv.setDelay(time.Second) // modeDelay: well past the short timeout
			before := time.Now()
			r := Query(context.Background(), srv.Addr, tc.spec)
			checkResult(t, r, tc.reason)
			if r.Start.Before(before) || r.RTT <= 0 {
				t.Errorf("Start %v RTT %v: not stamped", r.Start, r.RTT)
			}
			wantRcode := tc.rcode
			if tc.reason != ReasonRcode && tc.reason != ReasonOK && tc.reason != ReasonUnexpected && tc.reason != ReasonMissing {
				wantRcode = -1
			}
			if r.Rcode != wantRcode {
				t.Errorf("Rcode = %d, want %d", r.Rcode, wantRcode)
			}
			if r.TCP != tc.tcp {
				t.Errorf("TCP = %v, want %v", r.TCP, tc.tcp)
			}
			if tc.errHas != "" && (r.Err == nil || !strings.Contains(r.Err.Error(), tc.errHas)) {
				t.Errorf("Err = %v, want it to mention %q", r.Err, tc.errHas)
			}
			for _, e := range tc.alsoIs {
				if !errors.Is(r.Err, e) {
					t.Errorf("Err = %v, want errors.Is %v", r.Err, e)
				}
			}
			if tc.waitTil && r.RTT < time.Duration(tc.spec.Timeout) {
				t.Errorf("RTT %v: returned before the deadline %v", r.RTT, tc.spec.Timeout)
			}
			if srv.queries.Load() == 0 {
				t.Errorf("the server saw no query")
			}
		})
	}
}

func TestQueryLabels(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		r    Result
		want string
	}{
		{Result{OK: true, Reason: ReasonOK}, "ok"},
		{Result{Reason: ReasonTimeout, Rcode: -1}, "timeout"},
		{Result{Reason: ReasonRcode, Rcode: dns.RcodeNameError}, "rcode_nxdomain"},
		{Result{Reason: ReasonRcode, Rcode: dns.RcodeServerFailure}, "rcode_servfail"},
		{Result{Reason: ReasonRcode, Rcode: dns.RcodeRefused}, "rcode_refused"},
		{Result{Reason: ReasonRcode, Rcode: 3000}, "rcode_other"},
	} {
		if got := tc.r.Label(); got != tc.want {
			t.Errorf("Label(%+v) = %q, want %q", tc.r, got, tc.want)
		}
	}
}

// TestQueryConnectionRefused: nothing listens on the port; the ICMP port
// unreachable ends the probe at once as a network error.
func TestQueryConnectionRefused(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	r := Query(context.Background(), addr, spec("A", testAddr))
	checkResult(t, r, ReasonNetwork)
	if !strings.Contains(r.Err.Error(), "refused") {
		t.Errorf("Err = %v, want connection refused", r.Err)
	}
}

func TestQueryContext(t *testing.T) {
	t.Parallel()
	t.Run("canceled-before", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, modeAnswer)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		checkResult(t, Query(ctx, srv.Addr, spec("A", testAddr)), ReasonCanceled)
		if n := srv.queries.Load(); n != 0 {
			t.Errorf("server saw %d queries, want 0", n)
		}
	})
	t.Run("canceled-while-waiting", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, modeDrop)
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			for srv.queries.Load() == 0 {
				time.Sleep(time.Millisecond) // poll: the query reached the server
			}
			cancel()
		}()
		r := Query(ctx, srv.Addr, withTimeout(spec("A", testAddr), longTimeout))
		checkResult(t, r, ReasonCanceled)
		if r.RTT >= time.Duration(longTimeout) {
			t.Errorf("RTT %v: cancellation did not end the probe", r.RTT)
		}
	})
	t.Run("ctx-deadline-before-timeout", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, modeDrop)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		r := Query(ctx, srv.Addr, withTimeout(spec("A", testAddr), longTimeout))
		checkResult(t, r, ReasonTimeout)
		if r.RTT >= time.Duration(longTimeout) {
			t.Errorf("RTT %v: the context deadline did not bound the probe", r.RTT)
		}
	})
}

// TestQueryFreshSocket: every probe dials its own socket, so the server sees
// a new source port each time.
func TestQueryFreshSocket(t *testing.T) {
	t.Parallel()
	ports := make(chan int, 8)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		ports <- w.RemoteAddr().(*net.UDPAddr).Port
		m := new(dns.Msg)
		m.SetReply(req)
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	seen := map[int]bool{}
	for range 3 {
		checkResult(t, Query(context.Background(), pc.LocalAddr().String(), spec("A", "")), ReasonOK)
		seen[<-ports] = true
	}
	if len(seen) != 3 {
		t.Errorf("3 probes used %d source ports, want 3", len(seen))
	}
}

func TestQueryInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		addr string
		spec fsm.ProbeSpec
	}{
		{"no-query", "127.0.0.1:53", fsm.ProbeSpec{}},
		{"bad-type", "127.0.0.1:53", fsm.ProbeSpec{Query: testName, Type: "NOPE"}},
		{"axfr", "127.0.0.1:53", fsm.ProbeSpec{Query: testName, Type: "AXFR"}},
		{"a-expect-not-ip", "127.0.0.1:53", spec("A", "www")},
		{"a-expect-v6", "127.0.0.1:53", spec("A", testV6)},
		{"aaaa-expect-v4", "127.0.0.1:53", spec("AAAA", testAddr)},
		{"bad-address", "localhost:53", spec("A", "")},
		{"no-port", "127.0.0.1", spec("A", "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Query(context.Background(), tc.addr, tc.spec)
			checkResult(t, r, ReasonInvalid)
		})
	}
}

func TestMatcher(t *testing.T) {
	t.Parallel()
	rr := func(s string) dns.RR {
		t.Helper()
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, tc := range []struct {
		qtype  uint16
		expect string
		rr     dns.RR
		want   bool
	}{
		{dns.TypeA, "192.0.2.10", rr("x. 60 IN A 192.0.2.10"), true},
		{dns.TypeA, "192.0.2.10", rr("x. 60 IN A 192.0.2.11"), false},
		{dns.TypeA, "192.0.2.10", &dns.A{Hdr: dns.RR_Header{Rrtype: dns.TypeA}, A: net.ParseIP("192.0.2.10")}, true}, // 16-byte form
		{dns.TypeAAAA, "2001:db8::10", rr("x. 60 IN AAAA 2001:0db8:0::0010"), true},
		{dns.TypeAAAA, "::ffff:192.0.2.10", rr("x. 60 IN AAAA ::ffff:192.0.2.10"), true},
		{dns.TypeAAAA, "2001:db8::10", rr("x. 60 IN AAAA 2001:db8::11"), false},
		{dns.TypeCNAME, "Target.Example.", rr("x. 60 IN CNAME target.example."), true},
		{dns.TypeCNAME, "target.example", rr("x. 60 IN CNAME target.example."), true},
		{dns.TypeMX, "10 mx.example.", rr("x. 60 IN MX 20 mx.example."), false},
		{dns.TypeTXT, `"Hello"`, rr(`x. 60 IN TXT "hello"`), false}, // TXT is case-sensitive
		{dns.TypeTXT, `hello`, rr(`x. 60 IN TXT "hello"`), true},
		{dns.TypeNS, "ns1.example.", rr("x. 60 IN NS ns1.example."), true},
	} {
		m, err := matcher("x.", tc.qtype, tc.expect)
		if err != nil {
			t.Fatalf("matcher(%s, %q): %v", dns.TypeToString[tc.qtype], tc.expect, err)
		}
		if got := m(tc.rr); got != tc.want {
			t.Errorf("matcher(%s, %q)(%s) = %v, want %v", dns.TypeToString[tc.qtype], tc.expect, tc.rr, got, tc.want)
		}
	}
}

// checkResult asserts the Reason, OK and the error identity of r.
func checkResult(t *testing.T, r Result, want Reason) {
	t.Helper()
	if r.Reason != want {
		t.Fatalf("Reason = %q (err %v), want %q", r.Reason, r.Err, want)
	}
	if r.OK != (want == ReasonOK) {
		t.Errorf("OK = %v for reason %q", r.OK, want)
	}
	if want == ReasonOK {
		if r.Err != nil {
			t.Errorf("Err = %v for a valid answer", r.Err)
		}
		return
	}
	if !errors.Is(r.Err, want.Err()) {
		t.Errorf("Err = %v, want errors.Is %v", r.Err, want.Err())
	}
}

func spec(typ, expect string) fsm.ProbeSpec {
	return fsm.ProbeSpec{Query: "www.lab.internal", Type: typ, Expect: expect, Timeout: longTimeout}
}

func short(s fsm.ProbeSpec) fsm.ProbeSpec { return withTimeout(s, shortTimeout) }

func withTimeout(s fsm.ProbeSpec, d fsm.Duration) fsm.ProbeSpec {
	s.Timeout = d
	return s
}

func withQuery(s fsm.ProbeSpec, q string) fsm.ProbeSpec {
	s.Query = q
	return s
}

// TestQueryHeldAnswer: a query held by a stalled server and answered when it
// resumes, within the timeout, is a valid answer.
func TestQueryHeldAnswer(t *testing.T) {
	t.Parallel()
	srv := startServer(t, modeAnswer)
	srv.stall()
	done := make(chan Result, 1)
	go func() { done <- Query(context.Background(), srv.Addr, spec("A", testAddr)) }()
	waitFor(t, "the query held", func() bool { return srv.queries.Load() == 1 })
	select {
	case r := <-done:
		t.Fatalf("probe ended while its query was held: %+v", r)
	default:
	}
	srv.resume()
	checkResult(t, <-done, ReasonOK)
}
