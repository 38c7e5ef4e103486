package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/lab"
	"github.com/ars-project/ars/lab/bench"
)

// repeatedNotRun is why repeated-dos has no row for a mode other than ars.
const repeatedNotRun = "measured for ars only: it asks how ars's own flap damping meets repeated attacks"

// repeated runs repeated-dos on the vm-vm lab l of the ars mode, under the
// policy a service gets by default (not the bench's max_switches of 1000:
// the damping is what the scenario measures), and puts the bench's policy
// back afterwards. dos is the dos/vm-vm result of the same lab, if it ran.
func (r *benchRun) repeated(ctx context.Context, l *lab.Lab, profile, mode string, benchPolicy fsm.PolicySpec, dos *bench.Result) (bench.Result, error) {
	pol, err := l.SetPolicy(ctx, fsm.PolicySpec{DoSMode: r.f.dosMode})
	if err != nil {
		return bench.Result{}, fmt.Errorf("repeated-dos: %w", err)
	}
	if err := shippedDamping(pol); err != nil {
		return bench.Result{}, fmt.Errorf("repeated-dos: %w", err)
	}
	quiet := time.Duration(pol.Window) + 500*time.Millisecond
	note := fmt.Sprintf("the policy ars ships with, read back from the cluster: max_switches %d per %s, min_dwell %s, "+
		"rotation %s, dos_mode %s (the other scenarios run with max_switches 1000); each trial starts %s after the last switch",
		pol.MaxSwitches, time.Duration(pol.Window), time.Duration(pol.MinDwell), pol.Rotation, pol.DoSMode, quiet)
	n := bench.RepeatedTrials
	if r.f.trialsSet {
		n = r.f.trials
	}
	fmt.Fprintf(r.e.Stdout, "%s %s %s: %s\n", profile, mode, bench.RepeatedDoS, note)
	var ts []bench.RepeatedTrial
	for i := range n {
		t, err := l.RepeatedDoSTrial(ctx, bench.RepeatedEvery, bench.RepeatedCount, quiet, 30*time.Second)
		if err != nil {
			return bench.Result{}, fmt.Errorf("%s trial %d: %w", bench.RepeatedDoS, i+1, err)
		}
		ts = append(ts, t)
		printRepeated(r.e.Stdout, profile, mode, i+1, n, t)
	}
	if _, err := l.SetPolicy(ctx, benchPolicy); err != nil {
		return bench.Result{}, fmt.Errorf("repeated-dos: restoring the bench's policy: %w", err)
	}
	res, err := bench.SummarizeRepeated(mode, profile, ts, note)
	if err != nil {
		return bench.Result{}, err
	}
	if dos != nil {
		res.RelateDoS(*dos)
	}
	return res, nil
}

// shippedDamping checks that p damps as a service's default policy does.
func shippedDamping(p fsm.PolicySpec) error {
	if p.MaxSwitches != fsm.DefaultMaxSwitches || p.MinDwell != fsm.DefaultMinDwell ||
		p.Window != fsm.DefaultPolicyWindow || p.Rotation != fsm.DefaultRotation {
		return fmt.Errorf("the cluster holds max_switches %d per %s, min_dwell %s, rotation %s, not the defaults (%d per %s, %s, %s)",
			p.MaxSwitches, p.Window, p.MinDwell, p.Rotation,
			fsm.DefaultMaxSwitches, fsm.DefaultPolicyWindow, fsm.DefaultMinDwell, fsm.DefaultRotation)
	}
	return nil
}

func printRepeated(w io.Writer, profile, mode string, i, n int, t bench.RepeatedTrial) {
	switched, stuck := 0, 0
	for _, a := range t.Attacks {
		if a.InTime {
			switched++
		} else if len(a.Clean) > 0 {
			stuck++
		}
	}
	fmt.Fprintf(w, "%s %s %s %d/%d: attacks %d (%d due), switched %d, not switched with a clean replica running %d, false switches %d\n",
		profile, mode, bench.RepeatedDoS, i, n, len(t.Attacks), t.Due, switched, stuck, t.FalseSwitches)
	for k, a := range t.Attacks {
		to := "not switched"
		if a.To != "" {
			to = fmt.Sprintf("switched to %s after %.0f ms", a.To, float64(a.After.Microseconds())/1000)
			if !a.InTime {
				to += " (late)"
			}
		}
		clean := "none"
		if len(a.Clean) > 0 {
			clean = strings.Join(a.Clean, ",")
		}
		fmt.Fprintf(w, "  attack %d at %.1f s on %s: %s; outage %.1f ms, lost %d; clean replicas running: %s\n",
			k+1, a.At.Seconds(), a.Target, to, float64(a.Outage.Microseconds())/1000, a.Lost, clean)
	}
}
