package transport_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ars-project/ars/test/testpki"
	"github.com/ars-project/ars/transport"
)

func newTestStream(t *testing.T, dir, node string, opts ...transport.StreamOption) *transport.StreamLayer {
	t.Helper()
	s, err := transport.NewStreamLayer("127.0.0.1:0", nil, mustServerTLS(t, dir, node, true), mustClientTLS(t, nodeFiles(dir, node)), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

type acceptResult struct {
	conn net.Conn
	err  error
}

// acceptAsync runs Accept in the background.
func acceptAsync(s *transport.StreamLayer) <-chan acceptResult {
	ch := make(chan acceptResult, 1)
	go func() {
		c, err := s.Accept()
		ch <- acceptResult{c, err}
	}()
	return ch
}

func TestStreamLayerExchangesData(t *testing.T) {
	a := newTestStream(t, pkiDir, "n1")
	b := newTestStream(t, pkiDir, "n2")
	accepted := acceptAsync(b)
	c, err := a.Dial(raft.ServerAddress(b.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	var r acceptResult
	select {
	case r = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.conn.Close()
	buf := make([]byte, 4)
	if _, err := io.ReadFull(r.conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("server read %q %v", buf, err)
	}
	if _, err := r.conn.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("client read %q %v", buf, err)
	}
	cs := r.conn.(*tls.Conn).ConnectionState()
	if name, ok := transport.NodeName(&cs); !ok || name != "n1" {
		t.Fatalf("server sees peer %q %v, want n1", name, ok)
	}
	cc := c.(*tls.Conn).ConnectionState()
	if name, ok := transport.NodeName(&cc); !ok || name != "n2" {
		t.Fatalf("client sees peer %q %v, want n2", name, ok)
	}
}

// expectRefused dials the stream layer with cfg and checks the connection
// is unusable, then checks the listener still serves a proper node.
func expectRefused(t *testing.T, target *transport.StreamLayer, cfg *tls.Config) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", target.Addr().String(), cfg)
	if err == nil {
		// TLS 1.3: the client finishes before the server checks its
		// certificate; the refusal shows on the first read.
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = conn.Write([]byte("hello"))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
		if err == nil {
			t.Fatal("connection was accepted")
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("connection hung instead of being refused")
		}
	}
	// The listener survives and the refused connection never surfaced.
	good := newTestStream(t, pkiDir, "n3")
	accepted := acceptAsync(target)
	c, err := good.Dial(raft.ServerAddress(target.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatalf("listener broken after refused handshake: %v", err)
	}
	defer c.Close()
	select {
	case r := <-accepted:
		if r.err != nil {
			t.Fatal(r.err)
		}
		cs := r.conn.(*tls.Conn).ConnectionState()
		if name, _ := transport.NodeName(&cs); name != "n3" {
			t.Fatalf("Accept returned a connection from %q, want n3", name)
		}
		r.conn.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return the good connection")
	}
}

func TestStreamLayerRefusesNonNodes(t *testing.T) {
	target := newTestStream(t, pkiDir, "n1")
	cases := map[string]*tls.Config{
		"no client certificate": caOnly(t),
		"foreign CA":            mustClientTLS(t, transport.TLSFiles{CA: nodeFiles(pkiDir, "n2").CA, Cert: nodeFiles(foreignDir, "n2").Cert, Key: nodeFiles(foreignDir, "n2").Key}),
		"cluster CA, no node marker": func() *tls.Config {
			c := caOnly(t)
			c.Certificates = []tls.Certificate{issueNonNodeCert(t, "operator-alice")}
			return c
		}(),
		"replica certificate":             mustClientTLS(t, replicaFiles(pkiDir, "r1")),
		"replica marker with client auth": clientWith(t, testpki.ReplicaMarkedCert(t, pkiDir, "r1", false)),
		"node and replica markers":        clientWith(t, testpki.ReplicaMarkedCert(t, pkiDir, "n4", true)),
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) { expectRefused(t, target, cfg) })
	}
}

func TestStreamDialRefusesForeignServer(t *testing.T) {
	foreign := newTestStream(t, foreignDir, "n2")
	go func() {
		c, err := foreign.Accept()
		if err == nil {
			c.Close()
		}
	}()
	a := newTestStream(t, pkiDir, "n1")
	if c, err := a.Dial(raft.ServerAddress(foreign.Addr().String()), 5*time.Second); err == nil {
		c.Close()
		t.Fatal("dialled a server with a foreign certificate")
	}
}

func TestStreamSilentPeerDoesNotBlockAccept(t *testing.T) {
	target := newTestStream(t, pkiDir, "n1", transport.StreamHandshakeTimeout(time.Minute))
	// A peer that connects and never speaks.
	silent, err := net.Dial("tcp", target.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	expectRefusedOrGood := newTestStream(t, pkiDir, "n2")
	accepted := acceptAsync(target)
	c, err := expectRefusedOrGood.Dial(raft.ServerAddress(target.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case r := <-accepted:
		if r.err != nil {
			t.Fatal(r.err)
		}
		r.conn.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("a silent peer blocked Accept")
	}
}

func TestStreamHandshakeTimeoutDropsSilentPeer(t *testing.T) {
	target := newTestStream(t, pkiDir, "n1", transport.StreamHandshakeTimeout(100*time.Millisecond))
	silent, err := net.Dial("tcp", target.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	_ = silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = silent.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("silent peer was not disconnected: %v", err)
	}
}

func TestStreamCloseUnblocksAccept(t *testing.T) {
	s, err := transport.NewStreamLayer("127.0.0.1:0", nil, mustServerTLS(t, pkiDir, "n1", true), mustClientTLS(t, nodeFiles(pkiDir, "n1")))
	if err != nil {
		t.Fatal(err)
	}
	accepted := acceptAsync(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-accepted:
		if !errors.Is(r.err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept still blocked after Close")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestStreamLayerConfigErrors(t *testing.T) {
	srv := mustServerTLS(t, pkiDir, "n1", true)
	cli := mustClientTLS(t, nodeFiles(pkiDir, "n1"))
	if _, err := transport.NewStreamLayer("0.0.0.0:0", nil, srv, cli); err == nil {
		t.Error("unadvertisable bind accepted without advertise address")
	}
	if _, err := transport.NewStreamLayer("127.0.0.1:0", &net.TCPAddr{IP: net.IPv4zero, Port: 1}, srv, cli); err == nil {
		t.Error("unspecified advertise address accepted")
	}
	if _, err := transport.NewStreamLayer("127.0.0.1:0", nil, srv, caOnly(t)); err == nil {
		t.Error("client config without certificate accepted")
	}
	s, err := transport.NewStreamLayer("127.0.0.1:0", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, srv, cli)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Addr().(*net.TCPAddr).Port != s.ListenAddr().(*net.TCPAddr).Port {
		t.Errorf("advertise port 0 not replaced: %v vs %v", s.Addr(), s.ListenAddr())
	}
}

// TestStreamWithRaftTransport runs a real raft RPC over the stream layer.
func TestStreamWithRaftTransport(t *testing.T) {
	mk := func(node string) *raft.NetworkTransport {
		s := newTestStream(t, pkiDir, node)
		tr := raft.NewNetworkTransport(s, 2, 5*time.Second, io.Discard)
		t.Cleanup(func() { _ = tr.Close() })
		return tr
	}
	a, b := mk("n1"), mk("n2")
	go func() {
		for rpc := range b.Consumer() {
			rpc.Respond(&raft.AppendEntriesResponse{Term: 7, Success: true}, nil)
		}
	}()
	var resp raft.AppendEntriesResponse
	err := a.AppendEntries("n2", b.LocalAddr(), &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("n1")}, Term: 7}, &resp)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Success || resp.Term != 7 {
		t.Fatalf("response %+v", resp)
	}
}
