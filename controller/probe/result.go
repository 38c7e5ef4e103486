package probe

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Reason classifies the outcome of one probe. Every failed Result carries
// exactly one Reason, and its Err wraps the Reason's sentinel error.
type Reason string

// Probe outcomes.
const (
	ReasonOK         Reason = "ok"                // a valid answer
	ReasonTimeout    Reason = "timeout"           // no valid answer before the deadline
	ReasonNetwork    Reason = "network"           // dial, send or receive failed (e.g. ICMP port unreachable)
	ReasonTruncated  Reason = "truncated"         // the UDP answer was truncated and the TCP retry failed
	ReasonRcode      Reason = "rcode"             // the answer's rcode is not NOERROR (Result.Rcode names it)
	ReasonQuestion   Reason = "question_mismatch" // the answer does not echo the question (name, type, class)
	ReasonID         Reason = "id_mismatch"       // the answer's message ID is not the query's
	ReasonMalformed  Reason = "malformed"         // the reply does not parse or is not a response to a query
	ReasonUnexpected Reason = "unexpected_answer" // records of the asked type, none equal to spec.Expect
	ReasonMissing    Reason = "missing_record"    // no record of the asked type although spec.Expect is set
	ReasonCanceled   Reason = "canceled"          // the caller's context was cancelled (not a verdict on the service)
	ReasonInvalid    Reason = "invalid_spec"      // the probe spec or address cannot be used
)

// Sentinel errors, one per failure Reason; check with errors.Is.
var (
	ErrTimeout     = errors.New("probe timed out")
	ErrNetwork     = errors.New("network error")
	ErrTruncated   = errors.New("answer truncated and TCP retry failed")
	ErrRcode       = errors.New("bad rcode")
	ErrQuestion    = errors.New("question mismatch")
	ErrID          = errors.New("message ID mismatch")
	ErrMalformed   = errors.New("malformed reply")
	ErrUnexpected  = errors.New("unexpected answer")
	ErrMissing     = errors.New("expected record missing")
	ErrCanceled    = errors.New("probe canceled")
	ErrInvalidSpec = errors.New("invalid probe spec")
)

var reasonErrs = map[Reason]error{
	ReasonTimeout:    ErrTimeout,
	ReasonNetwork:    ErrNetwork,
	ReasonTruncated:  ErrTruncated,
	ReasonRcode:      ErrRcode,
	ReasonQuestion:   ErrQuestion,
	ReasonID:         ErrID,
	ReasonMalformed:  ErrMalformed,
	ReasonUnexpected: ErrUnexpected,
	ReasonMissing:    ErrMissing,
	ReasonCanceled:   ErrCanceled,
	ReasonInvalid:    ErrInvalidSpec,
}

// Err returns the sentinel error of r, nil for ReasonOK.
func (r Reason) Err() error { return reasonErrs[r] }

// Result is the outcome of one probe.
type Result struct {
	Start  time.Time     // when the probe started
	RTT    time.Duration // from Start until the probe finished (answer, failure or deadline)
	OK     bool          // a valid answer arrived
	Reason Reason        // ReasonOK when OK
	Rcode  int           // rcode of the answer that decided the result; -1 when there was none
	TCP    bool          // the deciding exchange was the TCP retry after a truncated UDP answer
	Err    error         // nil when OK; otherwise wraps Reason.Err()
}

// End is when the probe finished: Start + RTT.
func (r Result) End() time.Time { return r.Start.Add(r.RTT) }

// Label is a bounded, metrics-friendly name of the outcome: the Reason,
// except that rcode failures are named by their rcode ("rcode_nxdomain",
// "rcode_servfail", "rcode_refused", …; "rcode_other" for codes without a
// name).
func (r Result) Label() string {
	if r.Reason != ReasonRcode {
		return string(r.Reason)
	}
	if s, ok := dns.RcodeToString[r.Rcode]; ok {
		return "rcode_" + strings.ToLower(s)
	}
	return "rcode_other"
}

// rcodeName is the rcode's mnemonic, or its number.
func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return "RCODE" + strconv.Itoa(rc)
}
