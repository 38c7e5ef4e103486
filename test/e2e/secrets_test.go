package e2e

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cmd/ars/agent"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/test/harness"
	"github.com/ars-project/ars/test/testutil"
	"github.com/ars-project/ars/vcsim"
)

// Secrets — the vCenter password, the API tokens, the gossip key and the
// nodes' private keys — appear in no log line (debug level), no error a
// caller gets back, no /metrics page and no snapshot, after a run that
// exercises the paths that handle them: vCenter login and a forced
// re-login, requests with good and wrong tokens, alerts, forwarding from a
// follower, a snapshot save.
func TestSecretsNeverLeak(t *testing.T) {
	const vcPassword = "Vc-e2e-Pa55word-4471-unique"
	sim, err := vcsim.Start(vcsim.Options{Username: "ars@vsphere.local", Password: vcPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	pw := filepath.Join(t.TempDir(), "vc.password")
	if err := os.WriteFile(pw, []byte(vcPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs testutil.SyncBuffer
	c := harness.NewWithLogs(t, 3, &logs, harness.DefaultTimings, func(cfg *agent.Config) {
		cfg.VCenter = &agent.VCenterConfig{URL: sim.URL(), Username: "ars@vsphere.local", PasswordFile: pw, Thumbprint: sim.Thumbprint()}
	})
	leader := c.Leader(15 * time.Second)
	ctx := harness.Ctx(t)
	harness.WaitFor(t, 10*time.Second, "the leader's vCenter session", func() error {
		if sim.SessionCount(ctx) != 1 {
			return errors.New("no session")
		}
		return nil
	})
	// A re-login reads the password again.
	if err := sim.Terminate(ctx); err != nil {
		t.Fatal(err)
	}

	secrets := map[string]string{"vCenter password": vcPassword}
	for role, tok := range c.Tokens {
		secrets[role+" token"] = tok
	}
	key, err := os.ReadFile(filepath.Join(c.Dir, "gossip.key"))
	if err != nil {
		t.Fatal(err)
	}
	secrets["gossip key"] = strings.TrimSpace(string(key))
	for _, n := range c.Nodes {
		pem, err := os.ReadFile(n.Cfg.TLS.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		// A line of the key's base64 body is enough to recognise it.
		lines := strings.Split(string(pem), "\n")
		secrets[n.Name+" private key"] = lines[1]
	}

	var answers []string
	f := c.Follower()
	harness.Apply(t, c.Client(f, "operator"), spec("dns", 4))
	if _, err := c.Client(f, "detector").PostAlert(ctx, api.AlertRequest{ID: "s-1", Service: "dns", Replica: "r0", Kind: fsm.KindExploit}); err != nil {
		t.Fatal(err)
	}
	// Wrong and misplaced tokens: each answer is an error, checked below.
	for _, bad := range []string{c.Tokens["detector"] + "x", "nope", c.Tokens["reader"]} {
		cl, err := api.NewClient(f.Agent.APIURL(), bad, c.ClientTLS())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.PostAlert(ctx, api.AlertRequest{ID: "s-2", Service: "dns", Replica: "r0", Kind: fsm.KindExploit}); err == nil {
			t.Fatalf("an alert with token %q was accepted", bad)
		} else {
			answers = append(answers, err.Error())
		}
		if _, err := cl.ApplyService(ctx, spec("dns2", 2)); err == nil {
			t.Fatalf("an apply with token %q was accepted", bad)
		} else {
			answers = append(answers, err.Error())
		}
	}
	var snap bytes.Buffer
	if err := c.Client(leader, "operator").SnapshotSave(ctx, &snap); err != nil {
		t.Fatal(err)
	}
	var pages []string
	for _, n := range c.Nodes {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.Agent.APIURL()+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+c.Tokens["reader"])
		res, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: c.ClientTLS()}}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !bytes.Contains(b, []byte("ars_")) {
			t.Fatalf("/metrics on %s: %d", n.Name, res.StatusCode)
		}
		pages = append(pages, string(b))
	}
	harness.WaitFor(t, 10*time.Second, "the re-login", func() error {
		if sim.SessionCount(ctx) != 1 {
			return errors.New("no session")
		}
		return nil
	})

	if !strings.Contains(logs.String(), "vcenter session opened") {
		t.Fatal("the log capture saw no vCenter login: the test would prove nothing")
	}
	places := map[string]string{
		"logs":     logs.String(),
		"answers":  strings.Join(answers, "\n"),
		"metrics":  strings.Join(pages, "\n"),
		"snapshot": snap.String(),
	}
	for where, text := range places {
		for what, secret := range secrets {
			if secret == "" {
				t.Fatalf("empty secret %s", what)
			}
			if strings.Contains(text, secret) {
				t.Errorf("the %s appears in the %s", what, where)
			}
		}
	}
	t.Logf("checked %d secrets in %d bytes of logs, %d answers, %d metrics pages, a %d-byte snapshot",
		len(secrets), len(places["logs"]), len(answers), len(pages), snap.Len())
}
