package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/lab"
	"github.com/ars-project/ars/lab/bench"
)

// Bad flags are refused as usage errors before root is needed or
// anything is touched.
func TestScaleFlagsRefused(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-n", "0"}, "-n: \"0\": want a number of services from 1 to 250"},
		{[]string{"-n", "10,10"}, "-n: 10 twice"},
		{[]string{"-n", ""}, "-n: no service count"},
		{[]string{"-responder", "nsd"}, `-responder "nsd": want dnsd or real`},
		{[]string{"-profile", "moon"}, `-profile "moon"`},
		{[]string{"-idle", "1s"}, "-idle 1s: want 5s to 30m0s"},
		{[]string{"-during", "11m"}, "-during 11m0s: want 1s to 10m0s"},
		{[]string{"-switch-timeout", "0s"}, "-switch-timeout 0s: want 1s to 5m0s"},
		{[]string{"-settle-timeout", "1s"}, "-settle-timeout 1s: want 10s to 30m0s"},
		{[]string{"-takeover-timeout", "11m"}, "-takeover-timeout 11m0s: want 0, or 1s to 10m0s"},
		{[]string{"-every", "50ms"}, "-every 50ms: want 100ms to 1m"},
		{[]string{"-every", "20s"}, "at most -idle and -during"},
		{[]string{"-sample", "101"}, "-sample 101: want 0-100"},
		{[]string{"-concurrent", "-1"}, "-concurrent -1: want 0-100"},
	} {
		arsLab(t, nil, append([]string{"scale"}, c.args...)...).Fails(t, cli.ExitUsage, c.want)
	}
}

// The lab of N services: the first is the lab's own service, every other
// has its address in the scale subnet, and every replica is a VM of its
// service running the responder under its own implementation's name.
func TestScaleConfig(t *testing.T) {
	f := scaleFlags{labFlags: labFlags{prefix: "arsscale"}, responder: "dnsd", profile: "none"}
	for _, n := range []int{1, 10, 200} {
		cfg, err := f.config(n, "/bin/ars", "/bin/dnsd", nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.Replicas) != 4*n || len(cfg.ServiceAddrs) != n-1 || cfg.Service != "s000" {
			t.Fatalf("N=%d: %d replicas, %d further services, service %q", n, len(cfg.Replicas), len(cfg.ServiceAddrs), cfg.Service)
		}
		if cfg.Responder != "dnsd" || !cfg.NoWatchers || len(cfg.Nodes) != 3 || cfg.Subnet != bench.ScaleSubnet ||
			cfg.Probe.Confirm != "quorum" || cfg.Probe.Profile != "ars" {
			t.Errorf("N=%d: config %+v", n, cfg)
		}
		for _, r := range cfg.Replicas {
			if r.Platform != fsm.PlatformVM || !strings.HasPrefix(r.Name, r.Service+"-") {
				t.Errorf("N=%d: replica %+v", n, r)
			}
			if _, ok := cfg.ServiceAddrs[r.Service]; ok == (r.Service == cfg.Service) {
				t.Errorf("N=%d: replica %s of service %s: address in ServiceAddrs %t", n, r.Name, r.Service, ok)
			}
		}
		if n == 10 {
			if got := fmt.Sprint(cfg.ServiceAddrs["s009"]); got != "10.253.54.9" {
				t.Errorf("s009 at %s", got)
			}
		}
	}
	f.responder = scaleResponderReal
	if cfg, _ := f.config(1, "/bin/ars", "", nil); cfg.Responder != "" {
		t.Errorf("-responder real runs %q", cfg.Responder)
	}
}

func TestTakeoverResultLeavesOutWhatWasNotReached(t *testing.T) {
	r := takeoverResult(lab.Takeover{Killed: "n1", NewLeader: "n2", Poll: 50 * time.Millisecond,
		Elected: 800 * time.Millisecond, ElectedOK: true, Judged: 1200 * time.Millisecond, JudgedOK: true})
	if r.ElectedMS == nil || *r.ElectedMS != 800 || r.JudgedMS == nil || *r.JudgedMS != 1200 || r.ReconciledMS != nil || r.ReadyMS != nil || r.PollMS != 50 {
		t.Errorf("takeover %+v", r)
	}
	r = takeoverResult(lab.Takeover{Judged: time.Second, JudgedOK: true, Reconciled: 2 * time.Second, ReconOK: true})
	if r.ReadyMS == nil || *r.ReadyMS != 2000 {
		t.Errorf("ready %v, want the later of judged and reconciled", r.ReadyMS)
	}
}
