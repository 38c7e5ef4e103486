package decide_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/controller/decide"
	"github.com/ars-project/ars/fsm"
)

// base is the injected clock's origin: every "now" in these tests is base
// plus an offset.
var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return base.Add(d) }

func ns(d time.Duration) int64 { return at(d).UnixNano() }

const svcName = "dns"

func rep(name, impl, os, platform string) fsm.ReplicaSpec {
	return fsm.ReplicaSpec{Name: name, Impl: impl, OS: os, Platform: platform}
}

// spec builds a service spec from replicas; the policy is the default one,
// changed by opts.
func spec(replicas []fsm.ReplicaSpec, opts ...func(*fsm.ServiceSpec)) fsm.ServiceSpec {
	s := fsm.ServiceSpec{
		Name:     svcName,
		Address:  "192.0.2.53:53",
		Replicas: replicas,
		Probe:    fsm.ProbeSpec{Query: "www.lab.internal.", Expect: "192.0.2.10"},
	}
	for _, o := range opts {
		o(&s)
	}
	return s
}

// paperReplicas is the paper's lab. Created: win-bind=active
// lin-unbound=standby, the others suspended.
func paperReplicas() []fsm.ReplicaSpec {
	return []fsm.ReplicaSpec{
		rep("win-bind", "bind9", "windows", "vm"),
		rep("win-unbound", "unbound", "windows", "vm"),
		rep("lin-bind", "bind9", "linux", "container"),
		rep("lin-unbound", "unbound", "linux", "container"),
	}
}

// fiveReplicas is the paper's lab plus a Knot Resolver container.
func fiveReplicas() []fsm.ReplicaSpec {
	return append(paperReplicas(), rep("lin-knot", "knot-resolver", "linux", "container"))
}

// implPairs is two replicas of each of two impls, bind first (spec order).
func implPairs() []fsm.ReplicaSpec {
	return []fsm.ReplicaSpec{
		rep("bind-a", "bind9", "linux", "vm"),
		rep("bind-b", "bind9", "linux", "container"),
		rep("unbound-a", "unbound", "linux", "vm"),
		rep("unbound-b", "unbound", "linux", "container"),
	}
}

func roundRobin(s *fsm.ServiceSpec) { s.Policy.Rotation = fsm.RotationRoundRobin }
func quorum(s *fsm.ServiceSpec)     { s.Probe.Confirm = fsm.ConfirmQuorum }
func dwell(d time.Duration) func(*fsm.ServiceSpec) {
	return func(s *fsm.ServiceSpec) { s.Policy.MinDwell = fsm.Duration(d) }
}
func maxSwitches(n int, window time.Duration) func(*fsm.ServiceSpec) {
	return func(s *fsm.ServiceSpec) {
		s.Policy.MaxSwitches = n
		s.Policy.Window = fsm.Duration(window)
	}
}
func modes(exploit, dos string) func(*fsm.ServiceSpec) {
	return func(s *fsm.ServiceSpec) { s.Policy.ExploitMode, s.Policy.DoSMode = exploit, dos }
}

// lab is an fsm.Machine holding one service, with commands applied at
// consecutive log indexes in term 1, as the leader would.
type lab struct {
	t     testing.TB
	m     *fsm.Machine
	index uint64
	caps  map[string]decide.Capabilities
}

const term = 1

func newLab(t testing.TB, s fsm.ServiceSpec) *lab {
	t.Helper()
	l := &lab{t: t, m: fsm.New()}
	l.must(fsm.ServiceApply{Spec: s})
	return l
}

// apply encodes c with the leader's term and applies it at the next index.
func (l *lab) apply(c fsm.Command) error {
	l.t.Helper()
	data, err := fsm.Encode(term, c)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	l.index++
	_, err = l.m.Apply(l.index, term, data)
	return err
}

func (l *lab) must(cs ...fsm.Command) {
	l.t.Helper()
	for _, c := range cs {
		if err := l.apply(c); err != nil {
			l.t.Fatalf("apply %T %+v: %v\n%s", c, c, err, render(l.svc()))
		}
	}
}

func (l *lab) svc() fsm.Service {
	l.t.Helper()
	s, ok := l.m.Service(svcName)
	if !ok {
		l.t.Fatalf("service %q missing", svcName)
	}
	return s
}

func (l *lab) state() decide.State { return decide.State{Service: l.svc(), Capabilities: l.caps} }

// clone returns an independent copy of the lab (snapshot and restore).
func (l *lab) clone() *lab {
	l.t.Helper()
	b, err := l.m.Snapshot()
	if err != nil {
		l.t.Fatal(err)
	}
	m := fsm.New()
	if err := m.Restore(b); err != nil {
		l.t.Fatal(err)
	}
	return &lab{t: l.t, m: m, index: l.index, caps: l.caps}
}

// Setup steps, as the reconciler or an operator would commit them.

func (l *lab) switchTo(to, reason string, when time.Duration) {
	l.t.Helper()
	s := l.svc()
	a, _ := s.Active()
	l.must(fsm.Switch{Service: svcName, From: a.Name, To: to, Reason: reason, ExpectGeneration: s.Generation, At: ns(when)})
}

func (l *lab) done(when time.Duration) {
	l.t.Helper()
	s := l.svc()
	if s.Intent == nil {
		l.t.Fatal("done: no open intent")
	}
	l.must(fsm.SwitchDone{Service: svcName, Generation: s.Intent.Generation, At: ns(when)})
}

func (l *lab) role(replica, action string) {
	l.t.Helper()
	l.must(fsm.ReplicaRole{Service: svcName, Replica: replica, Action: action})
}

// roles renders "a=active b=standby ...".
func roles(s fsm.Service) string {
	var b strings.Builder
	for i, r := range s.Replicas {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%s", r.Name, r.Role)
	}
	return b.String()
}

// render is roles plus generation and the open intent.
func render(s fsm.Service) string {
	out := fmt.Sprintf("gen=%d %s", s.Generation, roles(s))
	if in := s.Intent; in != nil {
		out += fmt.Sprintf(" intent=g%d:%s->%s(%s)", in.Generation, in.From, in.To, in.Reason)
	}
	return out
}

// checkDecision asserts what every decision must satisfy, whatever the
// event, and applies its commands to a copy of l: they must all be accepted
// (in particular never with a stale generation, since they were generated
// from the current state), and no replica that was quarantined or
// recovering may become active or standby (docs/design.md §4.4). It returns the
// copy after the commands, or l itself if there are none.
func checkDecision(t testing.TB, l *lab, dec decide.Decision, err error, now time.Time) *lab {
	t.Helper()
	before := l.svc()
	if dec.Outcome == "" {
		t.Fatalf("decision without outcome: %+v", dec)
	}
	if dec.Reason == "" {
		t.Fatalf("decision without reason: %+v", dec)
	}
	if err != nil && len(dec.Commands) > 0 {
		t.Fatalf("error %v with commands %+v", err, dec.Commands)
	}
	if err != nil && fsm.Code(err) == "" {
		t.Fatalf("error %v wraps no fsm sentinel", err)
	}
	damped := dec.Outcome == decide.OutcomeDampedDwell || dec.Outcome == decide.OutcomeDampedRate
	if damped != !dec.RetryAt.IsZero() {
		t.Fatalf("outcome %q with RetryAt %v", dec.Outcome, dec.RetryAt)
	}
	if damped && !dec.RetryAt.After(now) {
		t.Fatalf("damped until %v, not after now %v", dec.RetryAt, now)
	}
	if len(dec.Commands) > 1 {
		t.Fatalf("%d commands, decide emits at most one: %+v", len(dec.Commands), dec.Commands)
	}
	if len(dec.Commands) == 0 {
		if dec.Outcome == decide.OutcomeSwitch || dec.Outcome == decide.OutcomeQuarantine {
			t.Fatalf("outcome %q without command", dec.Outcome)
		}
		return l
	}
	after := l.clone()
	for _, c := range dec.Commands {
		switch c := c.(type) {
		case fsm.Switch:
			if dec.Outcome != decide.OutcomeSwitch {
				t.Fatalf("switch command with outcome %q", dec.Outcome)
			}
			a, _ := before.Active()
			if c.From != a.Name || c.Service != svcName || c.At != now.UnixNano() || c.Mode == "" {
				t.Fatalf("switch %+v: want from %q at %d with explicit mode", c, a.Name, now.UnixNano())
			}
			if c.ExpectGeneration != before.Generation {
				t.Fatalf("switch expects generation %d, state is at %d", c.ExpectGeneration, before.Generation)
			}
			to, _ := before.Replica(c.To)
			if !to.Clean || !to.Role.Eligible() {
				t.Fatalf("invariant 4: switch to %q which is %s (clean=%v)", c.To, to.Role, to.Clean)
			}
			if l.caps[c.To].Unavailable {
				t.Fatalf("switch to unavailable %q", c.To)
			}
		case fsm.ReplicaRole:
			if dec.Outcome != decide.OutcomeQuarantine || c.Action != fsm.ActionQuarantine {
				t.Fatalf("role command %+v with outcome %q", c, dec.Outcome)
			}
			if c.ExpectGeneration != before.Generation {
				t.Fatalf("role command expects generation %d, state is at %d", c.ExpectGeneration, before.Generation)
			}
		default:
			t.Fatalf("unexpected command %T", c)
		}
		if err := after.apply(c); err != nil {
			if errors.Is(err, fsm.ErrStaleGeneration) {
				t.Fatalf("command generated from the current state rejected as stale: %v", err)
			}
			t.Fatalf("FSM rejects %T %+v: %v\nstate %s", c, c, err, render(before))
		}
	}
	checkInvariant4(t, before, after.svc())
	return after
}

// checkInvariant4: no replica that was dirty (quarantined or recovering)
// before a decision's commands is active or standby after them.
func checkInvariant4(t testing.TB, before, after fsm.Service) {
	t.Helper()
	for _, b := range before.Replicas {
		if b.Clean {
			continue
		}
		a, _ := after.Replica(b.Name)
		if a.Role == fsm.RoleActive || a.Role == fsm.RoleStandby || a.Clean {
			t.Fatalf("invariant 4: %q was %s, is now %s (clean=%v)", b.Name, b.Role, a.Role, a.Clean)
		}
	}
}
