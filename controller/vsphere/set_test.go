package vsphere

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/vcsim"
)

// twoVCenters starts two simulators with a driver each, named east and
// west, and groups them in a Set. Neither driver runs yet.
func twoVCenters(t *testing.T, westMod func(*Config)) (*Set, *env, *env) {
	t.Helper()
	east := newEnv(t, vcsim.Options{}, func(c *Config) { c.Name = "east" })
	west := newEnv(t, vcsim.Options{}, func(c *Config) {
		c.Name = "west"
		if westMod != nil {
			westMod(c)
		}
	})
	s, err := NewSet(east.d, west.d)
	if err != nil {
		t.Fatal(err)
	}
	return s, east, west
}

func on(vc string, r fsm.ReplicaSpec) fsm.ReplicaSpec { r.VCenter = vc; return r }

// Each call goes to the vCenter its replica names: both simulators have a
// VM of the same name, and only the named one changes.
func TestSetRoutesByVCenter(t *testing.T) {
	s, east, west := twoVCenters(t, nil)
	east.start()
	west.start()
	r := replica("bind9-win", vm0)
	if err := s.Detach(east.ctx(), on("west", r)); err != nil {
		t.Fatal(err)
	}
	if o := west.observe(on("west", r)); o.NICConnected {
		t.Fatalf("west %s still connected: %+v", vm0, o)
	}
	if o := east.observe(on("east", r)); !o.NICConnected {
		t.Fatalf("east %s was changed by a call for west: %+v", vm0, o)
	}
	if o, err := s.Observe(east.ctx(), on("east", r)); err != nil || !o.NICConnected {
		t.Fatalf("observe through the set on east: %+v, %v", o, err)
	}

	// Naming no vCenter with two configured, or an unknown one, fails at
	// once and says which are configured.
	_, err := s.Observe(east.ctx(), r)
	opError(t, err, driver.ErrInvalid, r.Name)
	if !strings.Contains(err.Error(), "names no vcenter and this node has 2 (east, west)") {
		t.Errorf("no vcenter: %v", err)
	}
	err = s.Attach(east.ctx(), on("north", r))
	opError(t, err, driver.ErrNotFound, r.Name)
	if !strings.Contains(err.Error(), `"north" is not configured on this node (configured: east, west)`) {
		t.Errorf("unknown vcenter: %v", err)
	}
	// A driver called directly with another vCenter's replica refuses it:
	// it would act on the VM of the same name in its own inventory.
	opError(t, east.d.Detach(east.ctx(), on("west", r)), driver.ErrInvalid, r.Name)

	// Readiness is per vCenter.
	if !s.ReadyFor(on("east", r)) || !s.ReadyFor(on("west", r)) {
		t.Fatal("both vCenters are logged in; ReadyFor says otherwise")
	}
	if err := west.stop(); err != nil {
		t.Fatal(err)
	}
	if s.ReadyFor(on("west", r)) || !s.ReadyFor(on("east", r)) {
		t.Fatal("after west's term ended: ReadyFor(west) must be false, ReadyFor(east) true")
	}
	if !s.ReadyFor(on("north", r)) {
		t.Error("an unknown vCenter is not waited for: its calls fail at once")
	}
	if n := east.sessions(); n != 1 {
		t.Errorf("%d sessions on east, want 1", n)
	}
	if n := west.sessions(); n != 0 {
		t.Errorf("%d sessions on west after its term, want 0", n)
	}
}

// With one vCenter a replica need not name it.
func TestSetOfOneTakesUnnamedReplicas(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	e.start()
	s, err := NewSet(e.d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Observe(e.ctx(), replica("bind9-win", vm0)); err != nil {
		t.Fatal(err)
	}
	// The name defaults to the URL's host: what the metrics were labelled
	// with before vCenters had names.
	if got, want := s.Names(), strings.TrimSuffix(strings.TrimPrefix(e.sim.URL(), "https://"), "/sdk"); len(got) != 1 || got[0] != want {
		t.Fatalf("names %v, want [%s]", got, want)
	}
}

// A vCenter that holds every call of the driver (hung, or overloaded)
// holds only the calls for its own replicas: the other vCenter's
// operations complete while one of the hung vCenter's is still waiting,
// and each vCenter keeps exactly one session.
func TestSetHungVCenterHoldsOnlyItsOwnReplicas(t *testing.T) {
	// West's calls wait far longer than the test runs: a held call
	// stays held until the release, whatever the machine's load.
	s, east, west := twoVCenters(t, func(c *Config) { c.CallTimeout = time.Minute })
	east.start()
	west.start()
	r := replica("bind9-win", vm0)
	west.sim.Hold(west.cfg.Username)
	held := make(chan error, 1)
	go func() {
		_, err := s.Observe(context.Background(), on("west", r))
		held <- err
	}()
	eventually(t, 10*time.Second, "west's read is held", func() bool { return len(west.sim.Held()) > 0 })
	if err := s.Detach(east.ctx(), on("east", r)); err != nil {
		t.Fatalf("detach on east while west hangs: %v", err)
	}
	if err := s.Attach(east.ctx(), on("east", r)); err != nil {
		t.Fatalf("attach on east while west hangs: %v", err)
	}
	select {
	case err := <-held:
		t.Fatalf("west's read returned while west holds it: %v", err)
	default:
	}
	if len(west.sim.Held()) == 0 {
		t.Fatal("west's call is no longer held")
	}
	west.sim.Release()
	if err := <-held; err != nil {
		t.Fatalf("west's read after the release: %v", err)
	}
	if e, w := east.sessions(), west.sessions(); e != 1 || w != 1 {
		t.Fatalf("sessions east %d, west %d; want one each", e, w)
	}
}

// The merged watch carries both vCenters' events and closes with its
// context.
func TestSetWatchMergesBoth(t *testing.T) {
	s, east, west := twoVCenters(t, nil)
	east.start()
	west.start()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Watch(ctx)
	a, b := on("east", replica("bind9-win", vm0)), on("west", replica("unbound-win", vm1))
	east.observe(a)
	west.observe(b)
	seen := map[string]bool{}
	for len(seen) < 2 {
		ev := nextEvent(t, ch, 10*time.Second, "events of both vCenters", func(ev driver.Event) bool { return ev.Kind == driver.EventChanged })
		seen[ev.Replica.VCenter+"/"+ev.Replica.Name] = true
	}
	if !seen["east/bind9-win"] || !seen["west/unbound-win"] {
		t.Fatalf("events from %v", seen)
	}
	cancel()
	for range ch {
	}
}

func TestNewSetRefuses(t *testing.T) {
	if _, err := NewSet(); err == nil {
		t.Error("an empty set")
	}
	a := newEnv(t, vcsim.Options{}, func(c *Config) { c.Name = "same" })
	b := newEnv(t, vcsim.Options{}, func(c *Config) { c.Name = "same" })
	if _, err := NewSet(a.d, b.d); err == nil || !strings.Contains(err.Error(), `two vCenters are named "same"`) {
		t.Errorf("duplicate names: %v", err)
	}
}

// CheckVCenters is what the API runs before it commits a spec.
func TestCheckVCenters(t *testing.T) {
	vm := func(name, vc string) fsm.ReplicaSpec {
		return fsm.ReplicaSpec{Name: name, Platform: fsm.PlatformVM, VCenter: vc}
	}
	ct := fsm.ReplicaSpec{Name: "c", Platform: fsm.PlatformContainer}
	for _, c := range []struct {
		name     string
		replicas []fsm.ReplicaSpec
		names    []string
		want     string // "" = accepted
	}{
		{"none configured, none named", []fsm.ReplicaSpec{vm("a", ""), ct}, nil, ""},
		{"none configured, one named", []fsm.ReplicaSpec{vm("a", ""), vm("b", "east")}, nil, `replicas[1].vcenter: "east" is not configured on this node (it has no vCenter)`},
		{"one configured, unnamed", []fsm.ReplicaSpec{vm("a", "")}, []string{"east"}, ""},
		{"one configured, named", []fsm.ReplicaSpec{vm("a", "east")}, []string{"east"}, ""},
		{"one configured, unknown", []fsm.ReplicaSpec{ct, vm("a", "west")}, []string{"east"}, `replicas[1].vcenter: "west" is not configured on this node (configured: east)`},
		{"two configured, named", []fsm.ReplicaSpec{vm("a", "east"), vm("b", "west"), ct}, []string{"east", "west"}, ""},
		{"two configured, unnamed", []fsm.ReplicaSpec{vm("a", "east"), vm("b", "")}, []string{"east", "west"}, "replicas[1].vcenter: the replica names no vcenter and this node has 2 (east, west): name one"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := CheckVCenters(fsm.ServiceSpec{Replicas: c.replicas}, c.names)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || err.Error() != c.want):
				t.Fatalf("err = %v, want %s", err, c.want)
			}
		})
	}
}

// A vCenter that does not answer is unreachable while the node leads (and
// its replicas are not chosen to take over); one that answers, or a node
// that does not lead, is not.
func TestUnreachableWhileNoAnswer(t *testing.T) {
	s, east, west := twoVCenters(t, nil)
	west.sim.Close() // nothing listens at its address any more
	r := replica("bind9-win", vm0)
	if s.UnreachableFor(on("west", r)) {
		t.Fatal("unreachable before the node leads")
	}
	east.start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- west.d.Run(ctx) }()
	eventually(t, 10*time.Second, "west unreachable after its login got no answer", func() bool { return s.UnreachableFor(on("west", r)) })
	if s.ReadyFor(on("west", r)) {
		t.Error("west ready without a session")
	}
	if s.UnreachableFor(on("east", r)) || !s.ReadyFor(on("east", r)) {
		t.Error("east, which answers, is unreachable or not ready")
	}
	if !s.UnreachableFor(on("north", r)) {
		t.Error("a vCenter that is not configured is reachable")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("west's Run: %v", err)
	}
	if s.UnreachableFor(on("west", r)) {
		t.Error("unreachable after the leadership ended")
	}
}
