package docker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/ars-project/ars/controller/driver"
)

// Short names for the driver contract's sentinels (controller/driver).
var (
	errNotFound     = driver.ErrNotFound
	errUnsupported  = driver.ErrUnsupported
	errUnavailable  = driver.ErrUnavailable
	errInvalidState = driver.ErrInvalidState
	errConflict     = driver.ErrConflict
	errDenied       = driver.ErrDenied
	errInvalid      = driver.ErrInvalid
	errFailed       = driver.ErrFailed
)

// errCallTimeout: one round trip got no answer within its timeout.
var errCallTimeout = errors.New("docker engine did not answer in time")

// errRetry marks an error the next attempt may not see (a concurrent
// change found by a check; the next attempt reads the state again).
var errRetry = errors.New("state changed underneath; read again")

// classify maps an error to a controller sentinel and says whether another
// attempt may succeed. Every attempt reads the container's state first, so
// retrying after a conflict (a concurrent change, a removal in progress,
// an address still held) is safe: the next attempt acts on what it finds.
func classify(err error) (sentinel error, retry bool) {
	switch {
	case err == nil:
		return nil, false
	case errors.Is(err, context.Canceled):
		return errUnavailable, false
	case errors.Is(err, errCallTimeout):
		return errUnavailable, true
	}
	retry = errors.Is(err, errRetry)
	if s := driver.SentinelOf(err); s != nil {
		return s, retry || s == errUnavailable
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return errUnavailable, false // the caller's own deadline
	}
	if tlsRefused(err) {
		return errDenied, false
	}
	if client.IsErrConnectionFailed(err) {
		return errUnavailable, true
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "Address already in use"):
		// 403 from the engine: another endpoint holds the address.
		return errConflict, true
	case cerrdefs.IsNotFound(err):
		return errNotFound, false
	case cerrdefs.IsConflict(err):
		return errConflict, true
	case cerrdefs.IsInvalidArgument(err):
		return errInvalid, false
	case cerrdefs.IsPermissionDenied(err), cerrdefs.IsUnauthorized(err):
		return errDenied, false
	case cerrdefs.IsNotImplemented(err):
		return errUnsupported, false
	case cerrdefs.IsUnavailable(err), cerrdefs.IsDeadlineExceeded(err):
		return errUnavailable, true
	case cerrdefs.IsInternal(err), cerrdefs.IsUnknown(err):
		return errFailed, true // engine-side failure; bounded retries
	}
	// Transport errors the client did not wrap (connection reset, EOF
	// mid-response, TLS): the engine may be restarting.
	return errUnavailable, true
}

// tlsRefused reports a TLS handshake that failed on certificates: the
// engine's certificate not signed by the configured CA (or not for its
// address), or the engine refusing ours. Another attempt would fail the
// same way, and calling it an engine that is down would send an operator
// looking in the wrong place.
func tlsRefused(err error) bool {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verify) {
		return true
	}
	// The engine's alert, as the client reads it (TLS 1.3 delivers it on
	// the first read after the handshake): "remote error: tls: bad
	// certificate", "... unknown certificate authority", "... certificate
	// required".
	msg := err.Error()
	return strings.Contains(msg, "remote error: tls:") && strings.Contains(msg, "certificate")
}

// classified wraps err with its sentinel unless it already carries one.
func classified(err error) error {
	if err == nil || driver.SentinelOf(err) != nil {
		return err
	}
	s, _ := classify(err)
	return fmt.Errorf("%w: %w", s, err)
}

// errKind is the metrics label of a failed round trip.
func errKind(err error) string {
	s, _ := classify(err)
	switch {
	case errors.Is(err, errCallTimeout):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case s == errUnavailable:
		return "unreachable"
	case s == errNotFound:
		return "not_found"
	case s == errConflict:
		return "conflict"
	case s == errInvalid:
		return "invalid"
	case s == errDenied:
		return "denied"
	}
	return "engine"
}
