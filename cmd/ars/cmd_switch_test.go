package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/fsm"
)

func (n *testNode) service(t *testing.T) fsm.Service {
	t.Helper()
	svc, ok := n.b.Service("dns")
	if !ok {
		t.Fatal("no service dns")
	}
	return svc
}

func TestSwitchCommand(t *testing.T) {
	n := alertNode(t) // dns: win-bind active, lin-unbound standby
	env := n.env(t)

	r := ars(t, env, "", "switch", "dns", "-reason", "drill").OK(t)
	if want := "switched dns: win-bind -> lin-unbound (generation "; !strings.HasPrefix(r.Stdout, want) {
		t.Fatalf("stdout %q, want prefix %q", r.Stdout, want)
	}
	if a, _ := n.service(t).Active(); a.Name != "lin-unbound" {
		t.Fatalf("active %q", a.Name)
	}
	gen := n.service(t).Generation

	// A refused switch: exit 1 with the reason, nothing changes.
	ars(t, env, "", "switch", "dns", "-to", "lin-unbound").Fails(t, cli.ExitFailed, "already active")
	ars(t, env, "", "switch", "dns", "-to", "nope").Fails(t, cli.ExitFailed, "(unknown_replica)")
	ars(t, env, "", "switch", "nope").Fails(t, cli.ExitFailed, "(unknown_service)")
	ars(t, n.roleEnv(t, "reader"), "", "switch", "dns").Fails(t, cli.ExitFailed, "(forbidden)")
	ars(t, n.roleEnv(t, "detector"), "", "switch", "dns").Fails(t, cli.ExitFailed, "(forbidden)")
	ars(t, env, "", "switch").Fails(t, cli.ExitUsage, "usage: ars switch")
	ars(t, env, "", "switch", "dns", "-reason", strings.Repeat("x", 257)).Fails(t, cli.ExitUsage, "-reason")
	if g := n.service(t).Generation; g != gen {
		t.Fatalf("refused switches changed the generation: %d -> %d", gen, g)
	}

	r = ars(t, env, "", "switch", "dns", "-to", "win-bind", "-o", "json").OK(t)
	var res api.SwitchResponse
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
		t.Fatalf("-o json: %v\n%s", err, r.Stdout)
	}
	if res.From != "lin-unbound" || res.To != "win-bind" || res.Outcome != "switch" {
		t.Fatalf("response %+v", res)
	}
}

func TestReplicaCommands(t *testing.T) {
	n := alertNode(t)
	env := n.env(t)
	role := func(name string) fsm.ReplicaState {
		for _, rs := range n.service(t).Replicas {
			if rs.Name == name {
				return rs
			}
		}
		t.Fatalf("no replica %s", name)
		return fsm.ReplicaState{}
	}

	r := ars(t, env, "", "replica", "quarantine", "dns", "lin-unbound", "-reason", "edr hit").OK(t)
	if !strings.HasPrefix(r.Stdout, "quarantine dns/lin-unbound: done") {
		t.Fatalf("stdout %q", r.Stdout)
	}
	if rs := role("lin-unbound"); rs.Role != fsm.RoleQuarantined || rs.Reason != "edr hit" {
		t.Fatalf("after quarantine %+v", rs)
	}
	ars(t, env, "", "replica", "restore", "dns", "lin-unbound").OK(t)
	if rs := role("lin-unbound"); !rs.Clean {
		t.Fatalf("after restore %+v", rs)
	}
	ars(t, env, "", "replica", "maintenance", "dns", "win-bind").Fails(t, cli.ExitFailed, "(conflict)")
	r = ars(t, env, "", "replica", "maintenance", "dns", "lin-unbound", "-o", "json").OK(t)
	var res api.ReplicaActionResponse
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil || res.Action != "maintenance" || res.Result.Index == 0 {
		t.Fatalf("-o json: %+v %v\n%s", res, err, r.Stdout)
	}
	ars(t, env, "", "replica", "release", "dns", "lin-unbound").OK(t)
	if rs := role("lin-unbound"); rs.Role == fsm.RoleMaintenance {
		t.Fatalf("after release %+v", rs)
	}
	ars(t, env, "", "replica", "release", "dns", "nope").Fails(t, cli.ExitFailed, "(unknown_replica)")
	ars(t, n.roleEnv(t, "reader"), "", "replica", "quarantine", "dns", "lin-unbound").Fails(t, cli.ExitFailed, "(forbidden)")
	ars(t, env, "", "replica", "quarantine", "dns").Fails(t, cli.ExitUsage, "usage: ars replica quarantine")
}

func TestHistoryCommand(t *testing.T) {
	n := alertNode(t)
	env := n.env(t)

	r := ars(t, env, "", "history").OK(t)
	if !strings.Contains(r.Stdout, "No completed switches yet.") {
		t.Fatalf("empty history: %q", r.Stdout)
	}
	res := n.b.apply(t, fsm.Switch{Service: "dns", From: "win-bind", To: "lin-unbound", Reason: fsm.ReasonManual, At: 1})
	n.b.apply(t, fsm.SwitchDone{Service: "dns", Generation: res.Generation, SwitchMS: 12.5, TotalMS: 80, At: 2, ExposureMS: ptr(75.25),
		Handover: fsm.HandoverAddress, OldHeldMS: ptr(1.5)})
	n.b.apply(t, fsm.Switch{Service: "dns", From: "lin-unbound", To: "win-bind", Reason: fsm.ReasonDoS, At: 3})

	r = ars(t, env, "", "history", "dns").OK(t)
	lines := strings.Split(r.Stdout, "\n")
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "REASON PAIR COUNT MEAN-SWITCH MAX-SWITCH MEAN-TOTAL MAX-TOTAL MEAN-OUTAGE MAX-OUTAGE MEAN-EXPOSURE MAX-EXPOSURE" {
		t.Fatalf("header %q", lines[0])
	}
	// No probes measured an outage (none in this test): "-", not 0.
	if f := strings.Fields(lines[1]); strings.Join(f, " ") != "manual vm-container 1 12.5ms 12.5ms 80.0ms 80.0ms - - 75.2ms 75.2ms" {
		t.Fatalf("row %q\n%s", lines[1], r.Stdout)
	}
	if !strings.Contains(r.Stdout, "Last switches (2 of 2, newest last)") {
		t.Fatalf("no switch list:\n%s", r.Stdout)
	}
	for _, want := range []string{"SWITCH TOTAL OUTAGE PROBES-LOST EXPOSURE HANDOVER OLD-HELD DONE", "12.5ms 80.0ms - - 75.2ms address 1.5ms yes", "dos - - - - - - - no",
		"TOTAL: trigger to verified (not downtime)", "over the switches that measured them"} {
		if !strings.Contains(strings.Join(strings.Fields(r.Stdout), " "), want) {
			t.Errorf("history lacks %q:\n%s", want, r.Stdout)
		}
	}
	r = ars(t, n.roleEnv(t, "reader"), "", "history", "-n", "1").OK(t)
	if !strings.Contains(r.Stdout, "Last switches (1 of 2") {
		t.Fatalf("-n 1:\n%s", r.Stdout)
	}
	r = ars(t, env, "", "history", "-o", "json").OK(t)
	var h api.HistoryResponse
	if err := json.Unmarshal([]byte(r.Stdout), &h); err != nil || len(h.Switches) != 2 || len(h.Aggregates) != 1 {
		t.Fatalf("-o json: %+v %v", h, err)
	}
	ars(t, env, "", "history", "nope").Fails(t, cli.ExitFailed, "(unknown_service)")
	ars(t, env, "", "history", "-n", "-1").Fails(t, cli.ExitUsage, "-n -1")
}
