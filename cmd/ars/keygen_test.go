package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/pki"
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
	ars(t, nil, "", "keygen", "-dir", dir, "-nodes", "N1=127.0.0.1").Fails(t, cli.ExitFailed, "must match")
	ars(t, nil, "", "keygen", "-dir", dir, "-nodes", "n1=127.0.0.1", "extra").Fails(t, cli.ExitUsage, "usage: ars keygen [flags]")
}

func TestNodeListFlag(t *testing.T) {
	var l nodeList
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
	if !reflect.DeepEqual(l.nodes, want) {
		t.Errorf("nodes = %+v, want %+v", l.nodes, want)
	}
	for _, bad := range []string{"n1", "=1.2.3.4", "n1="} {
		if err := (&nodeList{}).Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
}
