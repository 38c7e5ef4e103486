package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

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
	// CodeDiskUnhealthy (503): the node's data directory is full,
	// read-only or not answering; it wrote nothing. The message names the
	// cause. Another node, or this one once its disk recovers, takes the
	// request.
	CodeDiskUnhealthy = "disk_unhealthy"
	// CodeEventsGone (410): the events after the asked index are no longer
	// held by the node; read again from the index the message gives.
	CodeEventsGone = "events_gone"
)

// SentinelCode returns the HTTP status and code of the first of this
// package's sentinels in err's chain (ok false if none).
func SentinelCode(err error) (status int, code string, ok bool) {
	for _, tc := range transportCodes {
		if errors.Is(err, tc.err) {
			return tc.status, tc.code, true
		}
	}
	return 0, "", false
}

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
