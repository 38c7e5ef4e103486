package main

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/lab"
	"github.com/ars-project/ars/lab/bench"
)

// The lab, bench and chaos commands check their input before they need
// root or touch anything; with no daemon, lab commands say so with exit 3.
func TestLabCommandsRefuseBadInput(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"up", "-state-dir", dir, "-replicas", "a:bind9"}, cli.ExitUsage, "want NAME:IMPL:OS"},
		{[]string{"up", "-state-dir", dir, "-replicas", "a:nsd:linux"}, cli.ExitUsage, `unknown implementation "nsd"`},
		{[]string{"up", "-state-dir", dir, "-replicas", "a:bind9:bsd"}, cli.ExitUsage, "os must be windows or linux"},
		{[]string{"up", "-state-dir", dir, "-nodes", "0"}, cli.ExitUsage, "-nodes 0"},
		{[]string{"up", "-state-dir", dir, "-profile", "slow"}, cli.ExitUsage, `-profile "slow"`},
		{[]string{"up", "-state-dir", dir, "-dos-mode", "eventually"}, cli.ExitUsage, `-dos-mode "eventually"`},
		{[]string{"up", "-state-dir", dir, "-handover", "agent"}, cli.ExitUsage, `-handover "agent"`},
		{[]string{"bench", "-dos-mode", "eventually"}, cli.ExitUsage, `-dos-mode "eventually"`},
		{[]string{"attack", "dos", "-state-dir", dir}, cli.ExitUsage, "name one target"},
		{[]string{"attack", "dos", "a", "-impl", "bind9", "-state-dir", dir}, cli.ExitUsage, "name one target"},
		{[]string{"attack", "exploit", "-state-dir", dir}, cli.ExitUsage, "name one target"},
		{[]string{"node", "kill", "-state-dir", dir}, cli.ExitUsage, "name a NODE or give -leader"},
		{[]string{"status", "-state-dir", dir}, cli.ExitUnreachable, "no lab is running"},
		{[]string{"attack", "dos", "a", "-state-dir", dir}, cli.ExitUnreachable, "no lab is running"},
		{[]string{"bench", "-trials", "0"}, cli.ExitUsage, "-trials 0"},
		{[]string{"bench", "-modes", "ars,haproxy"}, cli.ExitUsage, `unknown mode "haproxy"`},
		{[]string{"bench", "-profiles", "fast"}, cli.ExitUsage, `unknown profile "fast"`},
		{[]string{"bench", "-load-fraction", "1.5"}, cli.ExitUsage, "-load-fraction"},
		{[]string{"node", "partition", "-state-dir", dir}, cli.ExitUsage, "name a NODE or give -leader"},
		{[]string{"node", "stop", "n1", "-state-dir", dir}, cli.ExitUnreachable, "no lab is running"},
		{[]string{"chaos", "-state-dir", dir, "-schedules", "0"}, cli.ExitUsage, "-schedules 0"},
		{[]string{"chaos", "-state-dir", dir, "-length", "2s"}, cli.ExitUsage, "-length 2s"},
		{[]string{"chaos", "-state-dir", dir, "-profile", "slow"}, cli.ExitUsage, `-profile "slow"`},
		{[]string{"chaos", "-state-dir", dir, "-session-timeout", "4s", "-keepalive", "3s"}, cli.ExitUsage, "keep-alive of at most half"},
		{[]string{"chaos", "-state-dir", dir, "-max-outage", "0s"}, cli.ExitUsage, "must be positive"},
		{[]string{"node", "degrade", "n1", "-state-dir", dir}, cli.ExitUsage, "without loss or delay"},
		{[]string{"node", "degrade", "n1", "-state-dir", dir, "-loss", "101"}, cli.ExitUsage, "want 0-100"},
		{[]string{"node", "degrade", "n1", "-state-dir", dir, "-delay", "10ms", "-jitter", "20ms"}, cli.ExitUsage, "jitter 20ms"},
		{[]string{"node", "degrade", "n1", "-state-dir", dir, "-delay", "1500us"}, cli.ExitUsage, "whole milliseconds"},
		{[]string{"node", "degrade", "n1", "-state-dir", dir, "-delay", "10ms", "-direction", "up"}, cli.ExitUsage, `-direction "up"`},
		{[]string{"node", "degrade", "-state-dir", dir, "-delay", "10ms"}, cli.ExitUsage, "name a NODE or give -leader"},
		{[]string{"node", "degrade", "n1", "-state-dir", dir, "-delay", "10ms"}, cli.ExitUnreachable, "no lab is running"},
		{[]string{"node", "clear", "-state-dir", dir}, cli.ExitUsage, "name a NODE or give -leader"},
		{[]string{"footprint", "-state-dir", dir, "-for", "0s"}, cli.ExitUsage, "-for 0s"},
		{[]string{"footprint", "-state-dir", dir, "-every", "2m"}, cli.ExitUsage, "-every 2m"},
		{[]string{"footprint", "-state-dir", dir}, cli.ExitUnreachable, "no lab is running"},
	}
	for _, c := range cases {
		arsLab(t, nil, c.args...).Fails(t, c.code, c.want)
	}
}

// -merge keeps the old results this run did not measure again, and only
// those.
func TestBenchMergeKeepsWhatWasNotRerun(t *testing.T) {
	dir := t.TempDir()
	tr := []bench.Trial{{Downtime: 300 * time.Millisecond, Switched: true}}
	res := func(name, mode string, d time.Duration) bench.Result {
		t.Helper()
		tr[0].Downtime = d
		r, err := bench.Summarize(name, mode, "none", tr, 0)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	old := bench.File{Command: "ars-lab bench", Scenarios: []bench.Result{
		res("dos/vm-vm", "ars", 300*time.Millisecond), res("leader-loss/dos", "ars", 1800*time.Millisecond)}}
	if err := bench.Write(dir, old); err != nil {
		t.Fatal(err)
	}
	f := bench.File{Command: "ars-lab bench -scenarios leader-loss", Scenarios: []bench.Result{res("leader-loss/dos", "ars", 1200*time.Millisecond)}}
	if err := mergeOld(&f, filepath.Join(dir, bench.JSONFile)); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, r := range f.Scenarios {
		got[r.Name] = r.Downtime.Mean
	}
	if len(f.Scenarios) != 2 || got["leader-loss/dos"] != 1200 || got["dos/vm-vm"] != 300 {
		t.Fatalf("merged %+v; want the new leader-loss and the old dos", got)
	}
	if err := mergeOld(&f, filepath.Join(t.TempDir(), "none.json")); err != nil {
		t.Fatalf("no old file: %v", err)
	}
}

// The daemon that up starts is given every setting up was given: its
// flags, parsed again, make the same lab configuration.
func TestUpArgsCarryEverySetting(t *testing.T) {
	ars := filepath.Join(t.TempDir(), "ars")
	if err := os.WriteFile(ars, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	parse := func(args ...string) (labUpFlags, lab.Config) {
		t.Helper()
		var f labUpFlags
		fs := flag.NewFlagSet("up", flag.ContinueOnError)
		f.register(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatalf("parse %q: %v", args, err)
		}
		cfg, err := f.config(func(string) string { return "" })
		if err != nil {
			t.Fatalf("config of %q: %v", args, err)
		}
		return f, cfg
	}
	f, want := parse("-prefix", "argslab", "-state-dir", t.TempDir(), "-profile", "paper",
		"-replicas", "a:bind9:linux,b:unbound:windows:container", "-nodes", "5", "-service", "web",
		"-probe", "paper", "-confirm", "none", "-rotation", "round-robin", "-dos-mode", "parallel",
		"-per-operation-login", "-dead-webhook", "-node-disks", "-handover", "address", "-ars", ars)
	_, got := parse(f.args(ars)...)
	want.Logger, got.Logger = nil, nil
	if want.Handover != lab.HandoverAddress {
		t.Fatalf("-handover address made Handover %q", want.Handover)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the daemon's flags make another lab:\n got %+v\nwant %+v", got, want)
	}
}

// The AGENT column says what the lab measured, and nothing for a replica
// without an agent.
func TestAgentCell(t *testing.T) {
	yes, no := true, false
	for _, c := range []struct {
		a    *lab.AgentStatus
		want string
	}{
		{nil, "-"},
		{&lab.AgentStatus{Pid: 42, Held: &yes}, "pid 42, holds the address"},
		{&lab.AgentStatus{Pid: 42, Held: &no}, "pid 42, no address"},
		{&lab.AgentStatus{HeldErr: "gone"}, "not running, address unknown"},
	} {
		if got := agentCell(c.a); got != c.want {
			t.Errorf("agentCell(%+v) = %q, want %q", c.a, got, c.want)
		}
	}
}
