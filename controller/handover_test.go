package controller

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/controller/probe"
	"github.com/ars-project/ars/fsm"
)

type fakeWitness []WitnessVote

func (w fakeWitness) Votes() []WitnessVote { return w }

// hangingQuery never gets an answer while hang is set: the probe waits
// until it is cancelled (a cancelled probe is no evidence), so a prober
// using it stays without a verdict.
func hangingQuery(hang *atomic.Bool, q probe.QueryFunc) probe.QueryFunc {
	return func(ctx context.Context, addr string, spec fsm.ProbeSpec) probe.Result {
		if hang.Load() {
			start := time.Now()
			<-ctx.Done()
			return probe.Result{Start: start, Reason: probe.ReasonCanceled, Rcode: -1, Err: ctx.Err()}
		}
		return q(ctx, addr, spec)
	}
}

// newHandoverEnv is three voters with quorum confirmation, bind9 (the
// active's impl) attacked, and the leader's own probes without an answer
// or a failure while hang is set: its prober stays without a verdict.
func newHandoverEnv(t *testing.T) (*env, *atomic.Bool) {
	t.Helper()
	e := newEnvConfirm(t, "quorum")
	e.cl.voters = 3
	e.d.attack("bind9", true)
	hang := new(atomic.Bool)
	hang.Store(true)
	e.query = hangingQuery(hang, e.d.query(svcName))
	return e, hang
}

// ownVote is the node's own witness's DOWN verdict on the current
// activation, read just before it led, with the replica seen answering
// before the outage.
func ownVote(t *testing.T, cl *fakeCluster, down, seenUp bool) fakeWitness {
	t.Helper()
	svc, _ := cl.Service(svcName)
	act, _ := svc.Active()
	v := WitnessVote{Report: Report{V: ReportVersion, Node: "n1", Service: svcName, Replica: act.Name, Epoch: act.Since, Down: down},
		Age: 10 * time.Millisecond}
	if down {
		v.DownForUS = (700 * time.Millisecond).Microseconds()
	}
	if seenUp {
		v.SeenUp, v.UpAge = true, 900*time.Millisecond
	}
	return fakeWitness{v}
}

// A DoS that began before the election: the new leader's own prober has no
// verdict yet (its probes get no answer and no failure) and its vCenter
// login is still running, so nothing is observed. The follower's DOWN vote
// and the node's own witness's DOWN (from when it followed) are a quorum at
// once: the switch is decided and committed without a driver call, and
// carried out the moment the driver is ready.
func TestNewLeaderDecidesOnWhatTheClusterKnows(t *testing.T) {
	e, hang := newHandoverEnv(t)
	e.d.notReady.Store(true)
	e.witness = ownVote(t, e.cl, true, true)
	e.start(true)
	e.report("n2", true, 600*time.Millisecond, 0)

	eventually(t, "DoS switch committed", func() bool { return len(e.switches()) == 1 })
	h := e.switches()[0]
	if h.Reason != fsm.ReasonDoS || h.From != "bind-a" || h.Done {
		t.Fatalf("switch %+v: want an open DoS switch away from bind-a", h)
	}
	if calls, obs := e.d.callLog(), e.d.observes.Load(); len(calls) != 0 || obs != 0 {
		t.Fatalf("driver called before it was ready: %v, %d observes", calls, obs)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "confirmations=2 quorum=true") {
		t.Fatalf("want a decision on two votes:\n%s", logs)
	}
	// Seen serving by the witness is an answer: the verdict says so, and
	// decide does not flap-damp it.
	if logs := e.logs.String(); !strings.Contains(logs, "answered_at=") {
		t.Fatalf("want the verdict to carry the witness's answer:\n%s", logs)
	}

	hang.Store(false)
	e.d.becomeReady()
	eventually(t, "switch done", e.activeIs("unbound-a"))
	eventually(t, "unbound-a attached", e.vmIs("unbound-a", driver.PowerOn, true))
	if got := testutil.ToFloat64(e.m.decisions.WithLabelValues(svcName, "switch")); got != 1 {
		t.Fatalf("%v switch decisions, want 1", got)
	}
}

// The witness's verdict stands for the leader's vote only while it is
// DOWN and about the current activation; a vote on the previous active,
// an UP verdict, or no follower leaves the service where it is.
func TestNewLeaderWitnessVoteAlone(t *testing.T) {
	for _, c := range []struct {
		name      string
		own       func(*fakeCluster) fakeWitness
		follower  bool
		epochMove int
	}{
		{"no follower vote", func(cl *fakeCluster) fakeWitness { return ownVote(t, cl, true, true) }, false, 0},
		{"own verdict up", func(cl *fakeCluster) fakeWitness { return ownVote(t, cl, false, true) }, true, 0},
		{"own vote on another activation", func(cl *fakeCluster) fakeWitness {
			w := ownVote(t, cl, true, true)
			w[0].Epoch++
			return w
		}, true, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, _ := newHandoverEnv(t)
			e.witness = c.own(e.cl)
			e.start(true)
			if c.follower {
				e.report("n2", true, 600*time.Millisecond, 0)
				eventually(t, "follower report counted", func() bool {
					return testutil.ToFloat64(e.m.reports.WithLabelValues("accepted")) >= 3
				})
			}
			// Several full passes (the loop observes every replica) and the
			// follower's reports have been weighed: still no decision.
			eventually(t, "replicas observed several times", func() bool { return e.d.observes.Load() >= 12 })
			if h := e.switches(); len(h) != 0 {
				t.Fatalf("switched on one vote: %+v", h)
			}
		})
	}
}

// Reports that reach a node before its leadership's loop runs (followers
// send to the Raft leader before its barrier) are counted when it starts.
func TestReportsBeforeLeadingCount(t *testing.T) {
	e, _ := newHandoverEnv(t)
	e.witness = ownVote(t, e.cl, true, true)
	e.create(true)
	svc, _ := e.cl.Service(svcName)
	act, _ := svc.Active()
	msg, err := EncodeReport(Report{Node: "n2", Service: svcName, Replica: act.Name, Epoch: act.Since,
		Down: true, DownForUS: (600 * time.Millisecond).Microseconds()})
	if err != nil {
		t.Fatal(err)
	}
	e.ctl.HandleReport(msg) // once: no follower repeats it after Run starts
	e.run()
	eventually(t, "DoS switch committed", func() bool { return len(e.switches()) == 1 })
	if logs := e.logs.String(); !strings.Contains(logs, "reports=1") || !strings.Contains(logs, "confirmations=2 quorum=true") {
		t.Fatalf("want the queued report counted:\n%s", logs)
	}
}

// An active the earlier leader verified (SwitchDone) is judged from the
// start of the term; one never verified (a switch still open, or the
// service's first active) is not.
func TestVerifiedActivation(t *testing.T) {
	e := newEnv(t)
	svc, _ := e.cl.Service(svcName)
	a, _ := activationOf(svc)
	if _, ok := verifiedActivation(svc, a); ok {
		t.Fatal("the first active counts as verified")
	}
	res := e.cl.must(t, fsm.Switch{Service: svcName, From: "bind-a", To: "unbound-a", Reason: fsm.ReasonDoS, At: time.Now().UnixNano()})
	svc, _ = e.cl.Service(svcName)
	a, _ = activationOf(svc)
	if _, ok := verifiedActivation(svc, a); ok {
		t.Fatal("an open switch counts as verified")
	}
	e.cl.must(t, fsm.SwitchDone{Service: svcName, Generation: res.Generation, At: time.Now().UnixNano()})
	svc, _ = e.cl.Service(svcName)
	a, _ = activationOf(svc)
	rec, ok := verifiedActivation(svc, a)
	if !ok || rec.To != "unbound-a" {
		t.Fatalf("verified switch not found: %+v %v", rec, ok)
	}
}

// A new leader's first pass observes every replica (on vSphere each
// Observe is a vCenter round trip, the first ones after the login);
// reports that arrive meanwhile are decided on while the reads are in
// flight, and the switch goes first.
func TestDecisionNotHeldBehindObservations(t *testing.T) {
	e, hang := newHandoverEnv(t)
	e.witness = ownVote(t, e.cl, false, true) // seen serving; no DOWN of its own
	first, second := make(chan struct{}), make(chan struct{})
	e.d.mu.Lock()
	e.d.delay["observe unbound-a"] = first
	e.d.delay["observe bind-b"] = second // held until the test ends
	e.d.mu.Unlock()
	defer close(second)
	e.start(true)
	eventually(t, "first pass observing the standby", func() bool {
		e.d.mu.Lock()
		defer e.d.mu.Unlock()
		return e.d.held["observe unbound-a"] > 0
	})
	e.report("n2", true, 600*time.Millisecond, 0)
	e.report("n3", true, 500*time.Millisecond, 0)
	eventually(t, "reports queued", func() bool {
		return testutil.ToFloat64(e.m.reports.WithLabelValues("accepted")) >= 2
	})
	hang.Store(false)
	close(first)
	// bind-b's observation never returns; the switch is decided and
	// carried out all the same.
	eventually(t, "switch done", e.activeIs("unbound-a"))
	eventually(t, "unbound-a attached", e.vmIs("unbound-a", driver.PowerOn, true))
}

// While the leader's own prober has no verdict yet, its node's witness's
// reports (delivered in-process during the handover) are its vote.
func TestSelfReportVotesUntilTheLeadersProberHasAVerdict(t *testing.T) {
	e, _ := newHandoverEnv(t)
	e.witness = ownVote(t, e.cl, false, true) // seen serving, not down yet when it led
	e.start(true)
	e.report("n2", true, 600*time.Millisecond, 0)
	eventually(t, "follower reports counted", func() bool {
		return testutil.ToFloat64(e.m.reports.WithLabelValues("accepted")) >= 3
	})
	if h := e.switches(); len(h) != 0 {
		t.Fatalf("switched on one vote: %+v", h)
	}
	e.report("n1", true, 300*time.Millisecond, 0) // the witness turned DOWN
	eventually(t, "DoS switch committed", func() bool { return len(e.switches()) == 1 })
	if logs := e.logs.String(); !strings.Contains(logs, "confirmations=2 quorum=true") {
		t.Fatalf("want a decision on two votes:\n%s", logs)
	}
}

// A witness whose node becomes leader goes on probing and reporting for
// the handover, and keeps its last verdicts for the controller.
func TestWitnessHandsOver(t *testing.T) {
	e := newEnvConfirm(t, "quorum")
	c := &fakeWitnessCluster{fakeCluster: e.cl}
	wit := runWitness(t, WitnessConfig{NodeName: "n1", Cluster: c, Query: e.d.query(svcName), Tick: 5 * time.Millisecond})
	eventually(t, "an UP report, the replica seen answering", func() bool {
		v := wit.Votes()
		return len(c.reports()) > 0 && len(v) == 1 && v[0].SeenUp
	})
	e.d.attack("bind9", true)
	c.leader.Store(true)
	eventually(t, "a DOWN report after the node became leader", func() bool {
		for _, r := range c.reports() {
			if r.Down {
				return true
			}
		}
		return false
	})
	svc, _ := e.cl.Service(svcName)
	act, _ := svc.Active()
	votes := wit.Votes()
	if len(votes) != 1 || !votes[0].Down || !votes[0].SeenUp || votes[0].Replica != act.Name || votes[0].Epoch != act.Since {
		t.Fatalf("votes %+v: want one DOWN vote on %s/%d, seen up before", votes, act.Name, act.Since)
	}
}
