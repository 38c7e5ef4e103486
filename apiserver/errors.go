package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/hashicorp/raft"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cluster"
	"github.com/ars-project/ars/fsm"
)

// fsmStatus is the HTTP status for an fsm error code.
func fsmStatus(code string) int {
	switch code {
	case "invalid", "unknown_command":
		return http.StatusBadRequest
	case "unknown_service", "unknown_replica":
		return http.StatusNotFound
	case "stale_generation", "stale_term", "conflict", "needs_upgrade":
		return http.StatusConflict
	case "ledger_full": // nothing recorded; the sender retries
		return http.StatusServiceUnavailable
	default: // "corrupt" and anything new: the node has a problem, not the caller
		return http.StatusInternalServerError
	}
}

// requestError is a server-side error with a fixed status and code, used
// for bad input detected by the transport itself.
type requestError struct {
	status int
	code   string
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func (e *requestError) Is(target error) bool {
	return (&api.APIError{Status: e.status, Code: e.code}).Is(target)
}

// ToAPIError converts any error into the *APIError the server sends for it.
// An *APIError (for example one relayed from the leader) keeps its status
// and code. Raft's leadership errors become not_leader, its enqueue
// timeout and context deadlines become timeout, fsm errors keep their fsm
// code. Anything unrecognised is a 500 "internal".
func ToAPIError(err error) *api.APIError {
	if err == nil {
		return nil
	}
	msg := err.Error()
	var ae *api.APIError
	if errors.As(err, &ae) {
		out := *ae
		if out.Status == 0 {
			out.Status = http.StatusInternalServerError
		}
		return &out
	}
	var re *requestError
	if errors.As(err, &re) {
		return &api.APIError{Status: re.status, Code: re.code, Message: msg}
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &api.APIError{Status: http.StatusRequestEntityTooLarge, Code: api.CodeTooLarge,
			Message: fmt.Sprintf("request body exceeds the limit of %d bytes", mbe.Limit)}
	}
	mk := func(status int, code string) *api.APIError {
		return &api.APIError{Status: status, Code: code, Message: msg}
	}
	switch {
	case errors.Is(err, cluster.ErrDiskUnhealthy):
		return mk(http.StatusServiceUnavailable, api.CodeDiskUnhealthy)
	case errors.Is(err, cluster.ErrNotLeader):
		return mk(http.StatusServiceUnavailable, api.CodeNotLeader)
	case errors.Is(err, cluster.ErrNoLeader):
		return mk(http.StatusServiceUnavailable, api.CodeNoLeader)
	case errors.Is(err, cluster.ErrInvalid):
		return mk(http.StatusBadRequest, api.CodeBadRequest)
	case errors.Is(err, cluster.ErrNotFound):
		return mk(http.StatusNotFound, api.CodeNotFound)
	case errors.Is(err, api.ErrNotLeader), errors.Is(err, raft.ErrNotLeader),
		errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return mk(http.StatusServiceUnavailable, api.CodeNotLeader)
	case errors.Is(err, api.ErrNoLeader):
		return mk(http.StatusServiceUnavailable, api.CodeNoLeader)
	case errors.Is(err, api.ErrTimeout), errors.Is(err, raft.ErrEnqueueTimeout),
		errors.Is(err, context.DeadlineExceeded):
		return mk(http.StatusGatewayTimeout, api.CodeTimeout)
	case errors.Is(err, api.ErrUnavailable), errors.Is(err, raft.ErrRaftShutdown),
		errors.Is(err, raft.ErrTransportShutdown), errors.Is(err, raft.ErrAbortedByRestore),
		errors.Is(err, context.Canceled):
		return mk(http.StatusServiceUnavailable, api.CodeUnavailable)
	case errors.Is(err, raft.ErrCantBootstrap), errors.Is(err, raft.ErrNotVoter):
		return mk(http.StatusConflict, api.CodeConflict)
	}
	if code := fsm.Code(err); code != "" {
		return mk(fsmStatus(code), code)
	}
	if status, code, ok := api.SentinelCode(err); ok {
		return mk(status, code)
	}
	return mk(http.StatusInternalServerError, api.CodeInternal)
}

// invalidf is bad request input: 400, code "invalid" (errors.Is matches
// both ErrBadRequest and fsm.ErrInvalid).
func invalidf(format string, args ...any) error {
	return &requestError{status: http.StatusBadRequest, code: api.CodeInvalid, msg: fmt.Sprintf(format, args...)}
}
