package fsm

import (
	"errors"
	"strings"
	"testing"
)

func TestLevel(t *testing.T) {
	parallel := ServiceSpec{Name: "dns", Policy: PolicySpec{DoSMode: ModeParallel}}
	for _, tc := range []struct {
		name string
		c    Command
		want int
	}{
		{"service.apply", ServiceApply{Spec: ServiceSpec{Name: "dns", Policy: PolicySpec{DoSMode: ModeMakeBeforeBreak}}}, 1},
		{"service.apply, dos parallel", ServiceApply{Spec: parallel}, 2},
		{"service.apply, a replica naming its vCenter", ServiceApply{Spec: ServiceSpec{Replicas: []ReplicaSpec{{Name: "a"}, {Name: "b", VCenter: "vc-east"}}}}, 2},
		{"service.apply, a replica with a health_addr", ServiceApply{Spec: ServiceSpec{Replicas: []ReplicaSpec{{Name: "a"}, {Name: "b", HealthAddr: "198.51.100.7:53"}}}}, 5},
		{"service.apply, a replica with address handover", ServiceApply{Spec: ServiceSpec{Replicas: []ReplicaSpec{{Name: "a"}, {Name: "b", Handover: HandoverAddress, Agent: "198.51.100.7:7444"}}}}, 6},
		{"service.apply, standby pacing alone", ServiceApply{Spec: ServiceSpec{Probe: ProbeSpec{StandbyFailures: 2}}}, 5},
		{"service.apply, exploit parallel", ServiceApply{Spec: ServiceSpec{Policy: PolicySpec{ExploitMode: ModeParallel}}}, 2},
		{"switch", Switch{Service: "dns", Mode: ModeBreakBeforeMake}, 1},
		{"switch with alert_id (0.1.0 reads it)", Switch{Service: "dns", AlertID: "a-1"}, 1},
		{"switch, parallel", Switch{Service: "dns", Mode: ModeParallel}, 2},
		{"switch.request", SwitchRequest{ID: "r-1", Service: "dns"}, 2},
		{"alert", Alert{ID: "a-1"}, 1},
		{"alert.outcome", AlertOutcome{ID: "a-1"}, 1},
		{"replica.role", ReplicaRole{}, 1},
		{"switch.done", SwitchDone{}, 1},
		{"switch.done with measurements", SwitchDone{ExposureMS: new(float64)}, 2},
		{"switch.done naming its handover", SwitchDone{ExposureMS: new(float64), Handover: HandoverAddress}, 6},
		{"switch.done with old_held_ms", SwitchDone{OldHeldMS: new(float64)}, 6},
		{"service.delete", ServiceDelete{}, 1},
		{"notify.cursor", NotifyCursor{Sink: "pager", Index: 4}, 3},
	} {
		if got := Level(tc.c); got != tc.want {
			t.Errorf("%s: level %d, want %d", tc.name, got, tc.want)
		}
	}
	// Every command this binary writes is one it reads.
	for ct := range handlers {
		c, err := handlers[ct].decode([]byte(`{}`))
		if err != nil {
			t.Fatalf("%s: %v", ct, err)
		}
		if l := Level(c); l < BaseLevel || l > FormatLevel {
			t.Errorf("%s: level %d outside [%d, %d]", ct, l, BaseLevel, FormatLevel)
		}
	}
}

func TestNeedsUpgrade(t *testing.T) {
	err := NeedsUpgrade(CmdSwitchRequest, 2, []string{"n3 (level 1)"})
	if !errors.Is(err, ErrNeedsUpgrade) || Code(err) != CodeNeedsUpgrade ||
		!strings.Contains(err.Error(), "voter n3 (level 1) does not read it") || !strings.Contains(err.Error(), "level 2") {
		t.Fatalf("%v (code %q)", err, Code(err))
	}
	err = NeedsUpgrade(CmdSwitch, 2, []string{"n2 (level 1)", "n3 (unknown)"})
	if !strings.Contains(err.Error(), "voters n2 (level 1), n3 (unknown) do not read it") {
		t.Fatal(err)
	}
}
