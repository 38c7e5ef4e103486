// Package testpki gives tests a cluster PKI made by the project's own
// keygen (pki.GeneratePKI) and the TLS configurations built from it.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ars-project/ars/pki"
	"github.com/ars-project/ars/transport"
)

// Main generates two independent PKIs (each with nodes n1-n4, loopback
// SANs, and replica certificates for r1 and r2 with 127.0.0.1, ::1 and
// localhost) under a temporary directory, runs the tests with their
// directories, and removes them. It is meant for TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testpki.Main(m, &pkiDir, &foreignDir)) }
func Main(m *testing.M, dir, foreign *string) int {
	base, err := os.MkdirTemp("", "ars-pki-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(base)
	*dir, *foreign = filepath.Join(base, "pki"), filepath.Join(base, "foreign")
	nodes := []pki.PKINode{{Name: "n1"}, {Name: "n2"}, {Name: "n3"}, {Name: "n4"}}
	loopback := []string{"127.0.0.1", "::1"}
	replicas := []pki.PKIReplica{{Name: "r1", IPs: loopback, DNS: []string{"localhost"}}, {Name: "r2", IPs: loopback, DNS: []string{"localhost"}}}
	for _, d := range []string{*dir, *foreign} {
		if err := pki.GeneratePKI(pki.PKIRequest{Dir: d, Nodes: nodes, Replicas: replicas, Loopback: true}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// NodeFiles names node's certificate, key and the CA in dir.
func NodeFiles(dir, node string) transport.TLSFiles {
	return transport.TLSFiles{
		CA:   filepath.Join(dir, pki.CACertFile),
		Cert: filepath.Join(dir, pki.NodeCertFile(node)),
		Key:  filepath.Join(dir, pki.NodeKeyFile(node)),
	}
}

// ReplicaFiles names replica's certificate, key and the CA in dir (Main
// issues r1 and r2).
func ReplicaFiles(dir, replica string) transport.TLSFiles {
	return transport.TLSFiles{
		CA:   filepath.Join(dir, pki.CACertFile),
		Cert: filepath.Join(dir, pki.ReplicaCertFile(replica)),
		Key:  filepath.Join(dir, pki.ReplicaKeyFile(replica)),
	}
}

// ServerTLS is node's server configuration (require: client certificates
// are required).
func ServerTLS(t testing.TB, dir, node string, require bool) *tls.Config {
	t.Helper()
	cfg, err := transport.ServerTLS(NodeFiles(dir, node), require)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// ClientTLS is the client configuration for f.
func ClientTLS(t testing.TB, f transport.TLSFiles) *tls.Config {
	t.Helper()
	cfg, err := transport.ClientTLS(f, "")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// CAOnly trusts dir's cluster CA and presents no certificate (an operator
// with a token).
func CAOnly(t testing.TB, dir string) *tls.Config {
	return ClientTLS(t, transport.TLSFiles{CA: filepath.Join(dir, pki.CACertFile)})
}

// NonNodeCert issues a client+server certificate from the cluster CA
// without the node marker.
func NonNodeCert(t testing.TB, dir, cn string) tls.Certificate {
	t.Helper()
	return issue(t, dir, pkix.Name{CommonName: cn, OrganizationalUnit: []string{"operators"}}, nil)
}

// ReplicaMarkedCert issues a client+server certificate from the cluster CA
// with the replica marker for name (URI SAN and OU), and with the node
// marker as well if alsoNode. ars never issues such a certificate (replica
// certificates are for server authentication only); it stands for one
// made by other means, which TLS's key usage check would not stop.
func ReplicaMarkedCert(t testing.TB, dir, name string, alsoNode bool) tls.Certificate {
	t.Helper()
	subject := pkix.Name{CommonName: name, OrganizationalUnit: []string{transport.ReplicaOU}}
	uris := []*url.URL{transport.ReplicaURI(name)}
	if alsoNode {
		subject.OrganizationalUnit = append(subject.OrganizationalUnit, transport.NodeOU)
		uris = append(uris, transport.NodeURI(name))
	}
	return issue(t, dir, subject, uris)
}

// issue issues a client+server certificate for 127.0.0.1 from dir's CA.
func issue(t testing.TB, dir string, subject pkix.Name, uris []*url.URL) tls.Certificate {
	t.Helper()
	ca, caKey, err := pki.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      subject,
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		URIs:         uris,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}
