package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/pki"
	"github.com/ars-project/ars/transport"
)

func TestKeygen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	r := ars(t, nil, "", "keygen", "-nodes", "n1=127.0.0.1,n2=127.0.0.2", "-dir", dir, "-operators", "alice", "-nodes", "n1=n1.lab.internal", "-o", "json").OK(t)
	if !strings.Contains(r.Stdout, `"file": "`+filepath.Join(dir, "n2-key.pem")+`"`) {
		t.Errorf("keygen -o json:\n%s", r.Stdout)
	}
	for _, f := range []struct {
		name string
		mode os.FileMode
	}{
		{"ca.pem", 0o644}, {"ca-key.pem", 0o600}, {"n1.pem", 0o644}, {"n1-key.pem", 0o600},
		{"n2.pem", 0o644}, {"n2-key.pem", 0o600}, {"gossip.key", 0o600}, {"tokens.yaml", 0o600}, {OperatorTokenFile, 0o600},
	} {
		fi, err := os.Stat(filepath.Join(dir, f.name))
		if err != nil {
			t.Errorf("%s: %v", f.name, err)
			continue
		}
		if fi.Mode().Perm() != f.mode {
			t.Errorf("%s: mode %v, want %v", f.name, fi.Mode().Perm(), f.mode)
		}
	}
	// operator.token holds the operator token of tokens.yaml, and it works.
	tok, _ := os.ReadFile(filepath.Join(dir, OperatorTokenFile))
	var tf struct {
		Tokens []struct{ Name, Role, Secret string } `yaml:"tokens"`
	}
	data, _ := os.ReadFile(filepath.Join(dir, "tokens.yaml"))
	if err := yaml.Unmarshal(data, &tf); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, x := range tf.Tokens {
		names = append(names, x.Name)
		if x.Name == "operator" && x.Secret != strings.TrimSpace(string(tok)) {
			t.Errorf("operator.token does not match tokens.yaml")
		}
	}
	if !reflect.DeepEqual(names, []string{"operator", "detector", "reader", "alice"}) {
		t.Errorf("tokens %v", names)
	}
	tokens, err := pki.LoadTokens(filepath.Join(dir, "tokens.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, role, ok := tokens.Lookup(strings.TrimSpace(string(tok))); !ok || role != pki.RoleOperator {
		t.Errorf("operator.token: role %q ok %v", role, ok)
	}

	// Never overwrites: a second run fails and changes nothing.
	before, _ := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	ars(t, nil, "", "keygen", "-dir", dir, "-nodes", "n1=127.0.0.1").Fails(t, cli.ExitFailed, "exists")
	if after, _ := os.ReadFile(filepath.Join(dir, "ca-key.pem")); string(after) != string(before) {
		t.Errorf("second keygen replaced the CA key")
	}
}

func TestKeygenUsage(t *testing.T) {
	dir := t.TempDir()
	ars(t, nil, "", "keygen", "-dir", dir).Fails(t, cli.ExitUsage, "-nodes is required")
	ars(t, nil, "", "keygen", "-dir", dir, "-nodes", "n1").Fails(t, cli.ExitUsage, `invalid value "n1" for flag -nodes: "n1": want NAME=ADDR`)
	ars(t, nil, "", "keygen", "-dir", dir, "-nodes", "n1=127.0.0.1", "-validity", "-1h").Fails(t, cli.ExitUsage, "-validity -1h0m0s: must be > 0")
	ars(t, nil, "", "keygen", "-dir", dir, "-nodes", "N1=127.0.0.1").Fails(t, cli.ExitUsage, `node name "N1" must match`)
	ars(t, nil, "", "keygen", "-dir", dir, "-nodes", "n1=10.0.0.300").Fails(t, cli.ExitUsage, "neither an IP address nor a DNS name")
	ars(t, nil, "", "keygen", "-dir", dir, "-nodes", "n1=bad/name").Fails(t, cli.ExitUsage, "neither an IP address nor a DNS name")
	ars(t, nil, "", "keygen", "-dir", dir, "-nodes", "n1=127.0.0.1", "extra").Fails(t, cli.ExitUsage, "usage: ars keygen [flags]")
}

func TestNodeListFlag(t *testing.T) {
	l := nameAddrList{kind: "node", valid: transport.ValidNodeName}
	for _, v := range []string{"n1=127.0.0.1, n2=[::1]", "n1=n1.lab.internal,n3=10.0.0.3"} {
		if err := l.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	want := []pki.PKINode{
		{Name: "n1", IPs: []string{"127.0.0.1"}, DNS: []string{"n1.lab.internal"}},
		{Name: "n2", IPs: []string{"::1"}},
		{Name: "n3", IPs: []string{"10.0.0.3"}},
	}
	if !reflect.DeepEqual(l.nodes(), want) {
		t.Errorf("nodes = %+v, want %+v", l.nodes(), want)
	}
	for _, bad := range []string{"n1", "=1.2.3.4", "n1=", "N1=1.2.3.4", "n.1=1.2.3.4", "n1=1.2.3", "n1=a b", "n1=fd00::zz"} {
		if err := (&nameAddrList{kind: "node", valid: transport.ValidNodeName}).Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
	r := nameAddrList{kind: "replica", valid: transport.ValidReplicaName}
	if err := r.Set("lin.unbound_2=10.0.1.2,win-bind=win.lab.internal"); err != nil {
		t.Fatal(err)
	}
	wantR := []pki.PKIReplica{{Name: "lin.unbound_2", IPs: []string{"10.0.1.2"}}, {Name: "win-bind", DNS: []string{"win.lab.internal"}}}
	if !reflect.DeepEqual(r.replicas(), wantR) {
		t.Errorf("replicas = %+v, want %+v", r.replicas(), wantR)
	}
}

// readPEMCert parses the certificate in path.
func readPEMCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := pki.ReadCert(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkKeygenReplica checks that dir holds a replica certificate for name
// from dir's CA, with want as its SANs, that the replica agent can load.
func checkKeygenReplica(t *testing.T, dir, name string, want []string) {
	t.Helper()
	f := transport.TLSFiles{CA: filepath.Join(dir, pki.CACertFile), Cert: filepath.Join(dir, pki.ReplicaCertFile(name)), Key: filepath.Join(dir, pki.ReplicaKeyFile(name))}
	for path, mode := range map[string]os.FileMode{f.Cert: 0o644, f.Key: 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v %v, want mode %v", path, fi, err, mode)
		}
	}
	if _, err := transport.AgentServerTLS(f); err != nil {
		t.Errorf("replica %s: %v", name, err)
	}
	c := readPEMCert(t, f.Cert)
	pool := x509.NewCertPool()
	pool.AddCert(readPEMCert(t, f.CA))
	chains, err := c.Verify(x509.VerifyOptions{Roots: pool})
	if err != nil {
		t.Fatalf("replica %s: %v", name, err)
	}
	cs := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}, VerifiedChains: chains}
	if got, ok := transport.ReplicaName(cs); !ok || got != name {
		t.Errorf("replica %s: ReplicaName %q %v", name, got, ok)
	}
	var sans []string
	for _, ip := range c.IPAddresses {
		sans = append(sans, ip.String())
	}
	sans = append(sans, c.DNSNames...)
	if !reflect.DeepEqual(sans, want) {
		t.Errorf("replica %s: SANs %v, want %v", name, sans, want)
	}
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestKeygenReplicas(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	// With -nodes: everything, replica certificates included.
	r := ars(t, nil, "", "keygen", "-dir", dir, "-nodes", "n1=127.0.0.1", "-replicas", "win-bind=10.0.1.1,lin.unbound=10.0.1.2",
		"-replicas", "win-bind=win.lab.internal", "-o", "json").OK(t)
	for _, f := range []string{"replica-win-bind.pem", "replica-win-bind-key.pem", "replica-lin.unbound.pem", "replica-lin.unbound-key.pem", "n1.pem", "operator.token"} {
		if !strings.Contains(r.Stdout, `"file": "`+filepath.Join(dir, f)+`"`) {
			t.Errorf("output does not list %s:\n%s", f, r.Stdout)
		}
	}
	checkKeygenReplica(t, dir, "win-bind", []string{"10.0.1.1", "win.lab.internal"})
	checkKeygenReplica(t, dir, "lin.unbound", []string{"10.0.1.2"})

	// Alone: replica certificates from the CA already there, nothing else.
	before := dirEntries(t, dir)
	caKey, _ := os.ReadFile(filepath.Join(dir, pki.CAKeyFile))
	r = ars(t, nil, "", "keygen", "-dir", dir, "-replicas", "r3=10.0.1.3", "-validity", "24h").OK(t)
	if !strings.Contains(r.Stdout, filepath.Join(dir, "replica-r3-key.pem")) || strings.Contains(r.Stdout, "ca.pem") {
		t.Errorf("output:\n%s", r.Stdout)
	}
	if after := dirEntries(t, dir); len(after) != len(before)+2 {
		t.Errorf("files %v, want %v and the two of r3", after, before)
	}
	checkKeygenReplica(t, dir, "r3", []string{"10.0.1.3"})
	if c := readPEMCert(t, filepath.Join(dir, "replica-r3.pem")); time.Until(c.NotAfter) > 25*time.Hour {
		t.Errorf("-validity ignored: %s", c.NotAfter)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, pki.CAKeyFile)); string(after) != string(caKey) {
		t.Error("the CA key changed")
	}

	// Any existing target: nothing written.
	before = dirEntries(t, dir)
	ars(t, nil, "", "keygen", "-dir", dir, "-replicas", "r4=10.0.1.4,r3=10.0.1.3").Fails(t, cli.ExitFailed, "replica-r3.pem")
	if after := dirEntries(t, dir); !reflect.DeepEqual(after, before) {
		t.Errorf("a refused run wrote files: %v", after)
	}
}

func TestKeygenReplicasUsage(t *testing.T) {
	dir := t.TempDir()
	noCA := filepath.Join(dir, "empty")
	ars(t, nil, "", "keygen", "-dir", noCA, "-replicas", "r1=10.0.1.1").Fails(t, cli.ExitFailed, "has no ca.pem")
	ars(t, nil, "", "keygen", "-dir", dir, "-replicas", "R1=10.0.1.1").Fails(t, cli.ExitUsage, `invalid value "R1=10.0.1.1" for flag -replicas: "R1=10.0.1.1": replica name "R1" must match`)
	ars(t, nil, "", "keygen", "-dir", dir, "-replicas", "r1").Fails(t, cli.ExitUsage, `"r1": want NAME=ADDR`)
	ars(t, nil, "", "keygen", "-dir", dir, "-replicas", "r1=10.0.1.300").Fails(t, cli.ExitUsage, "neither an IP address nor a DNS name")
	ars(t, nil, "", "keygen", "-dir", dir, "-nodes", "n1=10.0.0.1", "-replicas", "n1=10.0.1.1").Fails(t, cli.ExitUsage, `"n1" is given to a node and a replica`)
	ars(t, nil, "", "keygen", "-dir", dir, "-replicas", "r1=10.0.1.1", "-operators", "alice").Fails(t, cli.ExitUsage, "need -nodes")
	ars(t, nil, "", "keygen", "-dir", dir, "-replicas", "r1=10.0.1.1", "-loopback").Fails(t, cli.ExitUsage, "need -nodes")
	ars(t, nil, "", "keygen", "-dir", dir, "-replicas", "r1=10.0.1.1", "-validity", "0s").Fails(t, cli.ExitUsage, "-validity")
	if got := dirEntries(t, dir); len(got) != 0 {
		t.Errorf("refused runs wrote %v", got)
	}
}
