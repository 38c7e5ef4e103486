package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ars-project/ars/fsm"
)

// withHealthAddrs applies the service again with a health_addr for every
// replica (127.0.1.N:5353, never queried over the network: the fake query
// answers it) and a fast standby pacing, and tells the fake driver.
func (e *env) withHealthAddrs() {
	e.t.Helper()
	svc, _ := e.cl.Service(svcName)
	spec := svc.Spec
	e.d.mu.Lock()
	for i := range spec.Replicas {
		addr := "127.0.1." + string(rune('1'+i)) + ":5353"
		spec.Replicas[i].HealthAddr = addr
		e.d.healthAddr[addr] = spec.Replicas[i].Name
	}
	e.d.mu.Unlock()
	spec.Probe.StandbyInterval = fsm.Duration(100 * time.Millisecond)
	spec.Probe.StandbyFailures = 2
	e.cl.must(e.t, fsm.ServiceApply{Spec: spec})
}

// healthOf is the controller's measured health of a standby; false when
// it shows none.
func (e *env) healthOf(replica string) (StandbyHealth, bool) {
	for _, h := range e.ctl.StandbyHealth() {
		if h.Service == svcName && h.Replica == replica {
			return h, true
		}
	}
	return StandbyHealth{}, false
}

// A standby whose DNS server is wedged (running, attached to nothing,
// answering nothing) is found by the leader's health probe, and a DoS on
// the active switches to the next replica that answers instead of onto
// it. Without the health probe the switch took the wedged standby, and
// the service stayed down until its own verdict, damped by min_dwell
// since it never answered.
func TestDoSPassesOverAStandbyThatDoesNotAnswer(t *testing.T) {
	e := newEnv(t)
	e.withHealthAddrs()
	e.d.hang("unbound-a", true)
	e.start(true)
	eventually(t, "unbound-a judged not answering", func() bool {
		h, ok := e.healthOf("unbound-a")
		return ok && !h.Answering
	})
	if got := testutil.ToFloat64(e.m.standby.WithLabelValues(svcName, "unbound-a")); got != 0 {
		t.Errorf("standby health metric %v, want 0", got)
	}
	e.d.attack("bind9", true)
	eventually(t, "switch to knot-a", e.activeIs("knot-a"))
	h := e.switches()
	if len(h) != 1 || h[0].From != "bind-a" || h[0].To != "knot-a" || h[0].Reason != fsm.ReasonDoS {
		t.Fatalf("history %+v", h)
	}
	if want := `standby \"unbound-a\" does not answer its health probe`; !strings.Contains(e.logs.String(), want) {
		t.Errorf("the decision's logged reason does not say why the standby was passed over")
	}
}

// The health prober of a standby stops when it becomes active (the
// service's prober takes over) and one starts for the new standby; its
// measured health is shown only once measured, and only while standby.
func TestStandbyHealthFollowsTheStandby(t *testing.T) {
	e := newEnv(t)
	e.withHealthAddrs()
	e.start(true)
	eventually(t, "unbound-a measured answering", func() bool {
		h, ok := e.healthOf("unbound-a")
		return ok && h.Answering && h.Addr == "127.0.1.2:5353"
	})
	if got := testutil.ToFloat64(e.m.standby.WithLabelValues(svcName, "unbound-a")); got != 1 {
		t.Errorf("standby health metric %v, want 1", got)
	}
	for _, r := range []string{"bind-a", "bind-b", "knot-a"} {
		if _, ok := e.healthOf(r); ok || e.d.healthQueries(r) != 0 {
			t.Errorf("%s is not standby and was probed or shown", r)
		}
	}
	e.d.attack("bind9", true)
	eventually(t, "switch to unbound-a, knot-a the new standby", e.settled("bind-a=suspended unbound-a=active bind-b=suspended knot-a=standby"))
	eventually(t, "knot-a measured, unbound-a no longer shown", func() bool {
		_, active := e.healthOf("unbound-a")
		h, ok := e.healthOf("knot-a")
		return !active && ok && h.Answering
	})
	// The view drops unbound-a only after its prober has stopped: from
	// now on nothing queries its health address.
	n := e.d.healthQueries("unbound-a")
	k := e.d.healthQueries("knot-a")
	eventually(t, "knot-a probed three more times", func() bool { return e.d.healthQueries("knot-a") >= k+3 })
	if got := e.d.healthQueries("unbound-a"); got != n {
		t.Errorf("unbound-a's health address queried %d more times after it became active", got-n)
	}
	if got := testutil.CollectAndCount(e.m.standby); got != 1 {
		t.Errorf("%d standby health series, want 1 (knot-a)", got)
	}
}

// Health probes run only under a leadership: they stop when it ends and
// start again with the next one.
func TestStandbyHealthStopsWithLeadership(t *testing.T) {
	e := newEnv(t)
	e.withHealthAddrs()
	e.start(true)
	eventually(t, "unbound-a measured", func() bool { _, ok := e.healthOf("unbound-a"); return ok })
	e.stop()
	e.d.noLeader.Store(true) // a query from now on fails the test
	if hs := e.ctl.StandbyHealth(); len(hs) != 0 {
		t.Errorf("health shown without leadership: %+v", hs)
	}
	if got := testutil.CollectAndCount(e.m.standby); got != 0 {
		t.Errorf("%d standby health series without leadership", got)
	}
	n := e.d.healthQueries("unbound-a")
	// Leadership again: the probes resume.
	e.d.noLeader.Store(false)
	e.run()
	eventually(t, "unbound-a probed again", func() bool { return e.d.healthQueries("unbound-a") > n })
	eventually(t, "unbound-a measured again", func() bool { _, ok := e.healthOf("unbound-a"); return ok })
}
