package docker

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/pki"
)

// testPKI is a cluster CA of `ars keygen` (transport.GeneratePKI) in its
// own directory, with certificates for the given names: loopback, server
// and client authentication. Two calls are two unrelated CAs.
type testPKI struct{ dir string }

func newTestPKI(t *testing.T, names ...string) testPKI {
	t.Helper()
	p := testPKI{dir: t.TempDir()}
	var nodes []pki.PKINode
	for _, n := range names {
		nodes = append(nodes, pki.PKINode{Name: n})
	}
	if err := pki.GeneratePKI(pki.PKIRequest{Dir: p.dir, Nodes: nodes, ValidFor: time.Hour, Loopback: true}); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p testPKI) ca() string { return filepath.Join(p.dir, pki.CACertFile) }

func (p testPKI) pair(name string) (certFile, keyFile string) {
	return filepath.Join(p.dir, pki.NodeCertFile(name)), filepath.Join(p.dir, pki.NodeKeyFile(name))
}

// tlsFront listens on 127.0.0.1 with mutual TLS (client certificates of
// p's CA only) and relays each connection to the engine's unix socket: a
// remote Docker host as the driver sees one (dockerd --tlsverify).
func tlsFront(t *testing.T, p testPKI, socket string) string {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(p.pair("engine"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(p.ca())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate in " + p.ca())
	}
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
// operation (power-on, attach with a real answer — through the helper's
// exec, then armed, confirmed by its output —, observe, detach); a
// client certificate of another CA, or a server the configured CA did not
// sign, is refused at once as ErrDenied naming the host, not retried as
// an engine that is down.
func TestRemoteHostMutualTLS(t *testing.T) {
	e := testEnv(t)
	pki := newTestPKI(t, "engine", "node1")
	endpoint := tlsFront(t, pki, strings.TrimPrefix(e.endpoint, "unix://"))
	caFile := pki.ca()
	certFile, keyFile := pki.pair("node1")

	d, cnt := newDriver(t, e, "", func(c *Config) {
		c.Hosts = []Host{{Name: "remote", Endpoint: endpoint, TLS: TLS{CAFile: caFile, CertFile: certFile, KeyFile: keyFile}}}
	})
	r := e.replica(t, "192.0.2.20")
	r.Host = "remote"
	ctx := ctxT(t)
	mustOp(t, cnt, "power-on over mTLS", -1, func() error { return d.PowerOn(ctx, r) })
	mustOp(t, cnt, "attach over mTLS", -1, func() error { return d.Attach(ctx, r, driver.ServiceAddr(e.svcAddr)) })
	waitAnswer(t, e.svcAddr, "192.0.2.20", 5*time.Second)
	if o := observe(t, d, r); !o.Reachable || !o.NICConnected || o.Power != driver.PowerOn {
		t.Fatalf("observation over mTLS: %+v", o)
	}
	mustOp(t, cnt, "detach over mTLS", 1, func() error { return d.Detach(ctx, r) })
	// Armed (helper re-created: DELETE, create, start), the attach is the
	// connect alone, confirmed by the helper's output streamed over mTLS
	// (without it the exec would add two calls).
	mustOp(t, cnt, "power-on over mTLS (arms the helper)", 3, func() error { return d.PowerOn(ctx, r, driver.ServiceAddr(e.svcAddr)) })
	mustOp(t, cnt, "attach over mTLS (armed)", 1, func() error { return d.Attach(ctx, r, driver.ServiceAddr(e.svcAddr)) })
	waitAnswer(t, e.svcAddr, "192.0.2.20", 5*time.Second)
	mustOp(t, cnt, "detach over mTLS (armed)", 1, func() error { return d.Detach(ctx, r) })

	other := newTestPKI(t, "intruder")
	ocert, okey := other.pair("intruder")
	tests := []struct {
		name string
		tls  TLS
	}{
		{"client certificate of another CA", TLS{CAFile: caFile, CertFile: ocert, KeyFile: okey}},
		{"engine not signed by the configured CA", TLS{CAFile: other.ca(), CertFile: certFile, KeyFile: keyFile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad, _ := newDriver(t, e, "", func(c *Config) {
				c.Hosts = []Host{{Name: "remote", Endpoint: endpoint, TLS: tt.tls}}
			})
			_, err := bad.Observe(ctx, r)
			oe := wantErr(t, err, driver.ErrDenied, "remote", "TLS")
			if oe.Attempts != 1 {
				t.Fatalf("a refused certificate was tried %d times: %v", oe.Attempts, err)
			}
		})
	}
}
