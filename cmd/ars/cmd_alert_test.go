package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/pki"
)

// alertNode is a test node with service "dns" (replicas win-bind,
// lin-unbound).
func alertNode(t *testing.T) *testNode {
	t.Helper()
	n := startNode(t, false)
	spec, err := fsm.DecodeServiceSpec([]byte(`{"name":"dns","address":"192.0.2.53:53",
		"replicas":[{"name":"win-bind","impl":"bind9","os":"windows","platform":"vm"},
		            {"name":"lin-unbound","impl":"unbound","os":"linux","platform":"container"}],
		"probe":{"query":"www.lab.internal.","expect":"192.0.2.10"}}`))
	if err != nil {
		t.Fatal(err)
	}
	n.b.apply(t, fsm.ServiceApply{Spec: spec})
	return n
}

// ledger is the node's alert ledger, oldest first.
func (n *testNode) ledger() []fsm.AlertRecord {
	n.b.mu.Lock()
	defer n.b.mu.Unlock()
	return n.b.m.Alerts()
}

// roleEnv is n's environment with the token of keygen's token named role
// (operator, detector or reader) in a token file.
func (n *testNode) roleEnv(t *testing.T, role string) map[string]string {
	t.Helper()
	p := getPKI(t)
	data, err := os.ReadFile(p.tokens)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Tokens []pki.Token `yaml:"tokens"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	for _, tok := range f.Tokens {
		if tok.Name == role {
			file := filepath.Join(t.TempDir(), role+".token")
			if err := os.WriteFile(file, []byte(tok.Secret+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return map[string]string{cli.EnvAddr: n.addr, cli.EnvCACert: p.ca, cli.EnvTokenFile: file}
		}
	}
	t.Fatalf("keygen wrote no %q token", role)
	return nil
}

func TestAlertCommand(t *testing.T) {
	n := alertNode(t)
	det := n.roleEnv(t, "detector")

	r := ars(t, det, "", "alert", "dns", "win-bind", "-kind", "exploit", "-id", "seconddep-1", "-evidence", "shellcode blocked").OK(t)
	if !strings.Contains(r.Stdout, "Alert seconddep-1 committed: exploit dns/win-bind (index ") {
		t.Fatalf("stdout %q", r.Stdout)
	}
	r = ars(t, det, "", "alert", "-kind", "exploit", "-id", "seconddep-1", "dns", "win-bind").OK(t)
	if !strings.Contains(r.Stdout, "seconddep-1 duplicate") {
		t.Fatalf("repeat: stdout %q", r.Stdout)
	}
	l := n.ledger()
	if len(l) != 1 || l[0].ID != "seconddep-1" || l[0].Source != "cli" || l[0].Evidence != "shellcode blocked" || l[0].At == 0 {
		t.Fatalf("ledger %+v", l)
	}

	// Operators may post too; a random id; evidence from stdin; JSON.
	r = ars(t, n.env(t), "line one\nline two\n", "alert", "dns", "lin-unbound", "-kind", "dos", "-source", "probe-x", "-evidence", "-", "-o", "json").OK(t)
	var res api.AlertResponse
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
		t.Fatalf("-o json: %v\n%s", err, r.Stdout)
	}
	if !strings.HasPrefix(res.ID, "cli-") || len(res.ID) != 36 || res.Duplicate || res.Kind != "dos" || res.Source != "probe-x" {
		t.Fatalf("response %+v", res)
	}
	if l := n.ledger(); len(l) != 2 || l[1].ID != res.ID || l[1].Evidence != "line one\nline two" {
		t.Fatalf("ledger %+v", l)
	}

	ars(t, det, "", "alert", "dns", "win-bind").Fails(t, cli.ExitUsage, "-kind is required")
	ars(t, det, "", "alert", "dns", "win-bind", "-kind", "virus").Fails(t, cli.ExitUsage, `-kind "virus"`)
	ars(t, det, "", "alert", "dns", "-kind", "dos").Fails(t, cli.ExitUsage, "usage: ars alert [flags] SERVICE REPLICA")
	ars(t, det, strings.Repeat("x", api.MaxAlertEvidenceBytes+1), "alert", "dns", "win-bind", "-kind", "dos", "-evidence", "-").Fails(t, cli.ExitUsage, "16384")
	ars(t, det, "", "alert", "nope", "win-bind", "-kind", "dos").Fails(t, cli.ExitFailed, "(unknown_service)")
	ars(t, det, "", "alert", "dns", "nope", "-kind", "dos").Fails(t, cli.ExitFailed, "(unknown_replica)")
	ars(t, det, "", "alert", "dns", "win-bind", "-kind", "dos", "-id", "no spaces").Fails(t, cli.ExitFailed, "(invalid)")
	ars(t, n.roleEnv(t, "reader"), "", "alert", "dns", "win-bind", "-kind", "dos").Fails(t, cli.ExitFailed, "(forbidden)")
	ars(t, map[string]string{cli.EnvAddr: "127.0.0.1:1"}, "", "alert", "dns", "win-bind", "-kind", "dos").Fails(t, cli.ExitUnreachable, "cannot reach")
	if l := n.ledger(); len(l) != 2 {
		t.Fatalf("failed alerts changed the ledger: %+v", l)
	}
}
