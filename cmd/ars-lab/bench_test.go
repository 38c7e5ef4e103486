package main

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ars-project/ars/lab/bench"
)

// wantPrefixes selects scenarios as -scenarios does.
func wantPrefixes(pre ...string) func(string) bool {
	return func(name string) bool {
		if len(pre) == 0 {
			return true
		}
		return slices.ContainsFunc(pre, func(p string) bool { return strings.HasPrefix(name, p) })
	}
}

// planned is a plan as "pair: scenario, scenario" lines and the not-run
// rows as "scenario: reason".
func planned(mode string, want func(string) bool, load bool) (labs []string, notRun map[string]string) {
	ls, nr := benchPlan(mode, want, load)
	for _, l := range ls {
		labs = append(labs, l.pair+": "+strings.Join(l.scenarios, ", "))
	}
	notRun = map[string]string{}
	for _, r := range nr {
		notRun[r.Name] = r.Reason
	}
	return labs, notRun
}

// Every mode, every scenario: each standard scenario is either run on
// some lab or reported not run with a reason, never both, never neither.
func TestBenchPlanCoversEveryScenario(t *testing.T) {
	for _, mode := range bench.Modes() {
		t.Run(mode, func(t *testing.T) {
			labs, notRun := benchPlan(mode, wantPrefixes(), mode == bench.ModeARS)
			ran := map[string]bool{}
			for _, l := range labs {
				for _, s := range l.scenarios {
					if ran[s] {
						t.Errorf("%s runs twice", s)
					}
					ran[s] = true
				}
			}
			reported := map[string]bool{}
			for _, r := range notRun {
				if r.Reason == "" || r.Status != bench.StatusNotRun {
					t.Errorf("not-run row %s: status %q, reason %q", r.Name, r.Status, r.Reason)
				}
				reported[r.Name] = true
			}
			for _, s := range bench.Scenarios() {
				if ran[s] && reported[s] {
					t.Errorf("%s both runs and is reported not run", s)
				}
				// first-available is dnsdist's policy: other modes neither
				// run nor report it.
				if !ran[s] && !reported[s] && (mode == bench.ModeDNSDist || s != scnImplFirst) {
					t.Errorf("%s neither runs nor is reported not run", s)
				}
			}
		})
	}
}

func TestBenchPlanModes(t *testing.T) {
	tests := []struct {
		mode   string
		load   bool
		labs   []string
		notRun []string
	}{
		{bench.ModeARS, true, []string{
			"vm-vm: dos/vm-vm, exploit/vm-vm, benign-load, leader-loss/dos, impl-attack/diverse, impl-attack/round-robin, repeated-dos",
			"vm-container: dos/vm-container, exploit/vm-container",
			"container-container: dos/container-container, exploit/container-container",
		}, nil},
		{bench.ModeARSAddress, false, []string{
			"vm-vm: dos/vm-vm, exploit/vm-vm, leader-loss/dos",
			"vm-container: dos/vm-container, exploit/vm-container",
			"container-container: dos/container-container, exploit/container-container",
		}, []string{"impl-attack/diverse", "impl-attack/round-robin", "repeated-dos"}},
		{bench.ModePaperSDK, false, []string{
			"vm-vm: dos/vm-vm, exploit/vm-vm, leader-loss/dos, impl-attack/round-robin",
			"vm-container: dos/vm-container, exploit/vm-container",
			"container-container: dos/container-container, exploit/container-container",
		}, []string{"impl-attack/diverse", "repeated-dos"}},
		{bench.ModePaperCLI, false, []string{
			"vm-vm: dos/vm-vm, exploit/vm-vm",
			"vm-container: dos/vm-container, exploit/vm-container",
			"container-container: dos/container-container, exploit/container-container",
		}, []string{"impl-attack/diverse", "impl-attack/round-robin", "leader-loss/dos", "repeated-dos"}},
		{bench.ModeDNSDist, false, []string{
			"vm-vm: dos/vm-vm, impl-attack/first-available",
			"vm-container: dos/vm-container",
			"container-container: dos/container-container",
		}, []string{"exploit/container-container", "exploit/vm-container", "exploit/vm-vm",
			"impl-attack/diverse", "impl-attack/round-robin", "leader-loss/dos", "repeated-dos"}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			labs, notRun := planned(tt.mode, wantPrefixes(), tt.load)
			if !reflect.DeepEqual(labs, tt.labs) {
				t.Errorf("labs:\n got %q\nwant %q", labs, tt.labs)
			}
			got := slices.Sorted(func(yield func(string) bool) {
				for n := range notRun {
					if !yield(n) {
						return
					}
				}
			})
			if !reflect.DeepEqual(got, tt.notRun) {
				t.Errorf("not run: got %q, want %q", got, tt.notRun)
			}
		})
	}
	_, notRun := planned(bench.ModeDNSDist, wantPrefixes(), false)
	if r := notRun["exploit/vm-vm"]; !strings.Contains(r, "no exploit detection") {
		t.Errorf("dnsdist exploit reason %q", r)
	}
}

// -scenarios selects: a pair's lab comes up only for what is wanted on
// it, and only wanted scenarios are reported not run.
func TestBenchPlanSelection(t *testing.T) {
	tests := []struct {
		mode   string
		pre    []string
		load   bool
		labs   []string
		notRun []string
	}{
		{bench.ModeDNSDist, []string{"dos/container-container", "impl-attack/diverse"}, false,
			[]string{"container-container: dos/container-container"}, []string{"impl-attack/diverse"}},
		{bench.ModeDNSDist, []string{"dos/container-container", "impl-attack"}, false,
			[]string{"vm-vm: impl-attack/first-available", "container-container: dos/container-container"},
			[]string{"impl-attack/diverse", "impl-attack/round-robin"}},
		{bench.ModePaperSDK, []string{"leader-loss", "impl-attack"}, false,
			[]string{"vm-vm: leader-loss/dos, impl-attack/round-robin"}, []string{"impl-attack/diverse"}},
		{bench.ModeARS, []string{"dos/vm-container"}, false,
			[]string{"vm-container: dos/vm-container"}, nil},
		// The benign load brings the vm-vm lab up whatever -scenarios says.
		{bench.ModeARS, []string{"dos/vm-container"}, true,
			[]string{"vm-vm: benign-load", "vm-container: dos/vm-container"}, nil},
		{bench.ModePaperCLI, []string{"exploit/vm-vm"}, false, []string{"vm-vm: exploit/vm-vm"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.mode+" "+strings.Join(tt.pre, ","), func(t *testing.T) {
			labs, notRun := planned(tt.mode, wantPrefixes(tt.pre...), tt.load)
			if !reflect.DeepEqual(labs, tt.labs) {
				t.Errorf("labs:\n got %q\nwant %q", labs, tt.labs)
			}
			var got []string
			for n := range notRun {
				got = append(got, n)
			}
			slices.Sort(got)
			if !reflect.DeepEqual(got, tt.notRun) {
				t.Errorf("not run: got %q, want %q", got, tt.notRun)
			}
		})
	}
}

// The rows whose measure differs from their scenario name carry a note;
// the others do not.
func TestBenchNote(t *testing.T) {
	for _, tt := range []struct {
		name, mode, want string
	}{
		{scnLeaderLoss, bench.ModePaperSDK, "no switch"},
		{scnImplRoundRobin, bench.ModePaperSDK, "fixed order"},
		{scnImplFirst, bench.ModeDNSDist, "no notion of implementation"},
		{scnLeaderLoss, bench.ModeARS, ""},
		{scnImplRoundRobin, bench.ModeARS, ""},
		{"dos/vm-vm", bench.ModeDNSDist, ""},
		{"dos/vm-vm", bench.ModePaperSDK, ""},
	} {
		got := benchNote(tt.name, tt.mode)
		if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
			t.Errorf("benchNote(%s, %s) = %q, want one with %q", tt.name, tt.mode, got, tt.want)
		}
	}
	if !strings.Contains(benchNote(scnLeaderLoss, bench.ModePaperSDK), paperLeaderLossBound.String()) {
		t.Error("the leader-loss note does not name the bound")
	}
}

// TestBenchTopologyOfAddressHandover: the ars-address mode's vm-vm lab
// has Linux VMs only, so every switch there is between two replica
// agents; its vm-container lab has a Linux VM; the other modes keep the
// research testbed's topology.
func TestBenchTopologyOfAddressHandover(t *testing.T) {
	for _, pair := range []string{"vm-vm", "vm-container"} {
		reps, err := parseLabReplicas(benchTopology(bench.ModeARSAddress, pair))
		if err != nil {
			t.Fatal(err)
		}
		vms := 0
		for _, r := range reps {
			if r.Platform == "vm" {
				vms++
				if r.OS != "linux" {
					t.Errorf("%s: %s is a %s VM; address handover needs Linux", pair, r.Name, r.OS)
				}
			}
		}
		if want := map[string]int{"vm-vm": 3, "vm-container": 1}[pair]; vms != want {
			t.Errorf("%s: %d VMs, want %d", pair, vms, want)
		}
	}
	if benchTopology(bench.ModeARS, "vm-vm") != benchReplicas {
		t.Error("the ars mode's vm-vm lab is not the testbed's")
	}
}

// TestLabFlagsWithoutHandover: flags built by the bench and the scale
// command, which set no handover, make a NIC-handover lab (the bench's
// first address-handover run stopped at "-handover \"\"").
func TestLabFlagsWithoutHandover(t *testing.T) {
	uf := labUpFlags{labFlags: labFlags{prefix: "arsbench"}, profile: "none", replicas: benchReplicas, nodes: 3,
		service: "dns", probe: "ars", confirm: "quorum", rotation: "diverse", ars: arsBinary{path: "/bin/true"}}
	cfg, err := uf.config(func(string) string { return "" })
	if err != nil || cfg.Handover != "nic" {
		t.Fatalf("config: handover %q, %v; want nic", cfg.Handover, err)
	}
}
