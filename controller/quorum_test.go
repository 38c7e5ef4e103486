package controller

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ars-project/ars/controller/probe"
	"github.com/ars-project/ars/fsm"
)

func TestReportCodec(t *testing.T) {
	ok := Report{Node: "n2", Service: "dns", Replica: "bind-a", Epoch: 7, Down: true, DownForUS: 275000}
	b, err := EncodeReport(ok)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeReport(b)
	ok.V = ReportVersion
	if err != nil || got != ok {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	bad := []struct{ name, in, want string }{
		{"not json", `down`, "probe report:"},
		{"unknown field", `{"v":1,"node":"n","service":"s","replica":"r","epoch":1,"x":1}`, "unknown field"},
		{"trailing", `{"v":1,"node":"n","service":"s","replica":"r","epoch":1} {}`, "trailing"},
		{"version", `{"v":2,"node":"n","service":"s","replica":"r","epoch":1}`, "version 2"},
		{"no node", `{"v":1,"service":"s","replica":"r","epoch":1}`, "node:"},
		{"no service", `{"v":1,"node":"n","replica":"r","epoch":1}`, "service:"},
		{"no replica", `{"v":1,"node":"n","service":"s","epoch":1}`, "replica:"},
		{"long node", `{"v":1,"node":"` + strings.Repeat("n", 129) + `","service":"s","replica":"r","epoch":1}`, "node:"},
		{"epoch 0", `{"v":1,"node":"n","service":"s","replica":"r","epoch":0}`, "epoch"},
		{"negative down_for", `{"v":1,"node":"n","service":"s","replica":"r","epoch":1,"down":true,"down_for_us":-1}`, "down_for_us"},
		{"down_for while up", `{"v":1,"node":"n","service":"s","replica":"r","epoch":1,"down_for_us":5}`, "down_for_us"},
		{"huge down_for", `{"v":1,"node":"n","service":"s","replica":"r","epoch":1,"down":true,"down_for_us":4000000000}`, "down_for_us"},
	}
	for _, c := range bad {
		if _, err := DecodeReport([]byte(c.in)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want it to mention %q", c.name, err, c.want)
		}
	}
	if _, err := EncodeReport(Report{Node: "n"}); err == nil {
		t.Error("an incomplete report was encoded")
	}
}

func TestTally(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	down := func(node string, epoch uint64, forMS int) Report {
		return Report{Node: node, Service: "dns", Replica: "bind-a", Epoch: epoch, Down: true, DownForUS: int64(forMS) * 1000}
	}
	cases := []struct {
		name     string
		reports  []Report
		recv     []time.Duration // per report, after t0
		at       time.Duration   // count at t0+at
		want     int
		earliest time.Duration // after t0 (only when want > 0)
	}{
		{"none", nil, nil, 0, 0, 0},
		{"one down", []Report{down("n2", 5, 300)}, []time.Duration{time.Second}, time.Second, 1, 700 * time.Millisecond},
		{"two down, earliest start wins", []Report{down("n2", 5, 300), down("n3", 5, 100)}, []time.Duration{time.Second, time.Second}, time.Second, 2, 700 * time.Millisecond},
		{"newer report of a node replaces its older one", []Report{down("n2", 5, 300), {Node: "n2", Service: "dns", Replica: "bind-a", Epoch: 5}}, []time.Duration{0, 10 * time.Millisecond}, 20 * time.Millisecond, 0, 0},
		{"another epoch does not count", []Report{down("n2", 4, 300), down("n3", 5, 100)}, []time.Duration{0, 0}, 0, 1, -100 * time.Millisecond},
		{"another replica does not count", []Report{{Node: "n2", Service: "dns", Replica: "unbound-a", Epoch: 5, Down: true}}, []time.Duration{0}, 0, 0, 0},
		{"another service does not count", []Report{{Node: "n2", Service: "web", Replica: "bind-a", Epoch: 5, Down: true}}, []time.Duration{0}, 0, 0, 0},
		{"self does not count", []Report{down("n1", 5, 300)}, []time.Duration{0}, 0, 0, 0},
		{"expired", []Report{down("n2", 5, 300)}, []time.Duration{0}, ReportTTL + time.Millisecond, 0, 0},
		{"down vote fresh at its TTL", []Report{down("n2", 5, 300)}, []time.Duration{0}, DownVoteTTL, 1, -300 * time.Millisecond},
		{"down vote not refreshed", []Report{down("n2", 5, 300)}, []time.Duration{0}, DownVoteTTL + time.Millisecond, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ty := newTally()
			for i, r := range c.reports {
				ty.add(r, t0.Add(c.recv[i]))
			}
			since := ty.down("dns", "bind-a", 5, "n1", t0.Add(c.at))
			n, e := len(since), time.Time{}
			for _, s := range since {
				if e.IsZero() || s.Before(e) {
					e = s
				}
			}
			if n != c.want {
				t.Fatalf("votes %d, want %d", n, c.want)
			}
			if n > 0 && !e.Equal(t0.Add(c.earliest)) {
				t.Fatalf("earliest %s, want %s", e.Sub(t0), c.earliest)
			}
		})
	}
	if Majority(3) != 2 || Majority(4) != 3 || Majority(5) != 3 || Majority(1) != 1 {
		t.Fatal("Majority")
	}
}

// runWitness starts a Witness until the test ends.
func runWitness(t *testing.T, cfg WitnessConfig) *Witness {
	t.Helper()
	wit, err := NewWitness(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); wit.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return wit
}

type fakeWitnessCluster struct {
	*fakeCluster
	leader atomic.Bool
	waits  atomic.Int64 // Changed calls
	mu     sync.Mutex
	sent   []Report
}

func (c *fakeWitnessCluster) Changed() <-chan struct{} {
	c.waits.Add(1)
	return c.fakeCluster.Changed()
}

func (c *fakeWitnessCluster) IsLeader() bool { return c.leader.Load() }

func (c *fakeWitnessCluster) SendToLeader(msg []byte) error {
	r, err := DecodeReport(msg)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.sent = append(c.sent, r)
	c.mu.Unlock()
	return nil
}

func (c *fakeWitnessCluster) reports() []Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Report(nil), c.sent...)
}

// A follower's witness starts probing a service as soon as it is
// applied, not at its next idle tick (ten ticks: 500 ms by default; here
// an hour, so only the commit can wake it).
func TestWitnessProbesANewServiceAtOnce(t *testing.T) {
	e := newEnv(t) // confirm none: the witness has nothing to probe
	follower := &fakeWitnessCluster{fakeCluster: e.cl}
	runWitness(t, WitnessConfig{NodeName: "n2", Cluster: follower, Query: e.d.query(svcName), Tick: time.Hour})
	eventually(t, "the witness waiting for a commit", func() bool { return follower.waits.Load() > 0 })
	svc, _ := e.cl.Service(svcName)
	spec := svc.Spec
	spec.Probe.Confirm = fsm.ConfirmQuorum
	e.cl.must(t, fsm.ServiceApply{Spec: spec})
	eventually(t, "a report on the service now confirmed by quorum", func() bool { return len(follower.reports()) > 0 })
}

// A follower's witness probes only services that want quorum confirmation
// and reports DOWN on the current activation; a leader's witness is idle.
func TestWitnessReportsOnlyAsFollower(t *testing.T) {
	e := newEnvConfirm(t, "quorum")
	other := fsm.ServiceSpec{Name: "web", Address: "127.0.0.1:5354",
		Replicas: []fsm.ReplicaSpec{{Name: "w1", Impl: "x", OS: "linux", Platform: fsm.PlatformVM}},
		Probe:    fsm.ProbeSpec{Query: "www.lab.internal."}}
	e.cl.must(t, fsm.ServiceApply{Spec: other})
	svc, _ := e.cl.Service(svcName)
	act, _ := svc.Active()

	var leaderQueries atomic.Int64
	q := e.d.query(svcName)
	follower := &fakeWitnessCluster{fakeCluster: e.cl}
	leader := &fakeWitnessCluster{fakeCluster: e.cl}
	leader.leader.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, w := range []struct {
		c *fakeWitnessCluster
		n string
	}{{follower, "n2"}, {leader, "n1"}} {
		query := q
		if w.c == leader {
			query = func(ctx context.Context, addr string, spec fsm.ProbeSpec) probe.Result {
				leaderQueries.Add(1)
				return q(ctx, addr, spec)
			}
		}
		wit, err := NewWitness(WitnessConfig{NodeName: w.n, Cluster: w.c, Query: query, Tick: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); wit.Run(ctx) }()
	}
	defer func() { cancel(); wg.Wait() }()

	e.d.attack("bind9", true)
	eventually(t, "three DOWN reports from the follower", func() bool {
		n := 0
		for _, r := range follower.reports() {
			if r.Down {
				n++
			}
		}
		return n >= 3
	})
	for _, r := range follower.reports() {
		if r.Service != svcName || r.Node != "n2" || r.Replica != act.Name || r.Epoch != act.Since {
			t.Fatalf("report %+v: want service %s replica %s epoch %d from n2", r, svcName, act.Name, act.Since)
		}
		if r.Down && r.DownForUS <= 0 {
			t.Fatalf("DOWN report without an outage length: %+v", r)
		}
	}
	if n := len(leader.reports()); n != 0 || leaderQueries.Load() != 0 {
		t.Fatalf("the leader's witness sent %d reports and %d probes", n, leaderQueries.Load())
	}
}
