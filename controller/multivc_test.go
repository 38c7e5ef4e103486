package controller

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/controller/probe"
	"github.com/ars-project/ars/controller/vsphere"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/lab/vcwatch"
	testutil2 "github.com/ars-project/ars/test/testutil"
	"github.com/ars-project/ars/vcsim"
)

// The leader drives VMs of two vCenters (two simulators, real vSphere
// drivers in a vsphere.Set) while one of them is faulted: "hung" answers
// none of the driver's calls (they wait on a channel until the test
// ends), "down" refuses connections from the start. A DoS on a replica of
// the healthy vCenter is switched to the other replica there, while a
// service that lives on the faulted vCenter — passed before it, by name —
// has a read and a switch's attach held (hung) or is never read (down). Each vCenter that
// answers has exactly one session of the driver, and none once the
// leadership ends.
func TestSwitchOnHealthyVCenterWhileTheOtherIsFaulted(t *testing.T) {
	for _, fault := range []string{"hung", "hung-at-login", "down"} {
		t.Run(fault, func(t *testing.T) { testTwoVCenters(t, fault) })
	}
}

// VMs of each simulator's inventory (both have the same names).
const (
	vmH0a  = "DC0_H0_VM0"
	vmH0b  = "DC0_H0_VM1"
	vmC0a  = "DC0_C0_RP0_VM0"
	vcUser = "ars"
)

func testTwoVCenters(t *testing.T, fault string) {
	simA, err := vcsim.Start(vcsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(simA.Close)
	simB, err := vcsim.Start(vcsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(simB.Close)
	urlB, thumbB := simB.URL(), simB.Thumbprint()
	if fault == "down" {
		simB.Close() // nothing listens at its address any more
	}

	var logs testutil2.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
		}
	})
	vm := vsphere.NewMetrics(prometheus.NewRegistry())
	newDriver := func(name, url, thumb string) *vsphere.Driver {
		d, err := vsphere.New(vsphere.Config{Name: name, URL: url, Username: vcUser,
			Password: func() (string, error) { return "pw", nil }, Thumbprint: thumb,
			// Longer than the test: a call the hung vCenter holds stays
			// held until the end, whatever the machine's load.
			CallTimeout: time.Minute, KeepAlive: time.Hour, Logger: log, Metrics: vm})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	dA, dB := newDriver("a", simA.URL(), simA.Thumbprint()), newDriver("b", urlB, thumbB)
	set, err := vsphere.NewSet(dA, dB)
	if err != nil {
		t.Fatal(err)
	}

	cl := newFakeCluster()
	rep := func(name, impl, os, vmName, vc string) fsm.ReplicaSpec {
		return fsm.ReplicaSpec{Name: name, Impl: impl, OS: os, Platform: fsm.PlatformVM, VM: vmName, VCenter: vc}
	}
	probeSpec := fsm.ProbeSpec{Query: "www.lab.internal.", Expect: "192.0.2.10"}
	// "cache" lives on the faulted vCenter; "dns" mostly on the healthy one.
	cl.must(t, fsm.ServiceApply{Spec: fsm.ServiceSpec{Name: "cache", Address: "127.0.0.1:5354", Probe: probeSpec,
		Replicas: []fsm.ReplicaSpec{rep("c-bind", "bind9", "linux", vmH0b, "b"), rep("c-unbound", "unbound", "windows", vmC0a, "b")}}})
	// unbound-a can be restored (it has its clean snapshot), so decide
	// prefers it as the standby it is; knot-b, never read when vCenter b
	// hangs from the start, would be taken as restorable too.
	if err := simA.Snapshot(context.Background(), vmH0b, "clean"); err != nil {
		t.Fatal(err)
	}
	unboundA := rep("unbound-a", "unbound", "windows", vmH0b, "a")
	unboundA.Snapshot = "clean"
	cl.must(t, fsm.ServiceApply{Spec: fsm.ServiceSpec{Name: svcName, Address: "127.0.0.1:5353", Probe: probeSpec,
		Replicas: []fsm.ReplicaSpec{
			rep("bind-a", "bind9", "linux", vmH0a, "a"),
			unboundA,
			rep("knot-b", "knot", "linux", vmH0a, "b"),
		}}})
	if got := roles(cl); got != "bind-a=active unbound-a=standby knot-b=suspended" {
		t.Fatalf("initial roles %s", got)
	}

	// What a client of "dns" sees: the VMs of vCenter a that are on the
	// service network, read by a watcher of its own (user "watch").
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	impl := map[string]string{vmH0a: "bind9", vmH0b: "unbound"}
	wA := watchVMs(ctx, t, &wg, simA, vmH0a, vmH0b)
	var attacked atomic.Bool // bind9 does not answer
	attachedOnA := func() []string {
		var on []string
		for name, st := range wA() {
			if st.Attached() {
				on = append(on, name)
			}
		}
		return on
	}
	query := func(_ context.Context, addr string, _ fsm.ProbeSpec) probe.Result {
		start := time.Now()
		ok := addr != "127.0.0.1:5353" // only dns is probed for real
		for _, name := range attachedOnA() {
			ok = ok || !(attacked.Load() && impl[name] == "bind9")
		}
		if ok {
			return probe.Result{Start: start, RTT: time.Millisecond, OK: true, Reason: probe.ReasonOK}
		}
		return probe.Result{Start: start, RTT: time.Millisecond, Reason: probe.ReasonNetwork, Rcode: -1,
			Err: fmt.Errorf("%w: no replica answers", probe.ErrNetwork)}
	}

	cm := NewMetrics(prometheus.NewRegistry())
	ctl, err := New(Config{Cluster: cl, NodeName: "n1", Drivers: map[string]driver.Driver{fsm.PlatformVM: set},
		Logger: log, Metrics: cm, ReconcileInterval: 20 * time.Millisecond,
		Query: query, VerifyBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// What cluster.OnLeader does: every vCenter's session and the loop
	// start together and end with the leadership.
	lead, endLead := context.WithCancel(ctx)
	if fault == "hung-at-login" {
		// The login is answered (it has no session yet), every call after
		// it is not: not one of vCenter b's VMs is ever read.
		simB.Hold(vcUser)
	}
	var leading sync.WaitGroup
	for _, d := range set.Drivers() {
		leading.Go(func() { _ = d.Run(lead) })
	}
	leading.Go(func() { ctl.Run(lead) })
	ended := false
	endLeadership := func() {
		if !ended {
			ended = true
			simB.Release() // let the server answer what it held
			endLead()
			leading.Wait()
		}
	}
	t.Cleanup(endLeadership)

	eventually(t, "bind-a alone on dns's network", func() bool {
		on := attachedOnA()
		return len(on) == 1 && on[0] == vmH0a
	})
	if fault == "down" {
		// Its login got no answer: decide is told its replicas are
		// unavailable, so the switch does not wait for it.
		knot, _ := cl.Service(svcName)
		spec, _ := knot.Spec.Replica("knot-b")
		eventually(t, "vCenter b known unreachable", func() bool { return set.UnreachableFor(spec) })
	}
	if fault == "hung" {
		// Both vCenters answer at first: let the loop bring vCenter b's
		// VMs to their roles (only c-bind on cache's network), then hang
		// it.
		wB := watchVMs(ctx, t, &wg, simB, vmH0a, vmH0b, vmC0a)
		eventually(t, "vCenter b's replicas in their roles", func() bool {
			st := wB()
			return st[vmH0b].Attached() && !st[vmC0a].NICConnected && !st[vmH0a].NICConnected
		})
		simB.Hold(vcUser)
		eventually(t, "a read of the leader loop held by vCenter b", func() bool {
			for m := range simB.Held() {
				if m != "WaitForUpdatesEx" { // the watch's long poll is held too
					return true
				}
			}
			return false
		})
	}

	if fault == "hung" {
		// A switch of cache, whose vCenter hangs: its critical path is
		// held there while dns's switch runs.
		svc, _ := cl.Service("cache")
		cl.must(t, fsm.Switch{Service: "cache", From: "c-bind", To: "c-unbound", Reason: fsm.ReasonManual,
			ExpectGeneration: svc.Generation, At: time.Now().UnixNano()})
		eventually(t, "cache's attach of c-unbound started (and held)", func() bool {
			return testutil.ToFloat64(cm.actions.WithLabelValues("cache", "attach")) > 0
		})
	}
	attacked.Store(true)
	eventually(t, "dns switched to unbound-a and verified", func() bool {
		svc, _ := cl.Service(svcName)
		a, _ := svc.Active()
		return a.Name == "unbound-a" && svc.Intent == nil
	})
	if fault != "down" && len(simB.Held()) == 0 {
		t.Fatal("vCenter b answered during the switch: the test did not test a hung vCenter")
	}
	if fault == "hung" {
		if svc, _ := cl.Service("cache"); svc.Intent == nil {
			t.Fatal("cache's switch completed on a vCenter that holds every call")
		}
	}
	svc, _ := cl.Service(svcName)
	if h := svc.History; len(h) != 1 || !h[0].Done || h[0].From != "bind-a" || h[0].To != "unbound-a" || h[0].Reason != fsm.ReasonDoS {
		t.Fatalf("history %+v", svc.History)
	}
	eventually(t, "unbound-a alone on dns's network", func() bool {
		on := attachedOnA()
		return len(on) == 1 && on[0] == vmH0b
	})

	// One session per vCenter that answers, held by the leader.
	if n := sessionsOf(t, simA, vcUser); n != 1 {
		t.Errorf("%d driver sessions on vCenter a, want 1", n)
	}
	wantB := 1.0
	if fault == "down" {
		wantB = 0
	} else if n := sessionsOf(t, simB, vcUser); n != 1 {
		t.Errorf("%d driver sessions on vCenter b, want 1", n)
	}
	if a, b := testutil.ToFloat64(vm.SessionsLive.WithLabelValues("a")), testutil.ToFloat64(vm.SessionsLive.WithLabelValues("b")); a != 1 || b != wantB {
		t.Errorf("ars_vsphere_sessions_live a=%v b=%v, want 1 and %v", a, b, wantB)
	}

	endLeadership()
	if n := sessionsOf(t, simA, vcUser); n != 0 {
		t.Errorf("%d driver sessions on vCenter a after the leadership, want 0", n)
	}
	if fault != "down" {
		if n := sessionsOf(t, simB, vcUser); n != 0 {
			t.Errorf("%d driver sessions on vCenter b after the leadership, want 0", n)
		}
	}
}

// watchVMs follows the power and NIC state of VMs of sim with a session of
// its own (user "watch", which Hold leaves alone) and returns the latest.
func watchVMs(ctx context.Context, t *testing.T, wg *sync.WaitGroup, sim *vcsim.Sim, vms ...string) func() map[string]vcwatch.State {
	t.Helper()
	ca, err := sim.CAFile()
	if err != nil {
		t.Fatal(err)
	}
	w, err := vcwatch.Login(ctx, sim.URL(), ca, "watch", "pw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	for _, name := range vms {
		v, err := sim.VM(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		w.Add(name, v.Reference())
	}
	var (
		mu     sync.Mutex
		states map[string]vcwatch.State
	)
	wg.Go(func() {
		w.Run(ctx, func(s map[string]vcwatch.State) { mu.Lock(); states = s; mu.Unlock() })
	})
	return func() map[string]vcwatch.State {
		mu.Lock()
		defer mu.Unlock()
		return states
	}
}

// sessionsOf counts user's live sessions on sim (read in process, so a
// hung simulator answers it).
func sessionsOf(t *testing.T, sim *vcsim.Sim, user string) int {
	t.Helper()
	ss, err := sim.Sessions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range ss {
		if s.UserName == user {
			n++
		}
	}
	return n
}
