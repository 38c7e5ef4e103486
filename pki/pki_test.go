package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/transport"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := ReadCert(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGeneratePKI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	req := PKIRequest{
		Dir:       dir,
		Nodes:     []PKINode{{Name: "n1", IPs: []string{"10.0.0.1"}, DNS: []string{"n1.ars.internal"}}, {Name: "n2", IPs: []string{"10.0.0.2"}}},
		Operators: []string{"alice", "operator"},
	}
	if err := GeneratePKI(req); err != nil {
		t.Fatal(err)
	}
	modes := map[string]os.FileMode{
		CACertFile: 0o644, CAKeyFile: 0o600, GossipKeyFile: 0o600, TokensFile: 0o600,
		"n1.pem": 0o644, "n1-key.pem": 0o600, "n2.pem": 0o644, "n2-key.pem": 0o600,
	}
	for name, want := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %o, want %o", name, fi.Mode().Perm(), want)
		}
	}

	ca := readCert(t, filepath.Join(dir, CACertFile))
	if !ca.IsCA || ca.PublicKeyAlgorithm != x509.ECDSA {
		t.Fatalf("CA: IsCA=%v alg=%v", ca.IsCA, ca.PublicKeyAlgorithm)
	}
	if d := time.Until(ca.NotAfter); d < DefaultPKIValidity-time.Hour {
		t.Errorf("CA valid for %s, want about 10 years", d)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	n1 := readCert(t, filepath.Join(dir, "n1.pem"))
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := n1.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}, DNSName: "n1.ars.internal"}); err != nil {
			t.Errorf("n1 certificate does not verify for usage %v: %v", usage, err)
		}
	}
	if err := n1.VerifyHostname("10.0.0.1"); err != nil {
		t.Error(err)
	}
	if err := n1.VerifyHostname("n1"); err != nil {
		t.Error(err)
	}
	if err := n1.VerifyHostname("127.0.0.1"); err == nil {
		t.Error("loopback SAN present without Loopback")
	}
	if name, ok := transport.NodeName(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{n1},
		VerifiedChains: [][]*x509.Certificate{{n1}}}); !ok || name != "n1" {
		t.Errorf("node marker: %q %v", name, ok)
	}
	if !slices.Contains(n1.Subject.OrganizationalUnit, transport.NodeOU) || len(n1.URIs) != 1 || n1.URIs[0].String() != "ars://node/n1" {
		t.Errorf("node markers: OU=%v URIs=%v", n1.Subject.OrganizationalUnit, n1.URIs)
	}
	if k, ok := n1.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("node key is not P-256")
	}
	if _, err := transport.ServerTLS(nodeFiles(dir, "n2"), true); err != nil {
		t.Errorf("generated files do not load: %v", err)
	}

	key, err := LoadGossipKey(filepath.Join(dir, GossipKeyFile))
	if err != nil || len(key) != 32 {
		t.Fatalf("gossip key: %d bytes, %v", len(key), err)
	}

	toks, err := LoadTokens(filepath.Join(dir, TokensFile))
	if err != nil {
		t.Fatal(err)
	}
	if toks.Len() != 4 {
		t.Fatalf("%d tokens, want operator, detector, reader, alice", toks.Len())
	}
	data, _ := os.ReadFile(filepath.Join(dir, TokensFile))
	roles := map[string]Role{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if s, ok := strings.CutPrefix(line, "secret: "); ok {
			secret := strings.Trim(s, `"`)
			if len(secret) != 43 {
				t.Errorf("secret length %d, want 43 (32 bytes base64url)", len(secret))
			}
			name, role, ok := toks.Lookup(secret)
			if !ok {
				t.Fatalf("generated secret not found")
			}
			roles[name] = role
		}
	}
	want := map[string]Role{"operator": RoleOperator, "detector": RoleDetector, "reader": RoleReader, "alice": RoleOperator}
	for n, r := range want {
		if roles[n] != r {
			t.Errorf("token %s role %q, want %q (all: %v)", n, roles[n], r, roles)
		}
	}
}

func TestGeneratePKILoopback(t *testing.T) {
	dir := t.TempDir()
	if err := GeneratePKI(PKIRequest{Dir: dir, Nodes: []PKINode{{Name: "n1", IPs: []string{"127.0.0.1"}}}, Loopback: true, ValidFor: 48 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	c := readCert(t, filepath.Join(dir, "n1.pem"))
	for _, h := range []string{"127.0.0.1", "::1", "localhost"} {
		if err := c.VerifyHostname(h); err != nil {
			t.Error(err)
		}
	}
	n := 0
	for _, ip := range c.IPAddresses {
		if ip.Equal(net.IPv4(127, 0, 0, 1)) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("127.0.0.1 appears %d times", n)
	}
	if d := time.Until(c.NotAfter); d > 49*time.Hour {
		t.Errorf("ValidFor ignored: %s", d)
	}
}

func TestGeneratePKIRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, TokensFile)
	if err := os.WriteFile(existing, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := GeneratePKI(PKIRequest{Dir: dir, Nodes: []PKINode{{Name: "n1"}}})
	if err == nil || !strings.Contains(err.Error(), existing) {
		t.Fatalf("error %v does not name %s", err, existing)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("files were written despite the refusal: %v", entries)
	}
	if data, _ := os.ReadFile(existing); string(data) != "keep me" {
		t.Fatal("existing file changed")
	}
}

func TestGeneratePKIValidation(t *testing.T) {
	cases := map[string]PKIRequest{
		"no dir":                  {Nodes: []PKINode{{Name: "n1"}}},
		"no nodes":                {Dir: "x"},
		"bad node name":           {Dir: "x", Nodes: []PKINode{{Name: "N_1"}}},
		"duplicate node":          {Dir: "x", Nodes: []PKINode{{Name: "n1"}, {Name: "n1"}}},
		"bad IP":                  {Dir: "x", Nodes: []PKINode{{Name: "n1", IPs: []string{"10.0.0.300"}}}},
		"bad operator":            {Dir: "x", Nodes: []PKINode{{Name: "n1"}}, Operators: []string{"bad name"}},
		"dup operator":            {Dir: "x", Nodes: []PKINode{{Name: "n1"}}, Operators: []string{"reader"}},
		"bad replica name":        {Dir: "x", Nodes: []PKINode{{Name: "n1"}}, Replicas: []PKIReplica{{Name: "R1", IPs: []string{"10.0.0.1"}}}},
		"duplicate replica":       {Dir: "x", Nodes: []PKINode{{Name: "n1"}}, Replicas: []PKIReplica{{Name: "r1", IPs: []string{"10.0.0.1"}}, {Name: "r1", IPs: []string{"10.0.0.2"}}}},
		"replica named as a node": {Dir: "x", Nodes: []PKINode{{Name: "n1"}}, Replicas: []PKIReplica{{Name: "n1", IPs: []string{"10.0.0.1"}}}},
		"replica without address": {Dir: "x", Nodes: []PKINode{{Name: "n1"}}, Replicas: []PKIReplica{{Name: "r1"}}},
		"replica with bad IP":     {Dir: "x", Nodes: []PKINode{{Name: "n1"}}, Replicas: []PKIReplica{{Name: "r1", IPs: []string{"10.0.0.300"}}}},
	}
	for name, req := range cases {
		if req.Dir != "" {
			req.Dir = filepath.Join(t.TempDir(), req.Dir)
		}
		if err := GeneratePKI(req); err == nil {
			t.Errorf("%s: accepted", name)
		} else if entries, _ := os.ReadDir(req.Dir); len(entries) != 0 {
			t.Errorf("%s: refused (%v) but wrote %v", name, err, entries)
		}
	}
}

// TestGeneratePKIFileNameCollisions: two certificates or keys that would
// share a file name are refused before anything is written, with a reason.
func TestGeneratePKIFileNameCollisions(t *testing.T) {
	addr := []string{"10.0.0.1"}
	for name, c := range map[string]struct {
		req  PKIRequest
		file string
	}{
		"node a and node a-key":  {PKIRequest{Nodes: []PKINode{{Name: "a"}, {Name: "a-key"}}}, "a-key.pem"},
		"node ca":                {PKIRequest{Nodes: []PKINode{{Name: "ca"}}}, "ca.pem"},
		"replica r1 and r1-key":  {PKIRequest{Nodes: []PKINode{{Name: "n1"}}, Replicas: []PKIReplica{{Name: "r1", IPs: addr}, {Name: "r1-key", IPs: addr}}}, "replica-r1-key.pem"},
		"node replica-r1 and r1": {PKIRequest{Nodes: []PKINode{{Name: "replica-r1"}}, Replicas: []PKIReplica{{Name: "r1", IPs: addr}}}, "replica-r1.pem"},
	} {
		c.req.Dir = filepath.Join(t.TempDir(), "x")
		err := GeneratePKI(c.req)
		if err == nil || !strings.Contains(err.Error(), "would be named "+c.file) {
			t.Errorf("%s: %v", name, err)
		}
		if _, serr := os.Stat(c.req.Dir); serr == nil {
			t.Errorf("%s: refused but created %s", name, c.req.Dir)
		}
	}
}

func TestIssueNodeCert(t *testing.T) {
	dir := t.TempDir()
	if err := GeneratePKI(PKIRequest{Dir: dir, Nodes: []PKINode{{Name: "n1"}}}); err != nil {
		t.Fatal(err)
	}
	if err := IssueNodeCert(dir, PKINode{Name: "n4", IPs: []string{"10.0.0.4"}}, 0, false); err != nil {
		t.Fatal(err)
	}
	ca := readCert(t, filepath.Join(dir, CACertFile))
	n4 := readCert(t, filepath.Join(dir, "n4.pem"))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := n4.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	if n4.NotAfter.After(ca.NotAfter) {
		t.Error("node certificate outlives the CA")
	}
	if err := IssueNodeCert(dir, PKINode{Name: "n4"}, 0, false); err == nil || !strings.Contains(err.Error(), "n4.pem") {
		t.Fatalf("re-issue: %v", err)
	}
}

func TestLoadGossipKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, n := range []int{16, 24, 32} {
		p := write("ok", base64.StdEncoding.EncodeToString(make([]byte, n))+"\n")
		key, err := LoadGossipKey(p)
		if err != nil || len(key) != n {
			t.Errorf("%d-byte key: %d %v", n, len(key), err)
		}
	}
	bad := map[string]string{
		"empty":      "  \n",
		"not base64": "!!!not base64!!!",
		"20 bytes":   base64.StdEncoding.EncodeToString(make([]byte, 20)),
	}
	for name, content := range bad {
		p := write("bad", content)
		_, err := LoadGossipKey(p)
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v does not name the file", name, err)
		}
	}
	if _, err := LoadGossipKey(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

func nodeFiles(dir, node string) transport.TLSFiles {
	return transport.TLSFiles{CA: filepath.Join(dir, CACertFile), Cert: filepath.Join(dir, NodeCertFile(node)),
		Key: filepath.Join(dir, NodeKeyFile(node))}
}
