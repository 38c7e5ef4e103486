package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/fsm"
)

const exampleService = "../../deploy/examples/service-dns.yaml"

func TestStatusTableAndJSON(t *testing.T) {
	n := startNode(t, false)
	env := n.env(t)

	r := ars(t, env, "", "status").OK(t)
	for _, want := range []string{"Node:", "n1", "State:", "leader", "Leader API:", "https://127.0.0.1:7500", "Voters:"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("status table lacks %q:\n%s", want, r.Stdout)
		}
	}
	if strings.HasPrefix(strings.TrimSpace(r.Stdout), "{") {
		t.Errorf("table output looks like JSON:\n%s", r.Stdout)
	}

	r = ars(t, env, "", "status", "-o", "json").OK(t)
	var st api.Status
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		t.Fatalf("status -o json is not JSON: %v\n%s", err, r.Stdout)
	}
	if want := n.b.Status(); st.Node != want.Node || st.State != want.State || st.Term != want.Term ||
		st.CommitIndex != want.CommitIndex || st.AppliedIndex != want.AppliedIndex || st.Leader != want.Leader ||
		st.Version != want.Version || st.Members != want.Members {
		t.Errorf("status -o json = %+v, want %+v", st, want)
	}
	if !strings.Contains(r.Stdout, "\n  \"node\": \"n1\"") {
		t.Errorf("JSON not indented with two spaces:\n%s", r.Stdout)
	}
}

func TestMembersAndPeers(t *testing.T) {
	n := startNode(t, false)
	env := n.env(t)

	r := ars(t, env, "", "members").OK(t)
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("members table:\n%s", r.Stdout)
	}
	for i, name := range []string{"n1", "n2", "n3"} { // sorted by name
		if f := strings.Fields(lines[i+1]); f[0] != name {
			t.Errorf("row %d = %q, want member %s", i+1, lines[i+1], name)
		}
	}
	if !strings.Contains(lines[3], "suspect") {
		t.Errorf("n3 row %q lacks its status", lines[3])
	}

	r = ars(t, env, "", "members", "-o", "json").OK(t)
	var ms []api.Member
	if err := json.Unmarshal([]byte(r.Stdout), &ms); err != nil || len(ms) != 3 {
		t.Fatalf("members -o json: %v\n%s", err, r.Stdout)
	}

	r = ars(t, env, "", "raft", "peers").OK(t)
	if !strings.Contains(r.Stdout, "127.0.0.2:7501") || !strings.Contains(r.Stdout, "SUFFRAGE") {
		t.Errorf("raft peers table:\n%s", r.Stdout)
	}
	r = ars(t, env, "", "raft", "peers", "-o", "json").OK(t)
	var ps []api.Peer
	var want []api.Peer
	for _, p := range n.b.peers {
		want = append(want, api.Peer{ID: p.ID, Address: p.Address, Suffrage: p.Suffrage, Leader: p.Leader})
	}
	if err := json.Unmarshal([]byte(r.Stdout), &ps); err != nil || !reflect.DeepEqual(ps, want) {
		t.Errorf("raft peers -o json = %+v (%v), want %+v", ps, err, n.b.peers)
	}
}

func TestClusterActions(t *testing.T) {
	n := startNode(t, false)
	env := n.env(t)

	r := ars(t, env, "", "join", "127.0.0.2:7502", "127.0.0.3:7502").OK(t)
	if !strings.Contains(r.Stdout, "Joined 2 node(s)") {
		t.Errorf("join output %q", r.Stdout)
	}
	if !reflect.DeepEqual(n.b.joined, []string{"127.0.0.2:7502", "127.0.0.3:7502"}) {
		t.Errorf("backend joined %v", n.b.joined)
	}
	r = ars(t, env, "", "join", "-o", "json", "127.0.0.4:7502").OK(t)
	if strings.TrimSpace(r.Stdout) != "{\n  \"joined\": 1\n}" {
		t.Errorf("join -o json = %q", r.Stdout)
	}

	ars(t, env, "", "raft", "transfer-leader", "n2").OK(t)
	ars(t, env, "", "raft", "transfer-leader").OK(t)
	if !reflect.DeepEqual(n.b.transferred, []string{"n2", ""}) {
		t.Errorf("transfers %q", n.b.transferred)
	}
	ars(t, env, "", "raft", "transfer-leader", "nx").Fails(t, cli.ExitFailed, "(not_found)")

	ars(t, env, "", "raft", "remove-peer", "n3").OK(t)
	if !reflect.DeepEqual(n.b.removed, []string{"n3"}) {
		t.Errorf("removed %v", n.b.removed)
	}

	r = ars(t, env, "", "leave").OK(t)
	if !n.b.left || !strings.Contains(r.Stdout, "left the cluster") {
		t.Errorf("leave: backend left=%v, output %q", n.b.left, r.Stdout)
	}
}

func TestServiceApplyListShow(t *testing.T) {
	n := startNode(t, false)
	env := n.env(t)

	r := ars(t, env, "", "service", "apply", exampleService).OK(t)
	if !strings.Contains(r.Stdout, "Service dns applied: generation 1") {
		t.Errorf("apply output %q", r.Stdout)
	}
	svc, ok := n.b.Service("dns")
	if !ok || len(svc.Spec.Replicas) != 6 || svc.Spec.Probe.Expect != "192.0.2.10" {
		t.Fatalf("applied service = %+v", svc)
	}

	// The same spec as JSON on stdin, with flags after the argument.
	spec, err := json.Marshal(svc.Spec)
	if err != nil {
		t.Fatal(err)
	}
	r = ars(t, env, string(spec), "service", "apply", "-", "-o", "json").OK(t)
	var res fsm.Result
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil || res.Service != "dns" || res.Index == 0 {
		t.Errorf("apply -o json = %q (%v)", r.Stdout, err)
	}

	// A switch with measurements, for the history table.
	n.b.apply(t, fsm.Switch{Service: "dns", From: "bind9-win", To: "unbound-win", Reason: "dos", At: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC).UnixNano()})
	cur, _ := n.b.Service("dns")
	n.b.apply(t, fsm.SwitchDone{Service: "dns", Generation: cur.Generation, DetectionMS: 250, SwitchMS: 41.5, TotalMS: 291.5, At: time.Date(2024, 5, 1, 12, 0, 1, 0, time.UTC).UnixNano(),
		OutageMS: ptr(262.25), ProbesSent: ptr(9), ProbesLost: ptr(6), ExposureMS: ptr(270.5)})
	cur, _ = n.b.Service("dns")
	active, _ := cur.Active()
	standby, _ := cur.Standby()

	r = ars(t, env, "", "service", "list").OK(t)
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("service list:\n%s", r.Stdout)
	}
	f := strings.Fields(lines[1])
	if f[0] != "dns" || f[1] != "192.0.2.53:53" || f[2] != active.Name || f[3] != standby.Name || f[4] != "6" {
		t.Errorf("service list row %q; want dns, its address, active %s, standby %s, 6 replicas", lines[1], active.Name, standby.Name)
	}
	r = ars(t, env, "", "service", "list", "-o", "json").OK(t)
	var list []fsm.Service
	if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil || len(list) != 1 || list[0].Generation != cur.Generation {
		t.Errorf("service list -o json: %v\n%s", err, r.Stdout)
	}

	r = ars(t, env, "", "service", "show", "dns").OK(t)
	for _, want := range []string{
		"Service:", "192.0.2.53:53", "A www.lab.internal. expect 192.0.2.10",
		"REPLICA", "knot-ct", "knot-resolver", "container", "HANDOVER", "nic",
		"unbound-win", "active",
		"Recent switches (1 of 1", "2024-05-01 12:00:00.000", "bind9-win (bind9/vm)", "unbound-win (unbound/vm)",
		"250.0ms", "41.5ms", "291.5ms",
		"TOTAL", "OUTAGE", "PROBES-LOST", "EXPOSURE", "262.2ms", "6/9", "270.5ms", "TOTAL: trigger to verified (not downtime)",
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("service show lacks %q:\n%s", want, r.Stdout)
		}
	}
	// Nothing that is not measured: no replica health, no "downtime".
	for _, bad := range []string{"HEALTH", "unknown", "DOWNTIME", "LOST\t"} {
		if strings.Contains(r.Stdout, bad) {
			t.Errorf("service show shows %q:\n%s", bad, r.Stdout)
		}
	}
	r = ars(t, env, "", "service", "show", "dns", "-history", "0").OK(t)
	if strings.Contains(r.Stdout, "Recent switches") {
		t.Errorf("-history 0 still shows switches:\n%s", r.Stdout)
	}
	r = ars(t, env, "", "service", "show", "-o", "json", "dns").OK(t)
	var got fsm.Service
	want := cur.Clone()
	for i := range want.Replicas {
		want.Replicas[i].Health = "" // a constant the API leaves out
	}
	if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("service show -o json = %+v (%v), want %+v", got, err, want)
	}
	if strings.Contains(r.Stdout, `"health"`) {
		t.Errorf("service show -o json shows the health constant:\n%s", r.Stdout)
	}

	ars(t, env, "", "service", "show", "nope").Fails(t, cli.ExitFailed, "(unknown_service)")
}

func ptr[T any](v T) *T { return &v }

func TestServiceApplyErrors(t *testing.T) {
	n := startNode(t, false)
	env := n.env(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badYAML := write("bad.yaml", "name: dns\nreplicas: [\n")
	badOS := write("bados.yaml", "name: dns\naddress: 192.0.2.53:53\nreplicas:\n  - {name: a, impl: bind9, os: beos, platform: vm}\nprobe: {query: www.lab.internal.}\n")
	unknown := write("unknown.json", `{"name":"dns","adress":"192.0.2.53:53"}`)
	twoDocs := write("two.yaml", "name: a\n---\nname: b\n")
	list := write("list.yaml", "- name: a\n")

	ars(t, env, "", "service", "apply", badYAML).Fails(t, cli.ExitFailed, badYAML+":2: invalid YAML")
	ars(t, env, "", "service", "apply", badOS).Fails(t, cli.ExitFailed, `replicas[0].os: must be "windows" or "linux" (invalid)`)
	ars(t, env, "", "service", "apply", unknown).Fails(t, cli.ExitFailed, "adress")
	ars(t, env, "", "service", "apply", twoDocs).Fails(t, cli.ExitFailed, twoDocs+":2: more than one YAML document")
	ars(t, env, "", "service", "apply", list).Fails(t, cli.ExitFailed, "must be a mapping")
	ars(t, env, "", "service", "apply", filepath.Join(dir, "missing.yaml")).Fails(t, cli.ExitFailed, "no such file")
	ars(t, env, "   \n", "service", "apply", "-").Fails(t, cli.ExitFailed, "stdin: empty spec")
	if svcs := n.b.Services(); len(svcs) != 0 {
		t.Errorf("failed applies changed state: %+v", svcs)
	}
}

func TestSnapshotSaveRestore(t *testing.T) {
	n := startNode(t, false)
	env := n.env(t)
	ars(t, env, "", "service", "apply", exampleService).OK(t)
	want, err := n.b.m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	out := filepath.Join(dir, "backup.snap")
	r := ars(t, env, "", "snapshot", "save", out).OK(t)
	if !strings.Contains(r.Stdout, "Saved snapshot to "+out) {
		t.Errorf("output %q", r.Stdout)
	}
	got, err := os.ReadFile(out)
	if err != nil || string(got) != string(want) {
		t.Fatalf("saved snapshot differs from the backend's (%v)", err)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Errorf("snapshot mode %v, want 0600", fi.Mode().Perm())
	}

	// No overwrite without -force; the file stays as it was.
	if err := os.WriteFile(out, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	ars(t, env, "", "snapshot", "save", out).Fails(t, cli.ExitFailed, "exists (use -force to overwrite)")
	if b, _ := os.ReadFile(out); string(b) != "keep me" {
		t.Errorf("file overwritten without -force: %q", b)
	}
	ars(t, env, "", "snapshot", "save", out, "-force").OK(t) // flag after the argument
	if b, _ := os.ReadFile(out); string(b) != string(want) {
		t.Errorf("-force did not overwrite")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temporary files left behind: %v", ents)
	}

	// Restore into an empty node.
	n2 := startNode(t, false)
	env2 := n2.env(t)
	r = ars(t, env2, "", "snapshot", "restore", out).OK(t)
	if !strings.Contains(r.Stdout, "Restored snapshot from") {
		t.Errorf("output %q", r.Stdout)
	}
	if _, ok := n2.b.Service("dns"); !ok {
		t.Errorf("restore did not bring back service dns")
	}
	// Garbage is refused by the node; nothing changes.
	ars(t, env2, "not a snapshot", "snapshot", "restore", "-").Fails(t, cli.ExitFailed, "ars: ")
	if _, ok := n2.b.Service("dns"); !ok {
		t.Errorf("a failed restore changed the state")
	}
}

func TestExitCodes(t *testing.T) {
	n := startNode(t, false)
	env := n.env(t)
	p := getPKI(t)

	closed := closedAddr(t)

	// A TLS server with a certificate from another CA.
	foreign := startForeignTLS(t)

	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range env {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}

	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		// 2: usage.
		{"no command", env, nil, cli.ExitUsage, ""},
		{"unknown command", env, []string{"frobnicate"}, cli.ExitUsage, `unknown command "frobnicate"`},
		{"unknown subcommand", env, []string{"raft", "elect"}, cli.ExitUsage, `unknown command "raft elect" (try: raft peers`},
		{"unknown flag", env, []string{"status", "-bogus"}, cli.ExitUsage, "unknown flag -bogus (see 'ars status -h')"},
		{"too many args", env, []string{"status", "extra"}, cli.ExitUsage, "usage: ars status [flags]"},
		{"missing arg", env, []string{"raft", "remove-peer"}, cli.ExitUsage, "usage: ars raft remove-peer [flags] ID"},
		{"bad output", env, []string{"status", "-o", "yaml"}, cli.ExitUsage, `-o "yaml": must be table or json`},
		{"token and token file", env, []string{"status", "-token", "x", "-token-file", p.operatorToken}, cli.ExitUsage, "either -token or -token-file"},
		{"cert without key", env, []string{"status", "-client-cert", p.cert}, cli.ExitUsage, "-client-cert and -client-key go together"},
		{"missing token file", with(cli.EnvTokenFile, "/nonexistent/token"), []string{"status"}, cli.ExitUsage, "ARS_HTTP_TOKEN_FILE: open /nonexistent/token"},
		{"bad duration", env, []string{"status", "-timeout", "soon"}, cli.ExitUsage, "invalid value \"soon\" for flag -timeout"},
		// 1: the node said no.
		{"bad token", with(cli.EnvTokenFile, "", cli.EnvToken, "wrong"), []string{"status"}, cli.ExitFailed, "unauthorized: missing or invalid token (set -token or ARS_HTTP_TOKEN) (unauthorized)"},
		{"no token", with(cli.EnvTokenFile, ""), []string{"status"}, cli.ExitFailed, "(unauthorized)"},
		{"unknown service", env, []string{"service", "show", "nope"}, cli.ExitFailed, `service "nope" does not exist (unknown_service)`},
		// 3: unreachable or TLS.
		{"connection refused", with(cli.EnvAddr, closed), []string{"status"}, cli.ExitUnreachable, "connection refused"},
		{"unknown CA", with(cli.EnvAddr, foreign), []string{"status"}, cli.ExitUnreachable, "TLS failure with https://" + foreign},
		{"system roots", with(cli.EnvAddr, "https://"+n.addr, cli.EnvCACert, ""), []string{"status"}, cli.ExitUnreachable, "TLS failure"},
		{"bad CA file", with(cli.EnvCACert, "/nonexistent/ca.pem"), []string{"status"}, cli.ExitUnreachable, "TLS setup: tls: reading CA file"},
		{"http to https", with(cli.EnvCACert, ""), []string{"status"}, cli.ExitUnreachable, "the node speaks HTTPS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ars(t, tt.env, "", tt.args...)
			if tt.want == "" { // bare `ars`: usage on stderr
				if r.Code != tt.code || !strings.Contains(r.Stderr, "Usage: ars COMMAND") {
					t.Errorf("exit %d stderr %q", r.Code, r.Stderr)
				}
				return
			}
			r.Fails(t, tt.code, tt.want)
		})
	}
}

func TestNoLeader(t *testing.T) {
	n := startNode(t, false)
	n.b.leader = false
	ars(t, n.env(t), "", "service", "apply", exampleService).Fails(t, cli.ExitFailed, "ars: no leader elected (no_leader)")
	ars(t, n.env(t), "", "raft", "transfer-leader").Fails(t, cli.ExitFailed, "(no_leader)")
	// Reads are served locally.
	ars(t, n.env(t), "", "status").OK(t)
}

func TestFlagsOverrideEnv(t *testing.T) {
	n := startNode(t, false)
	p := getPKI(t)
	tok, err := os.ReadFile(p.operatorToken)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tok))

	// Everything from flags, nothing from the environment; flags before
	// the command (global) and after it both work.
	none := map[string]string{}
	ars(t, none, "", "status", "-addr", n.addr, "-ca-file", p.ca, "-token", token).OK(t)
	ars(t, none, "", "-addr", n.addr, "-ca-file", p.ca, "status", "-token-file", p.operatorToken).OK(t)
	ars(t, none, "", "-o", "json", "-addr", "https://"+n.addr, "-ca-file", p.ca, "-token", token, "status").OK(t)

	// ARS_HTTP_TOKEN works, and -token beats it.
	env := map[string]string{cli.EnvAddr: n.addr, cli.EnvCACert: p.ca, cli.EnvToken: token}
	ars(t, env, "", "status").OK(t)
	ars(t, env, "", "status", "-token", "wrong").Fails(t, cli.ExitFailed, "(unauthorized)")
	// -addr beats ARS_HTTP_ADDR.
	env[cli.EnvAddr] = "127.0.0.1:1"
	ars(t, env, "", "members", "-addr", n.addr).OK(t)
	// A client certificate is accepted alongside the token.
	env[cli.EnvClientCert], env[cli.EnvClientKey] = p.cert, p.key
	ars(t, env, "", "status", "-addr", n.addr).OK(t)
	// -tls-server-name must match the node certificate.
	ars(t, env, "", "status", "-addr", n.addr, "-tls-server-name", "n1").OK(t)
	ars(t, env, "", "status", "-addr", n.addr, "-tls-server-name", "other.example").Fails(t, cli.ExitUnreachable, "TLS failure")
}

func TestDevNodeOverPlainHTTP(t *testing.T) {
	// `ars agent -dev` serves plain HTTP without tokens on loopback: a bare
	// host:port with no TLS flags must reach it.
	n := startNode(t, true)
	r := ars(t, map[string]string{cli.EnvAddr: n.addr}, "", "status", "-o", "json").OK(t)
	var st api.Status
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil || st.Node != "n1" {
		t.Errorf("status over http: %v %q", err, r.Stdout)
	}
}

func TestHelp(t *testing.T) {
	r := ars(t, nil, "", "help").OK(t)
	for _, name := range app.Names() {
		if !app.Command(name).Hidden && !strings.Contains(r.Stdout, name) {
			t.Errorf("ars help lacks %q", name)
		}
	}
	r = ars(t, nil, "", "snapshot", "save", "-h").OK(t)
	for _, want := range []string{"Usage: ars snapshot save [flags] FILE", "-force", "Global flags:", "-addr", "(default 10m0s)"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("snapshot save -h lacks %q:\n%s", want, r.Stdout)
		}
	}
	r = ars(t, nil, "", "help", "raft", "peers").OK(t)
	if !strings.Contains(r.Stdout, "Usage: ars raft peers") {
		t.Errorf("help raft peers:\n%s", r.Stdout)
	}
	r = ars(t, nil, "", "raft", "-h").OK(t)
	if !strings.Contains(r.Stdout, "raft transfer-leader") {
		t.Errorf("raft -h:\n%s", r.Stdout)
	}
	r = ars(t, nil, "", "version", "-h").OK(t)
	if strings.Contains(r.Stdout, "-addr") {
		t.Errorf("local command shows API flags:\n%s", r.Stdout)
	}
	// The token never shows in help, even when given.
	r = ars(t, map[string]string{cli.EnvToken: "s3cret"}, "", "status", "-token", "s3cret", "-h").OK(t)
	if strings.Contains(r.Stdout, "s3cret") {
		t.Errorf("help shows the token:\n%s", r.Stdout)
	}
	ars(t, nil, "", "help", "nope").Fails(t, cli.ExitUsage, `unknown command "nope"`)
	r = ars(t, nil, "", "raft")
	if r.Code != cli.ExitUsage || !strings.Contains(r.Stderr, "raft peers") {
		t.Errorf("bare group: exit %d stderr %q", r.Code, r.Stderr)
	}
}

func TestVersion(t *testing.T) {
	r := ars(t, nil, "", "version").OK(t)
	if !strings.HasPrefix(r.Stdout, "ars dev") {
		t.Errorf("version = %q", r.Stdout)
	}
	r = ars(t, nil, "", "version", "-o", "json").OK(t)
	var v map[string]string
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil || v["version"] == "" || v["go"] == "" {
		t.Errorf("version -o json = %q (%v)", r.Stdout, err)
	}
}
