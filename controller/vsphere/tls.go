package vsphere

import (
	"context"
	"crypto/sha1"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/vmware/govmomi/vim25/soap"
)

// tlsConfig builds the client TLS configuration: system roots by default,
// a CA file, or a pinned thumbprint; no verification only with Insecure.
func tlsConfig(cfg *Config) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case cfg.Insecure:
		tc.InsecureSkipVerify = true
	case cfg.Thumbprint != "":
		want, err := ParseThumbprint(cfg.Thumbprint)
		if err != nil {
			return nil, err
		}
		// Pinning replaces chain verification: the leaf must be exactly the
		// certificate with this fingerprint (vSphere's self-signed default).
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("vcenter presented no certificate")
			}
			if got := thumbprintOf(cs.PeerCertificates[0], len(want) == 3*sha1.Size-1); subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
				return fmt.Errorf("vcenter certificate thumbprint %s does not match the configured %s", got, want)
			}
			return nil
		}
	case cfg.CAFile != "":
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("vcenter CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("vcenter CA file %s holds no PEM certificate", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

func thumbprintOf(c *x509.Certificate, isSHA1 bool) string {
	if isSHA1 {
		return soap.ThumbprintSHA1(c)
	}
	return soap.ThumbprintSHA256(c)
}

// newSOAPClient makes a soap.Client for u with our TLS settings. govmomi's
// own TLS dialer ignores the context (a dead vCenter would hold a dial for
// the kernel's connect timeout); this one honours it and the call timeout.
func newSOAPClient(u *url.URL, cfg *Config, tc *tls.Config) *soap.Client {
	sc := soap.NewClient(u, cfg.Insecure)
	t := sc.DefaultTransport()
	t.TLSClientConfig = tc
	t.TLSHandshakeTimeout = cfg.CallTimeout
	t.ResponseHeaderTimeout = 0 // per call: the context carries the deadline
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: cfg.CallTimeout, KeepAlive: 30 * time.Second}, Config: tc}
	t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialer.DialContext(ctx, network, addr)
	}
	plain := &net.Dialer{Timeout: cfg.CallTimeout, KeepAlive: 30 * time.Second}
	t.DialContext = plain.DialContext
	t.MaxIdleConnsPerHost = 8
	sc.Client.Transport = drainingTransport{t}
	return sc
}

// maxDrain bounds what a closed response body is still read for.
const maxDrain = 64 << 10

// drainingTransport reads the rest of a response body (up to maxDrain)
// when it is closed. govmomi decodes a SOAP answer up to the envelope's
// end tag and closes the body there; when the answer came chunked (any
// answer larger than the server's buffer, a VM's devices for one) and its
// last chunk had not arrived with the envelope, the body was closed
// before its end, and net/http does not reuse such a connection. Each
// call then opened a new connection with a TLS handshake: in the lab,
// one per VM read, a quarter of the leader's CPU at 25 services. The
// drain waits at most for the call's own deadline (the request context).
// soap.Client.CloseIdleConnections reaches the wrapped transport directly.
type drainingTransport struct{ t *http.Transport }

func (d drainingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := d.t.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	res.Body = drainingBody{res.Body}
	return res, nil
}

type drainingBody struct{ io.ReadCloser }

func (b drainingBody) Close() error {
	_, _ = io.CopyN(io.Discard, b.ReadCloser, maxDrain)
	return b.ReadCloser.Close()
}
