package decide_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/controller/decide"
	"github.com/ars-project/ars/fsm"
)

var update = flag.Bool("update", false, "rewrite testdata/scenarios/*.golden")

// A scenario is an initial service (spec, roles, driver capabilities) and a
// sequence of steps at injected clock readings. A step is either an event for
// Decide, whose commands are then applied to the FSM, or an operation the
// reconciler or an operator commits (switch.done, restored, ...), or a change
// of the driver capabilities.
type scenario struct {
	name  string
	about string
	spec  fsm.ServiceSpec
	caps  map[string]decide.Capabilities
	setup func(*lab) // initial roles, before the clock starts
	steps []step
}

type step struct {
	at time.Duration
	ev decide.Event
	// op is an external operation: "done" (switch.done of the open intent),
	// or "<action> <replica>" for a replica.role action.
	op string
	// caps, if not nil, replaces the capabilities from this step on.
	caps map[string]decide.Capabilities
}

func ev(at time.Duration, e decide.Event) step { return step{at: at, ev: e} }
func op(at time.Duration, o string) step       { return step{at: at, op: o} }

func scenarios() []scenario {
	ms := time.Millisecond
	sec := time.Second

	burst := []step{ev(0, exploit("apparmor-1", "win-bind"))}
	for i := 2; i <= 20; i++ {
		burst = append(burst, ev(time.Duration(i-1)*10*ms, exploit(fmt.Sprintf("apparmor-%d", i), "win-bind")))
	}
	burst = append(burst,
		op(300*ms, "done"),
		op(30*sec, "restored win-bind"),
		ev(40*sec, exploit("apparmor-21", "win-bind")),
		ev(41*sec, decide.Alert{ID: "seconddep-1", Service: svcName, Replica: "win-unbound", Kind: fsm.KindExploit, Source: "seconddep"}),
	)

	return []scenario{
		{
			name:  "exploit-burst",
			about: "20 alerts for one exploit give one switch; later exploits on non-active replicas quarantine them",
			spec:  spec(paperReplicas()),
			steps: burst,
		},
		{
			name:  "dos-damping",
			about: "DoS switches are damped by min_dwell and by max_switches per window, with the retry time",
			spec:  spec(fiveReplicas(), maxSwitches(3, time.Minute)),
			steps: []step{
				ev(0, verdict("win-bind")),
				op(300*ms, "done"),
				ev(1*sec, verdict(active)),
				ev(2300*ms-1, verdict(active)),
				ev(2300*ms, verdict(active)),
				op(2600*ms, "done"),
				op(3*sec, "restored win-bind"),
				ev(5*sec, verdict(active)),
				op(5300*ms, "done"),
				ev(8*sec, verdict(active)),
				ev(8*sec, exploit("apparmor-7", active)),
				op(8400*ms, "done"),
				ev(60*sec, verdict(active)),
				ev(61*sec, verdict(active)),
			},
		},
		{
			name: "repeated-dos",
			about: "a DoS on whichever replica serves, every 5s for a minute, under the default policy: each active answered " +
				"after it took over, so every attack switches (max_switches does not hold a served active while another impl " +
				"is ready); the same attacks reported by a detector's dos alerts are damped after max_switches",
			spec:  spec(fiveReplicas()),
			steps: repeatedDoS(),
		},
		{
			name:  "dos-confirmation",
			about: "probe.confirm=quorum: unconfirmed verdicts wait; stale verdicts are ignored",
			spec:  spec(paperReplicas(), quorum),
			steps: []step{
				ev(0, decide.DoSVerdict{Service: svcName, Replica: "win-bind", DetectedAt: at(0), Detection: 250 * ms, Confirmations: 1}),
				ev(100*ms, decide.DoSVerdict{Service: svcName, Replica: "win-bind", DetectedAt: at(100 * ms), Detection: 350 * ms, Confirmations: 2, Quorum: true}),
				ev(150*ms, decide.DoSVerdict{Service: svcName, Replica: "win-bind", DetectedAt: at(150 * ms), Detection: 400 * ms, Confirmations: 3, Quorum: true}),
				op(400*ms, "done"),
				ev(5*sec, decide.DoSVerdict{Service: svcName, Replica: "lin-unbound", DetectedAt: at(50 * ms), Detection: 300 * ms, Confirmations: 2, Quorum: true}),
				ev(6*sec, dosAlert("watchdog-1", "lin-unbound")),
			},
		},
		{
			name:  "impl-attack-diverse",
			about: "an attack that kills every bind9 replica: one switch to another impl ends it",
			spec:  spec(implPairs()),
			steps: []step{
				ev(0, verdict("bind-a")),
				op(300*ms, "done"),
				ev(10*sec, verdict("bind-a")),
			},
		},
		{
			name:  "impl-attack-round-robin",
			about: "the same attack under round-robin: the first switch lands on the attacked impl, min_dwell delays the second",
			spec:  spec(implPairs(), roundRobin),
			steps: []step{
				ev(0, verdict("bind-a")),
				op(300*ms, "done"),
				ev(1*sec, verdict("bind-b")),
				ev(2300*ms, verdict("bind-b")),
				op(2600*ms, "done"),
			},
		},
		{
			name:  "standby-of-attacked-impl",
			about: "the standby shares the attacked impl (no other was eligible when it was picked): decide passes it over",
			spec:  spec(implPairs()),
			setup: func(l *lab) {
				l.role("unbound-b", fsm.ActionMaintenance)
				l.role("unbound-a", fsm.ActionMaintenance)
				l.role("unbound-a", fsm.ActionRelease)
				l.role("unbound-b", fsm.ActionRelease)
			},
			steps: []step{
				ev(0, exploit("apparmor-1", "bind-a")),
				op(200*ms, "done"),
			},
		},
		{
			name:  "open-intent",
			about: "alerts and verdicts on the target of a switch that is not verified yet",
			spec:  spec(paperReplicas()),
			steps: []step{
				ev(0, exploit("apparmor-1", "win-bind")),
				ev(200*ms, exploit("apparmor-2", "lin-unbound")),
				ev(500*ms, verdict(active)),
				ev(600*ms, exploit("apparmor-3", "win-bind")),
				ev(700*ms, exploit("apparmor-4", "lin-unbound")),
				ev(2200*ms, verdict(active)),
				op(2500*ms, "done"),
			},
		},
		{
			name:  "manual",
			about: "operator switches: named target, best target, refused targets; never damped",
			spec:  spec(paperReplicas()),
			steps: []step{
				ev(0, manual("lin-bind")),
				op(100*ms, "done"),
				ev(200*ms, manual("")),
				op(300*ms, "done"),
				ev(400*ms, manual(active)),
				op(500*ms, "quarantine win-unbound"),
				ev(600*ms, manual("win-unbound")),
				op(700*ms, "maintenance win-bind"),
				ev(800*ms, manual("win-bind")),
				ev(900*ms, manual("nope")),
				ev(time.Second, decide.ManualSwitch{Service: svcName}),
			},
		},
		{
			name:  "capabilities",
			about: "driver capabilities: unavailable replicas are never chosen, restorable ones are preferred within a diversity class",
			spec:  spec(fiveReplicas()),
			caps:  map[string]decide.Capabilities{"lin-unbound": {Unavailable: true}, "lin-knot": {NoRestore: true}},
			steps: []step{
				ev(0, exploit("apparmor-1", "win-bind")),
				op(300*ms, "done"),
				{at: 10 * sec, caps: map[string]decide.Capabilities{"lin-bind": {NoRestore: true}, "win-bind": {Unavailable: true}}},
				ev(11*sec, exploit("apparmor-2", active)),
				op(11300*ms, "done"),
				ev(12*sec, manual("lin-unbound")),
				op(12300*ms, "done"),
			},
		},
		{
			name: "stopped-standby",
			about: "a standby its platform reports stopped (an engine restart killed it) loses to a suspended replica of " +
				"the same diversity, never to one of the attacked impl; with every candidate stopped the standby is started",
			spec: spec(fiveReplicas()),
			caps: map[string]decide.Capabilities{"lin-unbound": {Stopped: true}},
			steps: []step{
				ev(0, verdict("win-bind")),
				op(300*ms, "done"),
				{at: 10 * sec, caps: map[string]decide.Capabilities{"lin-bind": {Stopped: true}, "lin-unbound": {Stopped: true}, "win-unbound": {Stopped: true},
					"win-bind": {Stopped: true}}},
				ev(11*sec, verdict(active)),
				op(11300*ms, "done"),
			},
		},
		{
			name: "hung-standby",
			about: "a standby the leader's health probe judged not answering (its server wedged) is passed over for a " +
				"suspended replica of the same diversity; when it answers again it is the " +
				"standby of choice again; with every candidate not answering the least bad is chosen",
			spec: spec(fiveReplicas()),
			caps: map[string]decide.Capabilities{"lin-unbound": {NotAnswering: true}},
			steps: []step{
				ev(0, verdict("win-bind")),
				op(300*ms, "done"),
				{at: 5 * sec, caps: map[string]decide.Capabilities{}},
				ev(6*sec, verdict(active)),
				op(6300*ms, "done"),
				{at: 10 * sec, caps: map[string]decide.Capabilities{"lin-bind": {NotAnswering: true}, "lin-knot": {NotAnswering: true},
					"win-unbound": {NotAnswering: true}}},
				ev(11*sec, verdict(active)),
				op(11300*ms, "done"),
			},
		},
		{
			name:  "exhaustion",
			about: "exploits until no clean replica is left, then restores bring one back",
			spec: spec([]fsm.ReplicaSpec{
				rep("a", "bind9", "linux", "vm"),
				rep("b", "unbound", "windows", "vm"),
				rep("c", "knot-resolver", "linux", "container"),
			}),
			steps: []step{
				ev(0, exploit("x-1", "a")),
				op(100*ms, "done"),
				ev(1*sec, exploit("x-2", active)),
				op(1100*ms, "done"),
				ev(2*sec, exploit("x-3", active)),
				ev(3*sec, verdict(active)),
				op(4*sec, "restored a"),
				ev(5*sec, exploit("x-4", active)),
				op(5100*ms, "done"),
			},
		},
		{
			name:  "round-robin-rotation",
			about: "round-robin: exploits walk the replicas in spec order, restored ones rejoin the ring",
			spec:  spec(paperReplicas(), roundRobin),
			steps: []step{
				ev(0, exploit("r-1", active)),
				op(100*ms, "done"),
				op(200*ms, "restored win-bind"),
				ev(1*sec, exploit("r-2", active)),
				op(1100*ms, "done"),
				op(1200*ms, "restored win-unbound"),
				ev(2*sec, exploit("r-3", active)),
				op(2100*ms, "done"),
				op(2200*ms, "restored lin-bind"),
				ev(3*sec, exploit("r-4", active)),
				op(3100*ms, "done"),
				ev(4*sec, exploit("r-5", "win-unbound")),
			},
		},
	}
}

// visited is one state a scenario passed through, for the exhaustive test.
type visited struct {
	scenario string
	lab      *lab
	now      time.Time
}

// runScenario plays sc and returns its golden text and every state it
// passed through. Every decision is checked by checkDecision (its commands
// are accepted by the FSM; docs/design.md §4.4).
func runScenario(t *testing.T, sc scenario) ([]byte, []visited) {
	t.Helper()
	l := newLab(t, sc.spec)
	if sc.setup != nil {
		sc.setup(l)
	}
	l.caps = sc.caps
	var b bytes.Buffer
	s := l.svc()
	p := s.Spec.Policy
	fmt.Fprintf(&b, "# %s: %s\n", sc.name, sc.about)
	fmt.Fprintf(&b, "policy:   rotation=%s min_dwell=%s max_switches=%d window=%s exploit_mode=%s dos_mode=%s confirm=%s\n",
		p.Rotation, p.MinDwell, p.MaxSwitches, p.Window, p.ExploitMode, p.DoSMode, s.Spec.Probe.Confirm)
	var reps []string
	for _, r := range s.Spec.Replicas {
		reps = append(reps, fmt.Sprintf("%s(%s/%s/%s)", r.Name, r.Impl, r.OS, r.Platform))
	}
	fmt.Fprintf(&b, "replicas: %s\n", strings.Join(reps, " "))
	writeCaps(&b, l.caps)
	fmt.Fprintf(&b, "state:    %s\n", render(s))

	var states []visited
	prev := time.Duration(-1)
	for i, st := range sc.steps {
		if st.at < prev {
			t.Fatalf("step %d: time goes back", i)
		}
		prev = st.at
		now := at(st.at)
		states = append(states, visited{scenario: sc.name, lab: l.clone(), now: now})
		fmt.Fprintf(&b, "\n+%-9s ", st.at)
		switch {
		case st.caps != nil:
			l.caps = st.caps
			b.WriteString("driver capabilities change\n")
			writeCaps(&b, l.caps)
			continue
		case st.op != "":
			c := external(t, l, st.op, now)
			fmt.Fprintf(&b, "%s\n", st.op)
			if err := l.apply(c); err != nil {
				fmt.Fprintf(&b, "  refused:  %v\n", err)
			}
		default:
			e := resolveActive(st.ev, l.svc())
			e = resolveManual(e, l.svc())
			dec, err := decide.Decide(l.state(), e, now)
			after := checkDecision(t, l, dec, err, now)
			fmt.Fprintf(&b, "%s\n", e)
			fmt.Fprintf(&b, "  outcome:  %s\n", dec.Outcome)
			fmt.Fprintf(&b, "  reason:   %s\n", dec.Reason)
			if !dec.RetryAt.IsZero() {
				fmt.Fprintf(&b, "  retry at: +%s\n", dec.RetryAt.Sub(base))
			}
			if err != nil {
				fmt.Fprintf(&b, "  error:    %s (%s)\n", fsm.Code(err), err)
			}
			for _, c := range dec.Commands {
				data, err := fsm.Encode(term, c)
				if err != nil {
					t.Fatalf("%s step %d: encode: %v", sc.name, i, err)
				}
				fmt.Fprintf(&b, "  command:  %s\n", data)
			}
			l = after
		}
		fmt.Fprintf(&b, "  state:    %s\n", render(l.svc()))
	}
	states = append(states, visited{scenario: sc.name, lab: l.clone(), now: at(prev)})
	return b.Bytes(), states
}

func writeCaps(b *bytes.Buffer, caps map[string]decide.Capabilities) {
	if len(caps) == 0 {
		return
	}
	var names []string
	for n := range caps {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []string
	for _, n := range names {
		c := caps[n]
		var f []string
		if c.Unavailable {
			f = append(f, "unavailable")
		}
		if c.NoRestore {
			f = append(f, "no-restore")
		}
		if c.Stopped {
			f = append(f, "stopped")
		}
		if c.NotAnswering {
			f = append(f, "not-answering")
		}
		out = append(out, n+"="+strings.Join(f, ","))
	}
	fmt.Fprintf(b, "caps:     %s\n", strings.Join(out, " "))
}

// quarantined in an operation's replica field stands for the (one)
// quarantined or recovering replica.
const quarantined = "@quarantined"

// resolveManual resolves "@active" as a manual target.
func resolveManual(ev decide.Event, s fsm.Service) decide.Event {
	if m, ok := ev.(decide.ManualSwitch); ok && m.To == active {
		a, _ := s.Active()
		m.To = a.Name
		return m
	}
	return ev
}

// external builds the command of an external operation.
func external(t *testing.T, l *lab, o string, now time.Time) fsm.Command {
	t.Helper()
	s := l.svc()
	if o == "done" {
		if s.Intent == nil {
			t.Fatalf("op done: no open intent: %s", render(s))
		}
		return fsm.SwitchDone{Service: svcName, Generation: s.Intent.Generation, At: now.UnixNano(),
			DetectionMS: 250, SwitchMS: 40, TotalMS: 290}
	}
	action, replica, ok := strings.Cut(o, " ")
	if !ok {
		t.Fatalf("bad op %q", o)
	}
	if replica == quarantined {
		replica = ""
		for _, r := range s.Replicas {
			if r.Role == fsm.RoleQuarantined || r.Role == fsm.RoleRecovering {
				replica = r.Name
			}
		}
		if replica == "" {
			t.Fatalf("op %q: no quarantined replica: %s", o, render(s))
		}
	}
	return fsm.ReplicaRole{Service: svcName, Replica: replica, Action: action, ExpectGeneration: s.Generation}
}

// repeatedDoS is the repeated-dos scenario: twelve probe verdicts 5s apart
// on the active, each answered 1s before, each switch verified 300ms later
// and its source restored 3s later; then three dos alerts on the same
// cadence, which are damped.
func repeatedDoS() []step {
	const ms, sec = time.Millisecond, time.Second
	var steps []step
	for i := range 12 {
		t := time.Duration(i) * 5 * sec
		v := verdict(active)
		v.AnsweredAt = at(t - sec)
		steps = append(steps, ev(t, v), op(t+300*ms, "done"), op(t+3*sec, "restored "+quarantined))
	}
	for i := range 3 {
		steps = append(steps, ev(time.Duration(60+5*i)*sec, dosAlert(fmt.Sprintf("watchdog-%d", i), active)))
	}
	return steps
}

func TestScenarios(t *testing.T) {
	seen := map[string]bool{}
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			if seen[sc.name] {
				t.Fatalf("duplicate scenario %q", sc.name)
			}
			seen[sc.name] = true
			got, _ := runScenario(t, sc)
			golden(t, filepath.Join("testdata", "scenarios", sc.name+".golden"), got)
		})
	}
	if *update {
		// Remove golden files of scenarios that no longer exist.
		files, _ := filepath.Glob(filepath.Join("testdata", "scenarios", "*.golden"))
		for _, f := range files {
			if !seen[strings.TrimSuffix(filepath.Base(f), ".golden")] {
				if err := os.Remove(f); err != nil {
					t.Error(err)
				}
			}
		}
	}
}

// golden compares got with the file at path, or rewrites it with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the golden file (if intended, rerun with -update):\n%s", path, diff(string(want), string(got)))
	}
}

// diff shows the first differing line with some context.
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n--- want\n%s\n--- got\n%s", i+1, wl, gl)
		}
	}
	return "(no line differs)"
}
