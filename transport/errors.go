package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/hashicorp/raft"

	"github.com/ars-project/ars/fsm"
)

// Sentinel errors. The server turns them into an HTTP status and a stable
// error code; the client turns the code back into an *APIError whose Is
// method matches the same sentinel, so errors.Is(err, ErrNotLeader) holds on
// both sides of the wire.
var (
	ErrNotLeader    = errors.New("this node is not the leader")
	ErrNoLeader     = errors.New("no leader is known")
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
	ErrNotFound     = errors.New("not found")
	ErrBadRequest   = errors.New("bad request")
	ErrTimeout      = errors.New("timeout")
	// ErrTooLarge: the request body exceeds the route's limit (HTTP 413).
	ErrTooLarge = errors.New("request body too large")
	// ErrUnavailable: the node cannot serve the request right now (Raft is
	// shutting down, a snapshot restore aborted the operation, the request
	// was cancelled). Retrying elsewhere or later may succeed (HTTP 503).
	ErrUnavailable = errors.New("unavailable")
	// ErrRateLimited: the caller sent more alerts than its rate allows
	// (HTTP 429); retry after the Retry-After seconds.
	ErrRateLimited = errors.New("rate limited")
)

// Error codes carried in the JSON error body. fsm codes ("invalid",
// "unknown_service", "stale_generation", …) travel unchanged.
const (
	CodeNotLeader    = "not_leader"
	CodeNoLeader     = "no_leader"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeNotFound     = "not_found"
	CodeBadRequest   = "bad_request"
	CodeInvalid      = "invalid"
	CodeTimeout      = "timeout"
	CodeTooLarge     = "too_large"
	CodeUnavailable  = "unavailable"
	CodeInternal     = "internal"
	CodeConflict     = "conflict"
	CodeRateLimited  = "rate_limited"
)

// transportCodes maps our sentinels to (code, status).
var transportCodes = []struct {
	err    error
	code   string
	status int
}{
	{ErrNotLeader, CodeNotLeader, http.StatusServiceUnavailable},
	{ErrNoLeader, CodeNoLeader, http.StatusServiceUnavailable},
	{ErrUnauthorized, CodeUnauthorized, http.StatusUnauthorized},
	{ErrForbidden, CodeForbidden, http.StatusForbidden},
	{ErrNotFound, CodeNotFound, http.StatusNotFound},
	{ErrBadRequest, CodeBadRequest, http.StatusBadRequest},
	{ErrTimeout, CodeTimeout, http.StatusGatewayTimeout},
	{ErrTooLarge, CodeTooLarge, http.StatusRequestEntityTooLarge},
	{ErrUnavailable, CodeUnavailable, http.StatusServiceUnavailable},
	{ErrRateLimited, CodeRateLimited, http.StatusTooManyRequests},
}

// fsmStatus is the HTTP status for an fsm error code.
func fsmStatus(code string) int {
	switch code {
	case "invalid", "unknown_command":
		return http.StatusBadRequest
	case "unknown_service", "unknown_replica":
		return http.StatusNotFound
	case "stale_generation", "stale_term", "conflict":
		return http.StatusConflict
	case "ledger_full": // nothing recorded; the sender retries
		return http.StatusServiceUnavailable
	default: // "corrupt" and anything new: the node has a problem, not the caller
		return http.StatusInternalServerError
	}
}

// APIError is the error the API returns: an HTTP status, a stable code and
// a human-readable message. On the wire it is
// {"error":{"code":"not_leader","message":"..."}}.
type APIError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *APIError) Error() string {
	switch {
	case e.Message != "" && e.Code != "":
		return fmt.Sprintf("%s (%s)", e.Message, e.Code)
	case e.Message != "":
		return e.Message
	case e.Code != "":
		return e.Code
	default:
		return fmt.Sprintf("HTTP %d", e.Status)
	}
}

// Is reports whether the error's code (or, for generic families, its HTTP
// status) corresponds to target: a transport sentinel or an fsm sentinel.
// Every 400 is ErrBadRequest, every 401 ErrUnauthorized, 403 ErrForbidden,
// 404 ErrNotFound (so fsm.ErrUnknownService is also ErrNotFound), 413
// ErrTooLarge and 504 ErrTimeout; 503 matches exactly one of ErrNotLeader,
// ErrNoLeader, ErrUnavailable by code.
func (e *APIError) Is(target error) bool {
	if t, ok := target.(*APIError); ok {
		return t.Code == e.Code && (t.Status == 0 || t.Status == e.Status)
	}
	for _, tc := range transportCodes {
		if tc.err == target && tc.code == e.Code {
			return true
		}
	}
	if s := fsm.FromCode(e.Code); s != nil && s == target {
		return true
	}
	switch e.Status {
	case http.StatusBadRequest:
		return target == ErrBadRequest
	case http.StatusUnauthorized:
		return target == ErrUnauthorized
	case http.StatusForbidden:
		return target == ErrForbidden
	case http.StatusNotFound:
		return target == ErrNotFound
	case http.StatusRequestEntityTooLarge:
		return target == ErrTooLarge
	case http.StatusGatewayTimeout:
		return target == ErrTimeout
	}
	return false
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
	return (&APIError{Status: e.status, Code: e.code}).Is(target)
}

// invalidf is bad request input: 400, code "invalid" (errors.Is matches
// both ErrBadRequest and fsm.ErrInvalid).
func invalidf(format string, args ...any) error {
	return &requestError{status: http.StatusBadRequest, code: CodeInvalid, msg: fmt.Sprintf(format, args...)}
}

// ToAPIError converts any error into the *APIError the server sends for it.
// An *APIError (for example one relayed from the leader) keeps its status
// and code. Raft's leadership errors become not_leader, its enqueue
// timeout and context deadlines become timeout, fsm errors keep their fsm
// code. Anything unrecognised is a 500 "internal".
func ToAPIError(err error) *APIError {
	if err == nil {
		return nil
	}
	msg := err.Error()
	var ae *APIError
	if errors.As(err, &ae) {
		out := *ae
		if out.Status == 0 {
			out.Status = http.StatusInternalServerError
		}
		return &out
	}
	var re *requestError
	if errors.As(err, &re) {
		return &APIError{Status: re.status, Code: re.code, Message: msg}
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &APIError{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge,
			Message: fmt.Sprintf("request body exceeds the limit of %d bytes", mbe.Limit)}
	}
	mk := func(status int, code string) *APIError { return &APIError{Status: status, Code: code, Message: msg} }
	switch {
	case errors.Is(err, ErrNotLeader), errors.Is(err, raft.ErrNotLeader),
		errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return mk(http.StatusServiceUnavailable, CodeNotLeader)
	case errors.Is(err, ErrNoLeader):
		return mk(http.StatusServiceUnavailable, CodeNoLeader)
	case errors.Is(err, ErrTimeout), errors.Is(err, raft.ErrEnqueueTimeout),
		errors.Is(err, context.DeadlineExceeded):
		return mk(http.StatusGatewayTimeout, CodeTimeout)
	case errors.Is(err, ErrUnavailable), errors.Is(err, raft.ErrRaftShutdown),
		errors.Is(err, raft.ErrTransportShutdown), errors.Is(err, raft.ErrAbortedByRestore),
		errors.Is(err, context.Canceled):
		return mk(http.StatusServiceUnavailable, CodeUnavailable)
	case errors.Is(err, raft.ErrCantBootstrap), errors.Is(err, raft.ErrNotVoter):
		return mk(http.StatusConflict, CodeConflict)
	}
	if code := fsm.Code(err); code != "" {
		return mk(fsmStatus(code), code)
	}
	for _, tc := range transportCodes {
		if errors.Is(err, tc.err) {
			return mk(tc.status, tc.code)
		}
	}
	return mk(http.StatusInternalServerError, CodeInternal)
}

// codeForStatus is the code assumed for an error response that carries no
// (parsable) ars error body, e.g. from a proxy in between.
func codeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return CodeBadRequest
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusForbidden:
		return CodeForbidden
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusRequestEntityTooLarge:
		return CodeTooLarge
	case http.StatusServiceUnavailable, http.StatusBadGateway:
		return CodeUnavailable
	case http.StatusGatewayTimeout:
		return CodeTimeout
	default:
		return CodeInternal
	}
}

// NetworkError is a client-side failure to talk to a node at all (refused
// connection, DNS, TLS handshake, reset, local timeout). The CLI maps it to
// "cannot reach node" (exit code 3); a *APIError means the node answered.
type NetworkError struct {
	Op   string // e.g. "GET /v1/status"
	Addr string // the node's base URL
	Err  error
}

func (e *NetworkError) Error() string {
	return fmt.Sprintf("cannot reach ars node at %s (%s): %v", e.Addr, e.Op, e.Err)
}

func (e *NetworkError) Unwrap() error { return e.Err }

// Is makes a timed-out request match ErrTimeout.
func (e *NetworkError) Is(target error) bool {
	if target != ErrTimeout {
		return false
	}
	if errors.Is(e.Err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(e.Err, &ne) && ne.Timeout()
}
