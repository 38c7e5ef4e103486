package docker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ars/controller"
)

// testCA is a throwaway certificate authority for the remote-host tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

// issue writes NAME.pem and NAME-key.pem into dir: a leaf for 127.0.0.1
// usable as server and client, and returns their paths.
func (ca *testCA) issue(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func (ca *testCA) write(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	writePEM(t, p, "CERTIFICATE", ca.cert.Raw)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsFront listens on 127.0.0.1 with mutual TLS (client certificates of
// ca only) and relays each connection to the engine's unix socket: a
// remote Docker host as the driver sees one (dockerd --tlsverify).
func tlsFront(t *testing.T, ca *testCA, dir, socket string) string {
	t.Helper()
	certFile, keyFile := ca.issue(t, dir, "engine")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				// The handshake first: a refused client gets no engine.
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				up, err := net.Dial("unix", socket)
				if err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{})
				go func() { _, _ = io.Copy(up, c); up.(*net.UnixConn).CloseWrite(); close(done) }()
				_, _ = io.Copy(c, up)
				c.Close()
				<-done
			}()
		}
	}()
	return "tcp://" + ln.Addr().String()
}

// TestRemoteHostMutualTLS: a tcp endpoint with mutual TLS carries every
// operation (power-on, attach with a real answer, observe, detach); a
// client certificate of another CA, or a server the configured CA did not
// sign, is refused at once as ErrDenied naming the host, not retried as
// an engine that is down.
func TestRemoteHostMutualTLS(t *testing.T) {
	e := testEnv(t)
	dir := t.TempDir()
	ca := newTestCA(t, "ars test docker CA")
	endpoint := tlsFront(t, ca, dir, strings.TrimPrefix(e.endpoint, "unix://"))
	caFile := ca.write(t, dir, "ca.pem")
	certFile, keyFile := ca.issue(t, dir, "node1")

	d, cnt := newDriver(t, e, "", func(c *Config) {
		c.Hosts = []Host{{Name: "remote", Endpoint: endpoint, TLS: TLS{CAFile: caFile, CertFile: certFile, KeyFile: keyFile}}}
	})
	r := e.replica(t, "192.0.2.20")
	r.Host = "remote"
	ctx := ctxT(t)
	mustOp(t, cnt, "power-on over mTLS", -1, func() error { return d.PowerOn(ctx, r) })
	mustOp(t, cnt, "attach over mTLS", -1, func() error { return d.Attach(ctx, r, controller.ServiceAddr(e.svcAddr)) })
	waitAnswer(t, e.svcAddr, "192.0.2.20", 5*time.Second)
	if o := observe(t, d, r); !o.Reachable || !o.NICConnected || o.Power != controller.PowerOn {
		t.Fatalf("observation over mTLS: %+v", o)
	}
	mustOp(t, cnt, "detach over mTLS", 1, func() error { return d.Detach(ctx, r) })

	other := newTestCA(t, "another CA")
	odir := t.TempDir()
	ocert, okey := other.issue(t, odir, "intruder")
	tests := []struct {
		name string
		tls  TLS
	}{
		{"client certificate of another CA", TLS{CAFile: caFile, CertFile: ocert, KeyFile: okey}},
		{"engine not signed by the configured CA", TLS{CAFile: other.write(t, odir, "other-ca.pem"), CertFile: certFile, KeyFile: keyFile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad, _ := newDriver(t, e, "", func(c *Config) {
				c.Hosts = []Host{{Name: "remote", Endpoint: endpoint, TLS: tt.tls}}
			})
			_, err := bad.Observe(ctx, r)
			oe := wantErr(t, err, controller.ErrDenied, "remote", "TLS")
			if oe.Attempts != 1 {
				t.Fatalf("a refused certificate was tried %d times: %v", oe.Attempts, err)
			}
		})
	}
}
