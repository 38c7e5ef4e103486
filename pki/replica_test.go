package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/transport"
)

func replicaFiles(dir, replica string) transport.TLSFiles {
	return transport.TLSFiles{CA: filepath.Join(dir, CACertFile), Cert: filepath.Join(dir, ReplicaCertFile(replica)),
		Key: filepath.Join(dir, ReplicaKeyFile(replica))}
}

// checkReplicaCert checks that path holds a replica certificate for name
// with exactly the replica marker, for server authentication only, with
// ips and dns as its only SANs, verifying against ca.
func checkReplicaCert(t *testing.T, ca *x509.Certificate, path, name string, ips []net.IP, dns []string) *x509.Certificate {
	t.Helper()
	c := readCert(t, path)
	if c.Subject.CommonName != name || !slices.Equal(c.Subject.Organization, []string{"ars"}) ||
		!slices.Equal(c.Subject.OrganizationalUnit, []string{transport.ReplicaOU}) {
		t.Errorf("%s: subject %q", path, c.Subject)
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != "ars://replica/"+name {
		t.Errorf("%s: URI SANs %v, want only ars://replica/%s", path, c.URIs, name)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) || len(c.UnknownExtKeyUsage) != 0 {
		t.Errorf("%s: extended key usage %v %v, want server authentication only", path, c.ExtKeyUsage, c.UnknownExtKeyUsage)
	}
	if c.IsCA {
		t.Errorf("%s: is a CA", path)
	}
	if !slices.EqualFunc(c.IPAddresses, ips, net.IP.Equal) || !slices.Equal(c.DNSNames, dns) {
		t.Errorf("%s: SANs %v %v, want %v %v", path, c.IPAddresses, c.DNSNames, ips, dns)
	}
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("%s: key is not P-256", path)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("%s: does not verify as a server: %v", path, err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Errorf("%s: verifies as a client", path)
	}
	cs := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}, VerifiedChains: [][]*x509.Certificate{{c}}}
	if got, ok := transport.ReplicaName(cs); !ok || got != name {
		t.Errorf("%s: ReplicaName %q %v", path, got, ok)
	}
	if got, ok := transport.NodeName(cs); ok {
		t.Errorf("%s: is node %q", path, got)
	}
	return c
}

func checkModes(t *testing.T, dir string, modes map[string]os.FileMode) {
	t.Helper()
	for name, want := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %o, want %o", name, fi.Mode().Perm(), want)
		}
	}
}

func TestIssueReplicaCert(t *testing.T) {
	dir := t.TempDir()
	if err := GeneratePKI(PKIRequest{Dir: dir, Nodes: []PKINode{{Name: "n1"}}, ValidFor: 30 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	ca := readCert(t, filepath.Join(dir, CACertFile))
	r := PKIReplica{Name: "lin.unbound", IPs: []string{"10.0.0.11", " 10.0.0.11", "fd00::11"}, DNS: []string{"unbound.lab.internal"}}
	if err := IssueReplicaCert(dir, r, 48*time.Hour); err != nil {
		t.Fatal(err)
	}
	if ReplicaCertFile(r.Name) != "replica-lin.unbound.pem" || ReplicaKeyFile(r.Name) != "replica-lin.unbound-key.pem" {
		t.Fatalf("file names %s %s", ReplicaCertFile(r.Name), ReplicaKeyFile(r.Name))
	}
	checkModes(t, dir, map[string]os.FileMode{ReplicaCertFile(r.Name): 0o644, ReplicaKeyFile(r.Name): 0o600})
	c := checkReplicaCert(t, ca, filepath.Join(dir, ReplicaCertFile(r.Name)), r.Name,
		[]net.IP{net.ParseIP("10.0.0.11"), net.ParseIP("fd00::11")}, []string{"unbound.lab.internal"})
	if d := time.Until(c.NotAfter); d > 49*time.Hour || d < 47*time.Hour {
		t.Errorf("valid for %s, want 48h", d)
	}
	if _, err := transport.AgentServerTLS(replicaFiles(dir, r.Name)); err != nil {
		t.Errorf("the replica agent cannot use the files: %v", err)
	}

	// Never beyond the CA; the default validity is capped likewise.
	if err := IssueReplicaCert(dir, PKIReplica{Name: "r2", DNS: []string{"r2.lab.internal"}}, 0); err != nil {
		t.Fatal(err)
	}
	if c2 := readCert(t, filepath.Join(dir, ReplicaCertFile("r2"))); !c2.NotAfter.Equal(ca.NotAfter) {
		t.Errorf("default validity: not after %s, want the CA's %s", c2.NotAfter, ca.NotAfter)
	}

	// Never overwrites.
	before, _ := os.ReadFile(filepath.Join(dir, ReplicaKeyFile(r.Name)))
	if err := IssueReplicaCert(dir, r, 0); err == nil || !strings.Contains(err.Error(), ReplicaCertFile(r.Name)) {
		t.Errorf("re-issue: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, ReplicaKeyFile(r.Name))); string(after) != string(before) {
		t.Error("re-issue replaced the key")
	}
}

func TestIssueReplicaCertRefuses(t *testing.T) {
	dir := t.TempDir()
	if err := GeneratePKI(PKIRequest{Dir: dir, Nodes: []PKINode{{Name: "n1"}}}); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	addr := []string{"10.0.0.1"}
	for name, r := range map[string]PKIReplica{
		"upper case":     {Name: "R1", IPs: addr},
		"empty name":     {IPs: addr},
		"leading dot":    {Name: ".r1", IPs: addr},
		"slash":          {Name: "r/1", IPs: addr},
		"64 characters":  {Name: strings.Repeat("r", 64), IPs: addr},
		"no address":     {Name: "r1"},
		"bad IP address": {Name: "r1", IPs: []string{"10.0.0.300"}},
		"bad DNS name":   {Name: "r1", DNS: []string{"r1.lab.internal:53"}},
	} {
		if err := IssueReplicaCert(dir, r, 0); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := IssueReplicaCert(t.TempDir(), PKIReplica{Name: "r1", IPs: addr}, 0); err == nil || !strings.Contains(err.Error(), "CA") {
		t.Errorf("without a CA: %v", err)
	}
	// Several at once: all or nothing.
	if err := os.WriteFile(filepath.Join(dir, ReplicaKeyFile("r2")), []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := IssueReplicaCerts(dir, []PKIReplica{{Name: "r1", IPs: addr}, {Name: "r2", IPs: addr}}, 0)
	if err == nil || !strings.Contains(err.Error(), ReplicaKeyFile("r2")) {
		t.Errorf("an existing target: %v", err)
	}
	if err := IssueReplicaCerts(dir, []PKIReplica{{Name: "r1", IPs: addr}, {Name: "r1", IPs: addr}}, 0); err == nil {
		t.Error("duplicate replica accepted")
	}
	if after, _ := os.ReadDir(dir); len(after) != len(entries)+1 {
		t.Errorf("refusals wrote files: %v", after)
	}
}

func TestGeneratePKIReplicas(t *testing.T) {
	dir := t.TempDir()
	req := PKIRequest{
		Dir:      dir,
		Nodes:    []PKINode{{Name: "n1", IPs: []string{"10.0.0.1"}}},
		Replicas: []PKIReplica{{Name: "win-bind", IPs: []string{"10.0.1.1"}}, {Name: "lin-unbound", DNS: []string{"unbound.lab.internal"}}},
		Loopback: true,
		ValidFor: 72 * time.Hour,
	}
	if err := GeneratePKI(req); err != nil {
		t.Fatal(err)
	}
	checkModes(t, dir, map[string]os.FileMode{
		"replica-win-bind.pem": 0o644, "replica-win-bind-key.pem": 0o600,
		"replica-lin-unbound.pem": 0o644, "replica-lin-unbound-key.pem": 0o600,
	})
	ca := readCert(t, filepath.Join(dir, CACertFile))
	// Loopback is for node certificates only.
	checkReplicaCert(t, ca, filepath.Join(dir, "replica-win-bind.pem"), "win-bind", []net.IP{net.ParseIP("10.0.1.1")}, nil)
	c := checkReplicaCert(t, ca, filepath.Join(dir, "replica-lin-unbound.pem"), "lin-unbound", nil, []string{"unbound.lab.internal"})
	if !c.NotAfter.Equal(ca.NotAfter) {
		t.Errorf("replica expires %s, CA %s", c.NotAfter, ca.NotAfter)
	}
	if _, err := tls.LoadX509KeyPair(replicaFiles(dir, "win-bind").Cert, replicaFiles(dir, "win-bind").Key); err != nil {
		t.Errorf("key does not match certificate: %v", err)
	}
}
