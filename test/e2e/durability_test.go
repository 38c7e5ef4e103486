package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/test/fabric"
	"github.com/ars-project/ars/test/harness"
	"github.com/ars-project/ars/transport"
)

// TestProcessWholeClusterKilledMidSwitch is the durability test of the security suite (docs/security.md)
// with real processes: three `ars agent` processes drive the vCenter
// simulator's VMs; an exploit alert's switch is committed while vCenter
// holds its NIC reconfiguration; then every agent gets SIGKILL (no
// shutdown, no final fsync beyond what Raft did at commit). Restarted from
// their data dirs, they hold the committed state — the alert, the switch's
// intent — and complete exactly that switch.
// (TestWholeClusterRestartMidSwitch is the in-process version.)
func TestProcessWholeClusterKilledMidSwitch(t *testing.T) {
	if testing.Short() {
		t.Skip("three agent processes, vcsim and DNS servers")
	}
	l := &switchLab{t: t, replicas: map[string]fabric.Replica{}}
	specs := l.startSimAndFabric()
	p := newProcCluster(t)
	pw := filepath.Join(p.dir, "certs", "vcenter.password")
	if err := os.WriteFile(pw, []byte("lab-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	nodes := []string{"n1", "n2", "n3"}
	for _, n := range nodes {
		f, err := os.OpenFile(filepath.Join(p.dir, n+".yaml"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = fmt.Fprintf(f, "vcenter:\n  url: %s\n  username: ars\n  password_file: %s\n  thumbprint: %q\n",
			l.sim.URL(), pw, l.sim.Thumbprint())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		p.start(n)
	}
	leader := func() (string, error) {
		for _, n := range nodes {
			var st api.Status
			if err := p.jsonCLI(&st, n, "status"); err != nil {
				continue
			}
			if st.Leader != "" {
				return st.Leader, nil
			}
		}
		return "", errors.New("no node names a leader")
	}
	harness.WaitFor(t, 30*time.Second, "a leader", func() error { _, err := leader(); return err })

	specFile := filepath.Join(p.dir, "service.json")
	if err := os.WriteFile(specFile, l.serviceSpec(specs), 0o600); err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, 20*time.Second, "service apply", func() error {
		ld, err := leader()
		if err != nil {
			return err
		}
		if out, err := p.cli("-addr", p.api[ld], "service", "apply", specFile); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	show := func() (fsm.Service, error) {
		var svc fsm.Service
		ld, err := leader()
		if err != nil {
			return svc, err
		}
		return svc, p.jsonCLI(&svc, ld, "service", "show", labService)
	}
	var svc fsm.Service
	harness.WaitFor(t, 60*time.Second, "the active replica alone attached", func() error {
		var err error
		if svc, err = show(); err != nil {
			return err
		}
		act, ok := svc.Active()
		if !ok || svc.Intent != nil {
			return fmt.Errorf("service %+v", svc)
		}
		if got := l.fab.Attached(); !slices.Equal(got, []string{act.Name}) {
			return fmt.Errorf("attached %v, active %s", got, act.Name)
		}
		return nil
	})
	victim, _ := svc.Active()
	l.fab.MarkDirty(victim.Name)
	l.hold.Store(true)
	ld, err := leader()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := p.cli("-addr", p.api[ld], "alert", labService, victim.Name, "-kind", "exploit", "-id", "kill9-1"); err != nil {
		t.Fatalf("alert: %v: %s", err, out)
	}
	var intent fsm.Intent
	harness.WaitFor(t, 20*time.Second, "the switch committed", func() error {
		s, err := show()
		if err != nil {
			return err
		}
		if s.Intent == nil || s.Intent.From != victim.Name {
			return fmt.Errorf("intent %+v", s.Intent)
		}
		intent = *s.Intent
		return nil
	})

	// kill -9 of every node while vCenter still holds the reconfiguration.
	for _, n := range nodes {
		if err := p.procs[n].Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = p.procs[n].Wait()
	}
	l.hold.Store(false)
	for _, n := range nodes {
		p.start(n)
	}
	harness.WaitFor(t, 60*time.Second, "the restarted cluster completes the committed switch", func() error {
		s, err := show()
		if err != nil {
			return err
		}
		if s.Intent != nil || len(s.History) != 1 || !s.History[0].Done {
			return fmt.Errorf("intent %+v, history %+v", s.Intent, s.History)
		}
		if got := l.fab.Attached(); !slices.Equal(got, []string{intent.To}) {
			return fmt.Errorf("attached %v, switched to %s", got, intent.To)
		}
		if r, _ := s.Replica(victim.Name); r.Role == fsm.RoleQuarantined || r.Role == fsm.RoleRecovering {
			return fmt.Errorf("%s still %s", victim.Name, r.Role)
		}
		return nil
	})
	s, _ := show()
	if rec := s.History[0]; rec.Generation != intent.Generation || rec.From != victim.Name || rec.To != intent.To || rec.Reason != fsm.ReasonExploit {
		t.Fatalf("switch %+v, committed intent %+v", rec, intent)
	}
	tok, err := os.ReadFile(filepath.Join(p.dir, "certs", "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := transport.ClientTLS(transport.TLSFiles{CA: filepath.Join(p.dir, "certs", "ca.pem")}, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		cl, err := api.NewClient(p.api[n], strings.TrimSpace(string(tok)), tlsCfg)
		if err != nil {
			t.Fatal(err)
		}
		alerts, err := cl.Alerts(harness.Ctx(t), labService, 100)
		cl.Close()
		if err != nil {
			t.Fatalf("alerts on %s: %v", n, err)
		}
		if i := slices.IndexFunc(alerts, func(a fsm.AlertRecord) bool { return a.ID == "kill9-1" }); i < 0 || alerts[i].Outcome != "switch" {
			t.Errorf("%s: alert kill9-1 not in the ledger with outcome switch after the restart: %+v", n, alerts)
		}
	}
	st := l.fab.Stats()
	if len(st.DirtyAttached) > 0 {
		t.Errorf("invariant 4: attacked replicas %v were attached before a revert", st.DirtyAttached)
	}
	if st.MaxAttached > 2 {
		t.Errorf("invariant 2: %d replicas attached at once", st.MaxAttached)
	}
}
