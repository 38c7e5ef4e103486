package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cluster"
	"github.com/ars-project/ars/fsm"
)

func TestToAPIError(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{api.ErrNotLeader, 503, api.CodeNotLeader},
		{raft.ErrNotLeader, 503, api.CodeNotLeader},
		{raft.ErrLeadershipLost, 503, api.CodeNotLeader},
		{raft.ErrLeadershipTransferInProgress, 503, api.CodeNotLeader},
		{api.ErrNoLeader, 503, api.CodeNoLeader},
		{fmt.Errorf("%w: free space 0 bytes", cluster.ErrDiskUnhealthy), 503, api.CodeDiskUnhealthy},
		{api.ErrUnauthorized, 401, api.CodeUnauthorized},
		{api.ErrForbidden, 403, api.CodeForbidden},
		{api.ErrNotFound, 404, api.CodeNotFound},
		{api.ErrBadRequest, 400, api.CodeBadRequest},
		{api.ErrTooLarge, 413, api.CodeTooLarge},
		{&http.MaxBytesError{Limit: 10}, 413, api.CodeTooLarge},
		{api.ErrTimeout, 504, api.CodeTimeout},
		{context.DeadlineExceeded, 504, api.CodeTimeout},
		{raft.ErrEnqueueTimeout, 504, api.CodeTimeout},
		{raft.ErrRaftShutdown, 503, api.CodeUnavailable},
		{fsm.ErrInvalid, 400, "invalid"},
		{fsm.ErrUnknownService, 404, "unknown_service"},
		{fsm.ErrUnknownReplica, 404, "unknown_replica"},
		{fsm.ErrStaleGeneration, 409, "stale_generation"},
		{fsm.ErrStaleTerm, 409, "stale_term"},
		{fsm.ErrConflict, 409, "conflict"},
		{fsm.ErrUnknownCommand, 400, "unknown_command"},
		{fsm.ErrCorrupt, 500, "corrupt"},
		{invalidf("bad"), 400, api.CodeInvalid},
		{&api.APIError{Status: 409, Code: "stale_term", Message: "relayed"}, 409, "stale_term"},
		{errors.New("boom"), 500, api.CodeInternal},
	}
	for _, c := range cases {
		for _, err := range []error{c.err, fmt.Errorf("context: %w", c.err)} {
			ae := ToAPIError(err)
			if ae.Status != c.status || ae.Code != c.code {
				t.Errorf("ToAPIError(%v) = %d %s, want %d %s", err, ae.Status, ae.Code, c.status, c.code)
			}
			// The client side rebuilds the same identity.
			back := &api.APIError{Status: ae.Status, Code: ae.Code, Message: ae.Message}
			if errors.Is(c.err, api.ErrBadRequest) || errors.Is(c.err, fsm.ErrInvalid) || errors.Is(c.err, api.ErrNotLeader) || errors.Is(c.err, fsm.ErrStaleTerm) {
				for _, target := range []error{api.ErrBadRequest, fsm.ErrInvalid, api.ErrNotLeader, fsm.ErrStaleTerm} {
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
	e := &api.APIError{Status: 404, Code: "unknown_service", Message: "service \"x\" does not exist"}
	for _, target := range []error{fsm.ErrUnknownService, api.ErrNotFound} {
		if !errors.Is(e, target) {
			t.Errorf("%v is not %v", e, target)
		}
	}
	for _, target := range []error{fsm.ErrUnknownReplica, api.ErrNotLeader, api.ErrBadRequest} {
		if errors.Is(e, target) {
			t.Errorf("%v is %v", e, target)
		}
	}
	nl := &api.APIError{Status: 503, Code: api.CodeNotLeader}
	if !errors.Is(nl, api.ErrNotLeader) || errors.Is(nl, api.ErrNoLeader) || errors.Is(nl, api.ErrUnavailable) {
		t.Error("503 not_leader identity wrong")
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", nl), api.ErrNotLeader) {
		t.Error("wrapped APIError lost identity")
	}
	if fsm.Code(&api.APIError{Status: 409, Code: "stale_generation"}) != "stale_generation" {
		t.Error("fsm.Code does not see through APIError")
	}
	if e.Error() != `service "x" does not exist (unknown_service)` {
		t.Errorf("Error() = %q", e.Error())
	}
}
