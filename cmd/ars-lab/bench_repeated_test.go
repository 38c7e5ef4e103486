package main

import (
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/fsm"
)

// repeated-dos runs only under the damping a service gets by default: the
// policy the API fills in for an empty one passes, the bench's own
// (max_switches 1000) and any other change do not.
func TestShippedDamping(t *testing.T) {
	shipped := func(p fsm.PolicySpec) fsm.PolicySpec {
		s := fsm.ServiceSpec{Policy: p}
		s.Normalize()
		return s.Policy
	}
	if err := shippedDamping(shipped(fsm.PolicySpec{})); err != nil {
		t.Errorf("the default policy: %v", err)
	}
	if err := shippedDamping(shipped(fsm.PolicySpec{DoSMode: fsm.ModeParallel})); err != nil {
		t.Errorf("the default policy with another dos_mode: %v", err)
	}
	for name, p := range map[string]fsm.PolicySpec{
		"the bench's":       {MaxSwitches: 1000},
		"a shorter dwell":   {MinDwell: fsm.Duration(time.Second)},
		"a shorter window":  {Window: fsm.Duration(10 * time.Second)},
		"another rotation":  {Rotation: fsm.RotationRoundRobin},
		"one switch a time": {MaxSwitches: 1},
	} {
		err := shippedDamping(shipped(p))
		if err == nil || !strings.Contains(err.Error(), "not the defaults") {
			t.Errorf("%s policy: err = %v, want it refused", name, err)
		}
	}
}
