package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/ars-project/ars/fsm"
)

// udpBufSize is the EDNS0 UDP payload size the probe advertises (the DNS
// flag day 2020 value); readBufSize the receive buffer for UDP replies,
// larger so that a server ignoring the advertised size is still read whole.
const (
	udpBufSize  = 1232
	readBufSize = 4096
)

// maxShownRecords bounds how many records an unexpected-answer error lists.
const maxShownRecords = 4

// Query sends one probe to the DNS server at addr ("IP:port") and validates
// the answer against spec, which is normalized first (fsm defaults).
//
// Every call uses fresh sockets, so a socket wedged by an earlier probe or by
// an attack cannot stick. The question goes over UDP first; a truncated
// answer (TC bit) is retried over TCP within the same deadline. The probe
// ends at spec.Timeout after it started, or earlier when ctx ends.
//
// The answer is valid when its message ID and question (name, type, class)
// match the query, its rcode is NOERROR and, when spec.Expect is set, the
// answer section holds a record of the asked type whose rdata equals Expect
// (A and AAAA compare addresses; other types compare rdata, domain names
// case-insensitively). Anything else is a failure with a typed Reason.
//
// Over UDP, a reply with a wrong message ID, a wrong question, or that does
// not parse is not taken as the answer: the probe keeps listening until the
// deadline (a spoofed packet cannot mask the real answer), and reports the
// last such reply's Reason instead of ReasonTimeout if no valid one came.
func Query(ctx context.Context, addr string, spec fsm.ProbeSpec) Result {
	start := time.Now()
	r := query(ctx, addr, spec, start)
	r.Start = start
	r.RTT = time.Since(start)
	return r
}

func query(ctx context.Context, addr string, spec fsm.ProbeSpec, start time.Time) Result {
	spec = normalize(spec)
	q, err := compile(spec)
	if err != nil {
		return fail(ReasonInvalid, -1, err)
	}
	if _, err := netip.ParseAddrPort(addr); err != nil {
		return fail(ReasonInvalid, -1, fmt.Errorf("%w: address %q: %w", ErrInvalidSpec, addr, err))
	}
	deadline := start.Add(time.Duration(spec.Timeout))
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := ctx.Err(); err != nil {
		return ctxFail(ctx, err)
	}

	m := new(dns.Msg)
	m.SetQuestion(q.name, q.qtype)
	m.RecursionDesired = true
	m.SetEdns0(udpBufSize, false)

	reply, reason, err := exchange(ctx, "udp", addr, m, deadline)
	if reason != "" {
		return fail(reason, -1, err)
	}
	tcp := false
	if reply.Truncated {
		reply, reason, err = exchange(ctx, "tcp", addr, m, deadline)
		switch reason {
		case "":
			if reply.Truncated {
				r := fail(ReasonTruncated, reply.Rcode, fmt.Errorf("%w: TCP answer truncated too", ErrTruncated))
				r.TCP = true
				return r
			}
		case ReasonCanceled, ReasonID, ReasonQuestion:
			// Not a transport failure: report what it is.
			r := fail(reason, -1, err)
			r.TCP = true
			return r
		default:
			r := fail(ReasonTruncated, -1, fmt.Errorf("%w: TCP retry: %w", ErrTruncated, err))
			r.TCP = true
			return r
		}
		tcp = true
	}
	r := q.check(reply)
	r.TCP = tcp
	return r
}

// fail builds a failed Result.
func fail(reason Reason, rcode int, err error) Result {
	return Result{Reason: reason, Rcode: rcode, Err: err}
}

// ctxFail classifies a failure caused by the end of ctx.
func ctxFail(ctx context.Context, err error) Result {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fail(ReasonCanceled, -1, fmt.Errorf("%w: %w", ErrCanceled, err))
	}
	return fail(ReasonTimeout, -1, fmt.Errorf("%w: %w", ErrTimeout, err))
}

// normalize applies the fsm defaults to a probe spec.
func normalize(spec fsm.ProbeSpec) fsm.ProbeSpec {
	s := fsm.ServiceSpec{Probe: spec}
	s.Normalize()
	return s.Probe
}

// compiled is a probe question with its answer check.
type compiled struct {
	name    string
	qtype   uint16
	typ     string
	expect  string
	matches func(dns.RR) bool // nil when spec.Expect is empty
}

// notAQuestion are RR types that cannot be a probe question (as fsm rejects).
var notAQuestion = map[uint16]bool{
	dns.TypeNone: true, dns.TypeReserved: true, dns.TypeOPT: true,
	dns.TypeAXFR: true, dns.TypeIXFR: true, dns.TypeTSIG: true, dns.TypeTKEY: true,
	dns.TypeMAILA: true, dns.TypeMAILB: true,
}

// compile checks the parts of spec that one query needs.
func compile(spec fsm.ProbeSpec) (*compiled, error) {
	if spec.Query == "" {
		return nil, fmt.Errorf("%w: query: required", ErrInvalidSpec)
	}
	if _, ok := dns.IsDomainName(spec.Query); !ok {
		return nil, fmt.Errorf("%w: query: %q is not a domain name", ErrInvalidSpec, spec.Query)
	}
	qtype, ok := dns.StringToType[spec.Type]
	if !ok || notAQuestion[qtype] {
		return nil, fmt.Errorf("%w: type: %q cannot be a probe question", ErrInvalidSpec, spec.Type)
	}
	if spec.Timeout <= 0 {
		return nil, fmt.Errorf("%w: timeout: %s must be > 0", ErrInvalidSpec, spec.Timeout)
	}
	q := &compiled{name: spec.Query, qtype: qtype, typ: spec.Type, expect: spec.Expect}
	if spec.Expect != "" {
		m, err := matcher(q.name, qtype, spec.Expect)
		if err != nil {
			return nil, fmt.Errorf("%w: expect: %w", ErrInvalidSpec, err)
		}
		q.matches = m
	}
	return q, nil
}

// matcher returns a function that reports whether an answer record of type
// qtype carries the expected rdata.
func matcher(qname string, qtype uint16, expect string) (func(dns.RR) bool, error) {
	switch qtype {
	case dns.TypeA, dns.TypeAAAA:
		want, err := netip.ParseAddr(expect)
		if err != nil || want.Zone() != "" {
			return nil, fmt.Errorf("%q is not an IP address", expect)
		}
		if (qtype == dns.TypeA) != want.Is4() {
			return nil, fmt.Errorf("%q is not an address of type %s", expect, dns.TypeToString[qtype])
		}
		return func(rr dns.RR) bool {
			var ip net.IP
			switch v := rr.(type) {
			case *dns.A:
				ip = v.A
			case *dns.AAAA:
				ip = v.AAAA
			default:
				return false
			}
			got, ok := netip.AddrFromSlice(ip)
			if !ok {
				return false
			}
			if qtype == dns.TypeA {
				got = got.Unmap()
			}
			return got == want
		}, nil
	}
	// Other types: parse Expect as the record's rdata, so that spelling
	// differences (relative names, case of names, spacing) do not matter,
	// and compare with dns.IsDuplicate. Rdata that does not parse for the
	// type is compared as whitespace-normalised text.
	exp, err := dns.NewRR(fmt.Sprintf("%s 0 IN %s %s", qname, dns.TypeToString[qtype], expect))
	if err == nil && exp != nil && exp.Header().Rrtype == qtype {
		return func(rr dns.RR) bool {
			c := dns.Copy(rr)
			h := c.Header()
			h.Name, h.Class, h.Ttl = qname, dns.ClassINET, 0
			return dns.IsDuplicate(c, exp)
		}, nil
	}
	want := strings.Join(strings.Fields(expect), " ")
	return func(rr dns.RR) bool { return rdataText(rr) == want }, nil
}

// rdataText is the presentation form of rr's rdata, whitespace-normalised.
func rdataText(rr dns.RR) string {
	s := strings.TrimPrefix(rr.String(), rr.Header().String())
	return strings.Join(strings.Fields(s), " ")
}

// check validates the rcode and the expected record of an answer whose ID
// and question already matched.
func (q *compiled) check(reply *dns.Msg) Result {
	if reply.Rcode != dns.RcodeSuccess {
		return fail(ReasonRcode, reply.Rcode, fmt.Errorf("%w: %s", ErrRcode, rcodeName(reply.Rcode)))
	}
	if q.matches == nil {
		return Result{OK: true, Reason: ReasonOK, Rcode: reply.Rcode}
	}
	var got []string
	for _, rr := range reply.Answer {
		if rr.Header().Rrtype != q.qtype || rr.Header().Class != dns.ClassINET {
			continue
		}
		if q.matches(rr) {
			return Result{OK: true, Reason: ReasonOK, Rcode: reply.Rcode}
		}
		got = append(got, rdataText(rr))
	}
	if len(got) == 0 {
		return fail(ReasonMissing, reply.Rcode, fmt.Errorf("%w: no %s record in the answer (%d records) for %s, want %q",
			ErrMissing, q.typ, len(reply.Answer), q.name, q.expect))
	}
	more := ""
	if len(got) > maxShownRecords {
		more = fmt.Sprintf(" and %d more", len(got)-maxShownRecords)
		got = got[:maxShownRecords]
	}
	return fail(ReasonUnexpected, reply.Rcode, fmt.Errorf("%w: %s %s is %q%s, want %q",
		ErrUnexpected, q.name, q.typ, strings.Join(got, `", "`), more, q.expect))
}

// pastDeadline unblocks a connection's pending I/O when ctx ends.
var pastDeadline = time.Unix(1, 0)

// exchange sends m over a fresh connection and returns the first reply that
// is a response to m (ID and question match). On failure reply is nil and
// reason says why.
func exchange(ctx context.Context, network, addr string, m *dns.Msg, deadline time.Time) (reply *dns.Msg, reason Reason, err error) {
	d := net.Dialer{Deadline: deadline}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, netReason(ctx, err), netErr(ctx, network, "dial", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(pastDeadline) })
	defer stop()
	if err := c.SetDeadline(deadline); err != nil {
		return nil, ReasonNetwork, fmt.Errorf("%w: %s: %w", ErrNetwork, network, err)
	}
	if ctx.Err() != nil { // AfterFunc may have run before SetDeadline
		_ = c.SetDeadline(pastDeadline)
	}
	co := &dns.Conn{Conn: c, UDPSize: readBufSize}
	if err := co.WriteMsg(m); err != nil {
		return nil, netReason(ctx, err), netErr(ctx, network, "send", err)
	}
	udp := network == "udp"
	var pending Reason // a UDP reply that was not the answer
	var pendingErr error
	for {
		raw, err := co.ReadMsgHeader(nil)
		if err != nil {
			if errors.Is(err, dns.ErrShortRead) {
				reason, err = ReasonMalformed, fmt.Errorf("%w: %s reply of fewer than 12 bytes", ErrMalformed, network)
			} else {
				reason, err = netReason(ctx, err), netErr(ctx, network, "receive", err)
				if reason == ReasonTimeout && pending != "" {
					return nil, pending, pendingErr
				}
				return nil, reason, err
			}
		} else {
			reply, reason, err = match(m, raw)
			if reason == "" {
				return reply, "", nil
			}
		}
		if !udp {
			return nil, reason, err
		}
		pending, pendingErr = reason, err
	}
}

// match decides whether raw is the response to m.
func match(m *dns.Msg, raw []byte) (*dns.Msg, Reason, error) {
	if len(raw) < 12 {
		return nil, ReasonMalformed, fmt.Errorf("%w: reply of %d bytes", ErrMalformed, len(raw))
	}
	if id := binary.BigEndian.Uint16(raw); id != m.Id {
		return nil, ReasonID, fmt.Errorf("%w: got %d, want %d", ErrID, id, m.Id)
	}
	reply := new(dns.Msg)
	if err := reply.Unpack(raw); err != nil {
		// A truncated UDP answer may be cut inside a record; its header
		// (parsed before the error) is enough to retry over TCP.
		if !reply.Truncated {
			return nil, ReasonMalformed, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	}
	if !reply.Response || reply.Opcode != dns.OpcodeQuery {
		return nil, ReasonMalformed, fmt.Errorf("%w: not a response to a query (QR=%t, opcode %d)",
			ErrMalformed, reply.Response, reply.Opcode)
	}
	if len(reply.Question) == 0 && (reply.Rcode != dns.RcodeSuccess || reply.Truncated) {
		// Some servers send just the header with an error rcode (e.g.
		// REFUSED), or a bare TC answer; the rcode or the TCP retry decides.
		return reply, "", nil
	}
	want := m.Question[0]
	if len(reply.Question) != 1 {
		return nil, ReasonQuestion, fmt.Errorf("%w: %d questions in the reply, want 1", ErrQuestion, len(reply.Question))
	}
	got := reply.Question[0]
	if dns.CanonicalName(got.Name) != dns.CanonicalName(want.Name) || got.Qtype != want.Qtype || got.Qclass != want.Qclass {
		return nil, ReasonQuestion, fmt.Errorf("%w: got %q, want %q", ErrQuestion, questionString(got), questionString(want))
	}
	return reply, "", nil
}

func questionString(q dns.Question) string {
	return fmt.Sprintf("%s %s %s", q.Name, dns.ClassToString[q.Qclass], dns.TypeToString[q.Qtype])
}

// netReason classifies an I/O error.
func netReason(ctx context.Context, err error) Reason {
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return ReasonCanceled
		}
		return ReasonTimeout
	}
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return ReasonTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ReasonTimeout
	}
	return ReasonNetwork
}

// netErr wraps an I/O error with the sentinel of its Reason.
func netErr(ctx context.Context, network, op string, err error) error {
	return fmt.Errorf("%w: %s %s: %w", netReason(ctx, err).Err(), network, op, err)
}
