package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cmd/ars/internal/config"
	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/test/testutil"
	"github.com/ars-project/ars/vcsim"
)

// waitForOr is waitFor with the failure message built when it fails.
func waitForOr(t *testing.T, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitForOr(t, cond, func() string { return "waiting for " + what })
}

// waitMetrics waits until the agent's /metrics has every line prefix of wants.
func waitMetrics(t *testing.T, a *Agent, wants ...string) {
	t.Helper()
	var missing []string
	waitForOr(t, func() bool {
		res, err := http.Get(a.APIURL() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		missing = missing[:0]
		for _, want := range wants {
			if !bytes.Contains(body, []byte(want)) {
				missing = append(missing, want)
			}
		}
		return len(missing) == 0
	}, func() string { return fmt.Sprintf("/metrics lacks %q", missing) })
}

// A -dev leader logs in to its embedded simulator, exposes the session in
// /metrics, and drives the sample service's VM replicas.
func TestDevLeaderHoldsVCenterSession(t *testing.T) {
	cfg := DevConfig()
	var logs testutil.SyncBuffer
	a := startOnFreePorts(t, cfg, &logs)
	defer a.Shutdown()
	if a.VSphere == nil {
		t.Fatal("dev agent has no vSphere driver")
	}
	waitFor(t, "one session on the embedded vCenter", func() bool { return a.vc.sim.SessionCount(context.Background()) == 1 })

	// The simulator counts the session when it answers the login; the
	// driver records it when the answer arrives, a moment later.
	waitMetrics(t, a, `ars_vsphere_sessions_live{vcenter="`+strings.TrimPrefix(strings.TrimSuffix(a.vc.URL(), "/sdk"), "https://")+`"} 1`,
		`ars_vsphere_logins_total{kind="initial"`, `ars_vsphere_call_duration_seconds_bucket{method="Login"`)

	svc, ok := a.Cluster.Service("dns")
	if !ok {
		t.Fatal("no sample service")
	}
	r, _ := svc.Spec.Replica("unbound-win")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.VSphere.Detach(ctx, r); err != nil {
		t.Fatal(err)
	}
	obs, err := a.VSphere.Observe(ctx, r)
	if err != nil || obs.NICConnected || !obs.Supports.Restore {
		t.Fatalf("observe sample replica: %+v, %v", obs, err)
	}
	if strings.Contains(logs.String(), "not used") && strings.Contains(logs.String(), "vcenter") {
		t.Errorf("the agent still says vcenter settings are not used:\n%s", logs.String())
	}
}

// With a configured vCenter the session follows leadership: one session
// while the node leads, none after it stops; the password (from a file)
// is in no log line, even at debug level.
func TestVCenterSessionFollowsLeadership(t *testing.T) {
	const password = "Agent-vc-Pa55word-9731"
	sim, err := vcsim.Start(vcsim.Options{Username: "ars@vsphere.local", Password: password})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "vcenter.password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DevConfig()
	cfg.Log.Level = "debug"
	cfg.VCenter = &config.VCenter{URL: sim.URL(), Username: "ars@vsphere.local", PasswordFile: pwFile, Thumbprint: sim.Thumbprint()}
	var logs testutil.SyncBuffer
	a := startOnFreePorts(t, cfg, &logs)
	waitFor(t, "the leader's session", func() bool { return sim.SessionCount(context.Background()) == 1 })
	// The embedded simulator of -dev is not used when a vCenter is configured.
	if n := a.vc.sim.SessionCount(context.Background()); n != 0 {
		t.Errorf("%d sessions on the embedded simulator", n)
	}
	// Force a re-login: the password is read again.
	if err := sim.Terminate(context.Background()); err != nil {
		t.Fatal(err)
	}
	svc, _ := a.Cluster.Service("dns")
	r, _ := svc.Spec.Replica("bind9-win")
	r.VM = "DC0_H0_VM0" // a VM of the configured vCenter
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := a.VSphere.Observe(ctx, r); err != nil {
		t.Fatal(err)
	}
	if n := sim.SessionCount(context.Background()); n != 1 {
		t.Fatalf("%d sessions after re-login", n)
	}

	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if n := sim.SessionCount(context.Background()); n != 0 {
		t.Fatalf("%d sessions after the node stopped leading, want 0", n)
	}
	if _, err := a.VSphere.Observe(context.Background(), r); !errors.Is(err, driver.ErrUnavailable) {
		t.Fatalf("observe after leadership = %v", err)
	}
	out := logs.String()
	if strings.Contains(out, password) {
		t.Fatalf("the agent log contains the vCenter password:\n%s", out)
	}
	for _, want := range []string{"vcenter session opened", "logged in again", "vcenter session closed"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// With two vCenters in vcenters the leader holds one session on each (the
// metrics say so per vcenter), logs out of both when it stops, and the API
// refuses a spec whose VM replica names an unknown vCenter, or none,
// without committing anything.
func TestTwoVCentersOneSessionEach(t *testing.T) {
	dir := t.TempDir()
	var vcs []config.VCenter
	sims := map[string]*vcsim.Sim{}
	for _, name := range []string{"east", "west"} {
		pw := "pw-" + name
		sim, err := vcsim.Start(vcsim.Options{Username: "ars", Password: pw})
		if err != nil {
			t.Fatal(err)
		}
		defer sim.Close()
		sims[name] = sim
		f := filepath.Join(dir, name+".password")
		if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		vcs = append(vcs, config.VCenter{Name: name, URL: sim.URL(), Username: "ars", PasswordFile: f, Thumbprint: sim.Thumbprint()})
	}
	cfg := DevConfig()
	cfg.VCenters = vcs
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a := startOnFreePorts(t, cfg, io.Discard)
	defer a.Shutdown()
	for name, sim := range sims {
		waitFor(t, "one session on "+name, func() bool { return sim.SessionCount(context.Background()) == 1 })
	}
	waitMetrics(t, a, `ars_vsphere_sessions_live{vcenter="east"} 1`, `ars_vsphere_sessions_live{vcenter="west"} 1`)

	cl, err := api.NewClient(a.APIURL(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	spec := func(vcA, vcB string) []byte {
		return []byte(fmt.Sprintf(`{"name":"multi","address":"192.0.2.80:53","probe":{"query":"www.lab.internal."},"replicas":[
			{"name":"a","impl":"bind9","os":"linux","platform":"vm","vm":"DC0_H0_VM0"%s},
			{"name":"b","impl":"unbound","os":"linux","platform":"vm","vm":"DC0_H0_VM0"%s}]}`, vcA, vcB))
	}
	for _, c := range []struct{ name, a, b, want string }{
		{"unknown vcenter", `,"vcenter":"east"`, `,"vcenter":"north"`, `replicas[1].vcenter: "north" is not configured on this node (configured: east, west)`},
		{"no vcenter with two", `,"vcenter":"east"`, ``, `replicas[1].vcenter: the replica names no vcenter and this node has 2 (east, west): name one`},
	} {
		_, err := cl.ApplyService(ctx, spec(c.a, c.b))
		var ae *api.APIError
		if !errors.As(err, &ae) || ae.Code != api.CodeInvalid || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: apply = %v, want invalid: %s", c.name, err, c.want)
		}
		if _, ok := a.Cluster.Service("multi"); ok {
			t.Fatalf("%s: the refused spec was committed", c.name)
		}
	}
	if _, err := cl.ApplyService(ctx, spec(`,"vcenter":"east"`, `,"vcenter":"west"`)); err != nil {
		t.Fatalf("a spec over both vCenters: %v", err)
	}

	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for name, sim := range sims {
		if n := sim.SessionCount(context.Background()); n != 0 {
			t.Errorf("%d sessions on %s after the node stopped leading, want 0", n, name)
		}
	}
}
