package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/cmd/internal/cli/clitest"
	"github.com/ars-project/ars/pki"
)

// TestCLIOutputHasNoSecrets: what the CLI prints — `ars snapshot save`
// to a file and to stdout, its refusals, the errors the API sends back for
// wrong and misplaced tokens, help — holds no token, gossip key or private
// key. (test/e2e's TestSecretsNeverLeak checks a real cluster's logs,
// answers, metrics and snapshot, with the vCenter password.)
func TestCLIOutputHasNoSecrets(t *testing.T) {
	p := getPKI(t)
	secrets := map[string]string{}
	tokens, err := os.ReadFile(p.tokens)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range regexp.MustCompile(`secret:\s*"?([^"\s]+)"?`).FindAllStringSubmatch(string(tokens), -1) {
		secrets["token "+string(rune('0'+i))] = m[1]
	}
	if len(secrets) < 3 {
		t.Fatalf("found %d token secrets in %s", len(secrets), p.tokens)
	}
	key, err := os.ReadFile(filepath.Join(p.dir, pki.GossipKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	secrets["gossip key"] = strings.TrimSpace(string(key))
	pem, err := os.ReadFile(p.key)
	if err != nil {
		t.Fatal(err)
	}
	secrets["node private key"] = strings.Split(string(pem), "\n")[1]

	n := startNode(t, false)
	env := n.env(t)
	var outputs []clitest.Result
	run := func(env map[string]string, args ...string) clitest.Result {
		r := ars(t, env, "", args...)
		outputs = append(outputs, r)
		return r
	}
	run(env, "service", "apply", exampleService).OK(t)
	run(env, "alert", "dns", "bind9-win", "-kind", "exploit", "-id", "cli-secret-1", "-evidence", "apparmor=\"DENIED\"").OK(t)
	out := filepath.Join(t.TempDir(), "backup.snap")
	run(env, "snapshot", "save", out).OK(t)
	run(env, "snapshot", "save", out).Fails(t, cli.ExitFailed, "exists")
	if r := run(env, "snapshot", "save", "-").OK(t); len(r.Stdout) == 0 {
		t.Fatal("snapshot save - wrote nothing")
	}
	saved, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, clitest.Result{Stdout: string(saved)})

	for name, tok := range secrets {
		if !strings.HasPrefix(name, "token") {
			continue
		}
		wrong := map[string]string{cli.EnvAddr: n.addr, cli.EnvCACert: p.ca, cli.EnvToken: tok + "x"}
		run(wrong, "status").Fails(t, cli.ExitFailed, "unauthorized")
		run(wrong, "snapshot", "save", filepath.Join(t.TempDir(), "x.snap"))
		right := map[string]string{cli.EnvAddr: n.addr, cli.EnvCACert: p.ca, cli.EnvToken: tok}
		run(right, "snapshot", "save", "-")     // refused unless operator
		run(right, "raft", "remove-peer", "n9") // refused unless operator
		run(right, "alert", "dns", "nope", "-kind", "dos")
		run(right, "status", "-token", tok, "-h") // help
	}
	for _, r := range outputs {
		for what, s := range secrets {
			if strings.Contains(r.Stdout, s) || strings.Contains(r.Stderr, s) {
				t.Errorf("the %s appears in CLI output (exit %d): stdout %.200q stderr %.200q", what, r.Code, r.Stdout, r.Stderr)
			}
		}
	}
	t.Logf("checked %d secrets in %d outputs", len(secrets), len(outputs))
}
