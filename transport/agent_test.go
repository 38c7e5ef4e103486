package transport_test

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/ars-project/ars/test/testpki"
	"github.com/ars-project/ars/transport"
)

// agentCaller trusts the cluster CA and presents certs, with no check of
// its own on the server: whatever fails is the agent's refusal.
func agentCaller(t *testing.T, certs ...tls.Certificate) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(readLeaf(t, nodeFiles(pkiDir, "n1").CA))
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: certs}
}

// TestAgentServerTLS: the replica agent's listener takes a node of the
// cluster CA and nothing else; it refuses to run on a certificate that
// is not a replica certificate.
func TestAgentServerTLS(t *testing.T) {
	srv, err := transport.AgentServerTLS(replicaFiles(pkiDir, "r1"))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := transport.AgentClientTLS(nodeFiles(pkiDir, "n1"), "r1")
	if err != nil {
		t.Fatal(err)
	}
	r := handshake(t, srv, cli)
	if !r.ok() {
		t.Fatalf("node to agent: server: %v; client: %v", r.srvErr, r.cliErr)
	}
	if name, ok := transport.NodeName(&r.srv); !ok || name != "n1" {
		t.Errorf("agent sees node %q %v, want n1", name, ok)
	}
	if name, ok := transport.ReplicaName(&r.cli); !ok || name != "r1" {
		t.Errorf("node sees replica %q %v, want r1", name, ok)
	}

	for _, c := range []struct {
		name, want string
		cli        *tls.Config
	}{
		{"no client certificate", "client didn't provide a certificate", agentCaller(t)},
		{"replica certificate", "incompatible key usage", agentCaller(t, loadPair(t, replicaFiles(pkiDir, "r2")))},
		{"replica marker with client auth", "is an ars replica certificate, not a node certificate", agentCaller(t, testpki.ReplicaMarkedCert(t, pkiDir, "r2", false))},
		{"node and replica markers", "is an ars replica certificate, not a node certificate", agentCaller(t, testpki.ReplicaMarkedCert(t, pkiDir, "n2", true))},
		{"cluster CA, no node marker", "is not an ars node certificate", agentCaller(t, testpki.NonNodeCert(t, pkiDir, "operator-alice"))},
		{"foreign CA", "unknown authority", agentCaller(t, loadPair(t, nodeFiles(foreignDir, "n1")))},
	} {
		t.Run(c.name, func(t *testing.T) {
			expectRefusedBy(t, handshake(t, srv, c.cli), "server", c.want)
		})
	}

	if _, err := transport.AgentServerTLS(nodeFiles(pkiDir, "n1")); err == nil || !strings.Contains(err.Error(), nodeFiles(pkiDir, "n1").Cert) {
		t.Errorf("a node certificate for the agent: %v, want an error naming the file", err)
	}
	if _, err := transport.AgentServerTLS(transport.TLSFiles{Cert: replicaFiles(pkiDir, "r1").Cert, Key: replicaFiles(pkiDir, "r1").Key}); err == nil {
		t.Error("no CA file accepted")
	}
}

// TestAgentClientTLS: a node's client of a replica agent takes exactly the
// replica it dials, from the cluster CA, at the dialled address.
func TestAgentClientTLS(t *testing.T) {
	agent := func(dir, replica string) *tls.Config {
		cfg, err := transport.AgentServerTLS(replicaFiles(dir, replica))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	client := func(replica string) *tls.Config {
		cfg, err := transport.AgentClientTLS(nodeFiles(pkiDir, "n1"), replica)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	if r := handshake(t, agent(pkiDir, "r2"), client("r2")); !r.ok() {
		t.Fatalf("right replica: server: %v; client: %v", r.srvErr, r.cliErr)
	}
	elsewhere := client("r1")
	elsewhere.ServerName = "r1.elsewhere.invalid"
	for _, c := range []struct {
		name, want string
		srv, cli   *tls.Config
	}{
		{"wrong replica", `tls: replica agent certificate names replica "r1", want "r2"`, agent(pkiDir, "r1"), client("r2")},
		{"node server", "is not an ars replica certificate", mustServerTLS(t, pkiDir, "n2", true), client("n2")},
		{"foreign CA", "certificate signed by unknown authority", agent(foreignDir, "r1"), client("r1")},
		{"address not in the certificate", "r1.elsewhere.invalid", agent(pkiDir, "r1"), elsewhere},
	} {
		t.Run(c.name, func(t *testing.T) {
			expectRefusedBy(t, handshake(t, c.srv, c.cli), "client", c.want)
		})
	}

	n1 := nodeFiles(pkiDir, "n1")
	for name, f := range map[string]transport.TLSFiles{
		"no CA":                         {Cert: n1.Cert, Key: n1.Key},
		"no certificate":                {CA: n1.CA},
		"replica certificate as client": replicaFiles(pkiDir, "r2"),
	} {
		if _, err := transport.AgentClientTLS(f, "r1"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := transport.AgentClientTLS(n1, "R1"); err == nil {
		t.Error("invalid replica name accepted")
	}
}
