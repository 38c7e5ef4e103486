package transport_test

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ars-project/ars/test/testpki"
	"github.com/ars-project/ars/transport"
)

// TestReplicaCertIsNoNode: a replica certificate names a replica and never
// a node, even one that also carries the node marker; a node certificate
// names no replica; unverified certificates name nothing.
func TestReplicaCertIsNoNode(t *testing.T) {
	r1 := readLeaf(t, replicaFiles(pkiDir, "r1").Cert)
	both := testpki.ReplicaMarkedCert(t, pkiDir, "n4", true).Leaf
	n1 := readLeaf(t, nodeFiles(pkiDir, "n1").Cert)
	for _, c := range []struct {
		what          string
		cert          *x509.Certificate
		node, replica string
	}{
		{"replica certificate", r1, "", "r1"},
		{"node and replica markers", both, "", "n4"},
		{"node certificate", n1, "n1", ""},
	} {
		cs := verifiedState(c.cert)
		if name, ok := transport.NodeName(cs); name != c.node || ok != (c.node != "") {
			t.Errorf("%s: NodeName = %q %v, want %q", c.what, name, ok, c.node)
		}
		if name, ok := transport.ReplicaName(cs); name != c.replica || ok != (c.replica != "") {
			t.Errorf("%s: ReplicaName = %q %v, want %q", c.what, name, ok, c.replica)
		}
		cs.VerifiedChains = nil
		if name, ok := transport.ReplicaName(cs); ok {
			t.Errorf("%s: unverified certificate names replica %q", c.what, name)
		}
	}
}

// TestServerTLSRefusesReplicaCerts: the API and Raft listeners refuse a
// replica certificate as a client certificate, whether client
// certificates are required or optional: the real one (server
// authentication only) and one with the marker and client authentication.
func TestServerTLSRefusesReplicaCerts(t *testing.T) {
	for _, require := range []bool{true, false} {
		srv := mustServerTLS(t, pkiDir, "n1", require)
		prefix := "optional client certificate/"
		if require {
			prefix = "required client certificate/"
		}
		t.Run(prefix+"node certificate", func(t *testing.T) {
			if r := handshake(t, srv, mustClientTLS(t, nodeFiles(pkiDir, "n2"))); !r.ok() {
				t.Fatalf("server: %v; client: %v", r.srvErr, r.cliErr)
			}
		})
		t.Run(prefix+"replica certificate", func(t *testing.T) {
			r := handshake(t, srv, mustClientTLS(t, replicaFiles(pkiDir, "r1")))
			expectRefusedBy(t, r, "server", "incompatible key usage")
		})
		for _, alsoNode := range []bool{false, true} {
			name := "replica marker with client auth"
			if alsoNode {
				name = "node and replica markers"
			}
			t.Run(prefix+name, func(t *testing.T) {
				r := handshake(t, srv, clientWith(t, testpki.ReplicaMarkedCert(t, pkiDir, "r1", alsoNode)))
				expectRefusedBy(t, r, "server", "is an ars replica certificate; replica certificates are only for the replica agent")
			})
		}
	}
}

// TestClientTLSRefusesReplicaServer: a node's client (forwarding, Raft)
// and the CLI refuse a server that presents a replica certificate, though
// it is from the cluster CA and names the dialled address.
func TestClientTLSRefusesReplicaServer(t *testing.T) {
	agent, err := transport.AgentServerTLS(replicaFiles(pkiDir, "r1"))
	if err != nil {
		t.Fatal(err)
	}
	marked := &tls.Config{Certificates: []tls.Certificate{testpki.ReplicaMarkedCert(t, pkiDir, "n4", true)}}
	const want = "tls: server certificate (subject \"CN="
	for name, cli := range map[string]*tls.Config{
		"node client":         mustClientTLS(t, nodeFiles(pkiDir, "n2")),
		"CLI without a cert":  caOnly(t),
		"replica as a client": mustClientTLS(t, replicaFiles(pkiDir, "r2")),
	} {
		t.Run(name+"/replica agent", func(t *testing.T) {
			expectRefusedBy(t, handshake(t, agent, cli), "client", "is an ars replica certificate")
		})
		t.Run(name+"/node and replica markers", func(t *testing.T) {
			expectRefusedBy(t, handshake(t, marked, cli), "client", want)
		})
	}
	if r := handshake(t, mustServerTLS(t, pkiDir, "n1", false), caOnly(t)); !r.ok() {
		t.Fatalf("a node server: server: %v; client: %v", r.srvErr, r.cliErr)
	}
}

// TestStreamDialRefusesReplicaServer: a Raft dialer refuses a replica
// agent, and a server whose certificate has both markers.
func TestStreamDialRefusesReplicaServer(t *testing.T) {
	agent, err := transport.AgentServerTLS(replicaFiles(pkiDir, "r1"))
	if err != nil {
		t.Fatal(err)
	}
	marked := &tls.Config{Certificates: []tls.Certificate{testpki.ReplicaMarkedCert(t, pkiDir, "n4", true)}, ClientAuth: tls.RequireAnyClientCert}
	a := newTestStream(t, pkiDir, "n1")
	for name, cfg := range map[string]*tls.Config{"replica agent": agent, "node and replica markers": marked} {
		t.Run(name, func(t *testing.T) {
			c, err := a.Dial(raft.ServerAddress(serveTLS(t, cfg)), 5*time.Second)
			if err == nil {
				c.Close()
				t.Fatal("dialled a server with a replica certificate")
			}
			if !strings.Contains(err.Error(), "replica certificate") {
				t.Fatalf("error %v does not say why", err)
			}
		})
	}
}
