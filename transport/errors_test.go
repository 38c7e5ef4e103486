package transport

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/ars-project/ars/fsm"
)

func TestToAPIError(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{ErrNotLeader, 503, CodeNotLeader},
		{raft.ErrNotLeader, 503, CodeNotLeader},
		{raft.ErrLeadershipLost, 503, CodeNotLeader},
		{raft.ErrLeadershipTransferInProgress, 503, CodeNotLeader},
		{ErrNoLeader, 503, CodeNoLeader},
		{ErrUnauthorized, 401, CodeUnauthorized},
		{ErrForbidden, 403, CodeForbidden},
		{ErrNotFound, 404, CodeNotFound},
		{ErrBadRequest, 400, CodeBadRequest},
		{ErrTooLarge, 413, CodeTooLarge},
		{&http.MaxBytesError{Limit: 10}, 413, CodeTooLarge},
		{ErrTimeout, 504, CodeTimeout},
		{context.DeadlineExceeded, 504, CodeTimeout},
		{raft.ErrEnqueueTimeout, 504, CodeTimeout},
		{raft.ErrRaftShutdown, 503, CodeUnavailable},
		{fsm.ErrInvalid, 400, "invalid"},
		{fsm.ErrUnknownService, 404, "unknown_service"},
		{fsm.ErrUnknownReplica, 404, "unknown_replica"},
		{fsm.ErrStaleGeneration, 409, "stale_generation"},
		{fsm.ErrStaleTerm, 409, "stale_term"},
		{fsm.ErrConflict, 409, "conflict"},
		{fsm.ErrUnknownCommand, 400, "unknown_command"},
		{fsm.ErrCorrupt, 500, "corrupt"},
		{invalidf("bad"), 400, CodeInvalid},
		{&APIError{Status: 409, Code: "stale_term", Message: "relayed"}, 409, "stale_term"},
		{errors.New("boom"), 500, CodeInternal},
	}
	for _, c := range cases {
		for _, err := range []error{c.err, fmt.Errorf("context: %w", c.err)} {
			ae := ToAPIError(err)
			if ae.Status != c.status || ae.Code != c.code {
				t.Errorf("ToAPIError(%v) = %d %s, want %d %s", err, ae.Status, ae.Code, c.status, c.code)
			}
			// The client side rebuilds the same identity.
			back := &APIError{Status: ae.Status, Code: ae.Code, Message: ae.Message}
			if errors.Is(c.err, ErrBadRequest) || errors.Is(c.err, fsm.ErrInvalid) || errors.Is(c.err, ErrNotLeader) || errors.Is(c.err, fsm.ErrStaleTerm) {
				for _, target := range []error{ErrBadRequest, fsm.ErrInvalid, ErrNotLeader, fsm.ErrStaleTerm} {
					if errors.Is(c.err, target) && !errors.Is(back, target) {
						t.Errorf("identity %v lost for %v", target, c.err)
					}
				}
			}
		}
	}
	if ToAPIError(nil) != nil {
		t.Error("ToAPIError(nil) != nil")
	}
}

func TestAPIErrorIs(t *testing.T) {
	e := &APIError{Status: 404, Code: "unknown_service", Message: "service \"x\" does not exist"}
	for _, target := range []error{fsm.ErrUnknownService, ErrNotFound} {
		if !errors.Is(e, target) {
			t.Errorf("%v is not %v", e, target)
		}
	}
	for _, target := range []error{fsm.ErrUnknownReplica, ErrNotLeader, ErrBadRequest} {
		if errors.Is(e, target) {
			t.Errorf("%v is %v", e, target)
		}
	}
	nl := &APIError{Status: 503, Code: CodeNotLeader}
	if !errors.Is(nl, ErrNotLeader) || errors.Is(nl, ErrNoLeader) || errors.Is(nl, ErrUnavailable) {
		t.Error("503 not_leader identity wrong")
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", nl), ErrNotLeader) {
		t.Error("wrapped APIError lost identity")
	}
	if fsm.Code(&APIError{Status: 409, Code: "stale_generation"}) != "stale_generation" {
		t.Error("fsm.Code does not see through APIError")
	}
	if e.Error() != `service "x" does not exist (unknown_service)` {
		t.Errorf("Error() = %q", e.Error())
	}
}
