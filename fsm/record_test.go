package fsm

import (
	"strings"
	"testing"
)

// The leader, member and verdict records are checked like any entry and
// change no state: the state after them is the one before, but for the
// applied index.
func TestRecordsChangeNoState(t *testing.T) {
	h := newHarness(t)
	h.must(ServiceApply{Spec: paperSpec("dns")})
	replica := h.svc("dns").Spec.Replicas[0].Name
	before := domainState(t, h.m)

	h.must(Leader{Node: "n1", At: 1})
	h.must(Member{Node: "n2", Status: "dead", Voter: true, At: 2})
	h.must(Member{Node: "n2", Status: "alive", Voter: true, At: 3})
	res := h.must(Verdict{Service: "dns", Replica: replica, DetectionMS: 254.4, Confirmations: 2, Quorum: true,
		Outcome: "no eligible replica", Reason: "no replica can take over", At: 4})
	if res.Service != "dns" || res.Generation != h.svc("dns").Generation {
		t.Errorf("verdict result %+v", res)
	}
	if after := domainState(t, h.m); before != after {
		t.Fatalf("records changed the state:\n%s\n%s", before, after)
	}

	h.reject(Leader{Node: "N 1"}, ErrInvalid, "node")
	h.reject(Member{Node: "n2", Status: "gone"}, ErrInvalid, "status")
	h.reject(Member{Node: "", Status: "alive"}, ErrInvalid, "node")
	h.reject(Verdict{Service: "nope", Replica: replica, Outcome: "x"}, ErrUnknownService)
	h.reject(Verdict{Service: "dns", Replica: "nope", Outcome: "x"}, ErrInvalid, "no replica")
	h.reject(Verdict{Service: "dns", Replica: replica}, ErrInvalid, "outcome")
	h.reject(Verdict{Service: "dns", Replica: replica, Outcome: "x", DetectionMS: -1}, ErrInvalid, "negative")
	h.reject(Verdict{Service: "dns", Replica: replica, Outcome: "x", Reason: strings.Repeat("r", MaxVerdictReason+1)}, ErrInvalid, "reason")
	h.reject(Verdict{Service: "dns", Replica: replica, Outcome: "x\n"}, ErrInvalid, "control")

	for _, c := range []Command{Leader{Node: "n1"}, Member{Node: "n1", Status: "alive"}, Verdict{Service: "dns"}} {
		if Level(c) != 4 {
			t.Errorf("%s: level %d, want 4", c.Type(), Level(c))
		}
	}
}
