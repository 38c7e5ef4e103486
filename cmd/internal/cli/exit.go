package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"

	"github.com/ars-project/ars/api"
)

// Exit codes.
const (
	ExitOK          = 0 // success
	ExitFailed      = 1 // the operation failed: server error or local I/O
	ExitUsage       = 2 // bad command, flags or arguments
	ExitUnreachable = 3 // cannot reach the node (or the lab), or TLS failure
)

// usageError is a mistake in the command line (exit 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// UsageErrorf is a usage error (exit 2) with a formatted message.
func UsageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// tlsSetupError: the client TLS configuration could not be built (exit 3).
type tlsSetupError struct{ err error }

func (e *tlsSetupError) Error() string { return "TLS setup: " + e.err.Error() }
func (e *tlsSetupError) Unwrap() error { return e.err }

// ExitCodeError passes a child's exit code through (ars-lab exec): the
// child has said what went wrong, so nothing more is printed.
type ExitCodeError struct{ Code int }

func (e *ExitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// fail prints "NAME: <reason>" for err (nothing for nil) and returns the
// exit code.
func (a *App) fail(stderr io.Writer, err error) int {
	if err == nil {
		return ExitOK
	}
	var ece *ExitCodeError
	if errors.As(err, &ece) {
		return ece.Code
	}
	code, reason := a.classify(err)
	reason = strings.Join(strings.Fields(strings.ReplaceAll(reason, "\n", "; ")), " ")
	fmt.Fprintf(stderr, "%s: %s\n", a.cfg.Name, reason)
	return code
}

// apiReasons are the short reasons for API error codes.
var apiReasons = map[string]string{
	api.CodeNoLeader:     "no leader elected",
	api.CodeNotLeader:    "this node is not the leader",
	api.CodeUnauthorized: "unauthorized: missing or invalid token (set -token or " + EnvToken + ")",
	api.CodeForbidden:    "forbidden: the token's role does not allow this",
	api.CodeTimeout:      "the node timed out",
	api.CodeTooLarge:     "request too large",
}

// classify maps an error to an exit code and a one-line reason.
func (a *App) classify(err error) (int, string) {
	var (
		ue  *usageError
		tse *tlsSetupError
		ae  *api.APIError
		ne  *api.NetworkError
	)
	if errors.As(err, &ue) {
		return ExitUsage, ue.msg
	}
	for _, f := range a.codes {
		if code, ok := f(err); ok {
			return code, err.Error()
		}
	}
	switch {
	case errors.As(err, &tse):
		return ExitUnreachable, tse.Error()
	case errors.As(err, &ae):
		return apiReason(ae)
	case errors.As(err, &ne):
		return ExitUnreachable, networkReason(ne.Addr, ne.Err)
	case isNetworkError(err):
		return ExitUnreachable, networkReason("", err)
	case errors.Is(err, context.Canceled):
		return ExitFailed, "interrupted"
	}
	return ExitFailed, err.Error()
}

func apiReason(ae *api.APIError) (int, string) {
	if strings.Contains(ae.Message, "HTTP request to an HTTPS server") {
		return ExitUnreachable, "the node speaks HTTPS: use an https:// -addr or set -ca-file (" + EnvCACert + ")"
	}
	code := ae.Code
	if code == "" {
		code = fmt.Sprintf("HTTP %d", ae.Status)
	}
	reason, ok := apiReasons[ae.Code]
	switch {
	case ok && ae.Code == api.CodeNoLeader, ok && ae.Code == api.CodeUnauthorized:
		// The fixed text says it all.
	case ok && ae.Message != "":
		reason += ": " + ae.Message
	case ae.Message != "":
		reason = ae.Message
	case !ok:
		reason = "request failed"
	}
	return ExitFailed, fmt.Sprintf("%s (%s)", reason, code)
}

// isNetworkError recognises connection and TLS failures that did not come
// wrapped in a transport.NetworkError.
func isNetworkError(err error) bool {
	var (
		ue  *url.Error
		oe  *net.OpError
		dnE *net.DNSError
		cve *tls.CertificateVerificationError
		rhe tls.RecordHeaderError
		uae x509.UnknownAuthorityError
		he  x509.HostnameError
		cie x509.CertificateInvalidError
	)
	return errors.As(err, &ue) || errors.As(err, &oe) || errors.As(err, &dnE) ||
		errors.As(err, &cve) || errors.As(err, &rhe) || errors.As(err, &uae) ||
		errors.As(err, &he) || errors.As(err, &cie) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, syscall.ECONNREFUSED)
}

// isTLSError reports whether err is a certificate or handshake failure.
func isTLSError(err error) bool {
	var (
		cve *tls.CertificateVerificationError
		rhe tls.RecordHeaderError
		ae  tls.AlertError
		uae x509.UnknownAuthorityError
		he  x509.HostnameError
		cie x509.CertificateInvalidError
	)
	return errors.As(err, &cve) || errors.As(err, &rhe) || errors.As(err, &ae) ||
		errors.As(err, &uae) || errors.As(err, &he) || errors.As(err, &cie) ||
		strings.Contains(err.Error(), "tls: ")
}

// networkReason is a short reason for a connection failure.
func networkReason(addr string, err error) string {
	where := "the node"
	if addr != "" {
		where = addr
	}
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		return "timed out talking to " + where + " (see -timeout)"
	}
	if isTLSError(err) {
		reason := "TLS failure with " + where + ": " + innermost(err)
		var uae x509.UnknownAuthorityError
		if errors.As(err, &uae) || strings.Contains(reason, "unknown authority") {
			reason += " (check -ca-file or " + EnvCACert + ")"
		}
		return reason
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return "cannot reach " + where + ": connection refused (is the agent running? check -addr or " + EnvAddr + ")"
	}
	return "cannot reach " + where + ": " + innermost(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// innermost drops url.Error and net.OpError wrappers, which repeat the URL
// and addresses, and keeps the cause.
func innermost(err error) string {
	for {
		var ue *url.Error
		var oe *net.OpError
		switch {
		case errors.As(err, &ue) && ue.Err != nil:
			err = ue.Err
		case errors.As(err, &oe) && oe.Err != nil:
			err = oe.Err
		default:
			return err.Error()
		}
	}
}
