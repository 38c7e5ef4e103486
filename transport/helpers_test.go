package transport_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/test/testpki"
	"github.com/ars-project/ars/transport"
)

// pkiDir holds the cluster PKI of the tests; foreignDir another cluster's.
var pkiDir, foreignDir string

func TestMain(m *testing.M) { os.Exit(testpki.Main(m, &pkiDir, &foreignDir)) }

func nodeFiles(dir, node string) transport.TLSFiles { return testpki.NodeFiles(dir, node) }

func mustServerTLS(t testing.TB, dir, node string, require bool) *tls.Config {
	return testpki.ServerTLS(t, dir, node, require)
}

func mustClientTLS(t testing.TB, f transport.TLSFiles) *tls.Config { return testpki.ClientTLS(t, f) }

func caOnly(t testing.TB) *tls.Config { return testpki.CAOnly(t, pkiDir) }

func issueNonNodeCert(t testing.TB, cn string) tls.Certificate {
	return testpki.NonNodeCert(t, pkiDir, cn)
}

func replicaFiles(dir, replica string) transport.TLSFiles { return testpki.ReplicaFiles(dir, replica) }

// clientWith is caOnly presenting cert.
func clientWith(t testing.TB, cert tls.Certificate) *tls.Config {
	c := caOnly(t)
	c.Certificates = []tls.Certificate{cert}
	return c
}

// hsResult is the outcome of one TLS handshake, seen from both ends.
type hsResult struct {
	srvErr, cliErr error
	srv, cli       tls.ConnectionState
}

func (r hsResult) ok() bool { return r.srvErr == nil && r.cliErr == nil }

// handshake runs one TLS handshake between a server with srv and a client
// with cli over 127.0.0.1, the client dialling "127.0.0.1". After a
// handshake the server sends a byte that the client must read: in TLS 1.3
// the client finishes before the server has checked its certificate, and
// a refusal shows only there.
func handshake(t *testing.T, srv, cli *tls.Config) hsResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var r hsResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		raw, err := ln.Accept()
		if err != nil {
			r.srvErr = err
			return
		}
		defer raw.Close()
		_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(raw, srv)
		if err := tc.Handshake(); err != nil {
			r.srvErr = err
			return
		}
		r.srv = tc.ConnectionState()
		if _, err := tc.Write([]byte{1}); err != nil {
			r.srvErr = err
		}
	}()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), cli)
	if err != nil {
		r.cliErr = err
	} else {
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err != nil {
			r.cliErr = err
		}
		r.cli = conn.ConnectionState()
		var ne net.Error
		if errors.As(r.cliErr, &ne) && ne.Timeout() {
			t.Fatal("client read timed out: the server neither answered nor refused")
		}
		conn.Close()
	}
	<-done
	return r
}

// expectRefusedBy checks that the handshake failed and that the side that
// refused (srv or cli error) says want.
func expectRefusedBy(t *testing.T, r hsResult, side, want string) {
	t.Helper()
	if r.ok() {
		t.Fatal("handshake succeeded")
	}
	err := r.srvErr
	if side == "client" {
		err = r.cliErr
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("%s error %v, want one containing %q (server: %v; client: %v)", side, err, want, r.srvErr, r.cliErr)
	}
}

// serveTLS accepts connections on 127.0.0.1 and runs a handshake on each
// with cfg; it returns the address.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer raw.Close()
				_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
				tc := tls.Server(raw, cfg)
				if tc.Handshake() == nil {
					_, _ = tc.Write([]byte{1})
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func readLeaf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func verifiedState(c *x509.Certificate) *tls.ConnectionState {
	return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}, VerifiedChains: [][]*x509.Certificate{{c}}}
}

func loadPair(t *testing.T, f transport.TLSFiles) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
