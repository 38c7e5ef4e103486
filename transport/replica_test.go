package transport_test

import (
	"crypto/x509"
	"testing"

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
