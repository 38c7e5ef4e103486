package vsphere

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
)

// Set is the driver of VM replicas for a node that knows several vCenters:
// each call goes to the Driver of the vCenter its replica names
// (fsm.ReplicaSpec.VCenter; empty names the only one, when there is only
// one). The leader loop sees one driver.Driver for the platform "vm", as
// it sees one Docker driver for every Docker host.
//
// The members share nothing but the metrics: each holds its own session
// (its Run is registered with cluster.OnLeader on its own), logs in, keeps
// alive, watches and times out on its own, so a vCenter that is down or
// slow holds only the calls for its own replicas. ReadyFor tells the loop
// which replicas it may drive now.
type Set struct {
	byName map[string]*Driver
	names  []string // configuration order
}

var _ driver.Driver = (*Set)(nil)

// NewSet groups drivers by their names (Config.Name), which must differ.
func NewSet(drivers ...*Driver) (*Set, error) {
	if len(drivers) == 0 {
		return nil, fmt.Errorf("vsphere: a set needs at least one vCenter")
	}
	s := &Set{byName: make(map[string]*Driver, len(drivers))}
	for _, d := range drivers {
		if _, dup := s.byName[d.name]; dup {
			return nil, fmt.Errorf("vsphere: two vCenters are named %q", d.name)
		}
		s.byName[d.name] = d
		s.names = append(s.names, d.name)
	}
	return s, nil
}

// Drivers are the members, in the order given to NewSet.
func (s *Set) Drivers() []*Driver {
	out := make([]*Driver, len(s.names))
	for i, n := range s.names {
		out[i] = s.byName[n]
	}
	return out
}

// Names are the members' names, in the order given to NewSet.
func (s *Set) Names() []string { return slices.Clone(s.names) }

// For returns the Driver of the replica's vCenter.
func (s *Set) For(r fsm.ReplicaSpec) (*Driver, error) {
	name, err := pickVCenter(r.VCenter, s.names)
	if err != nil {
		return nil, err
	}
	return s.byName[name], nil
}

// ReadyFor reports whether operations on r can run now without waiting
// (controller.ReplicaReadier): its vCenter's session is open. A replica
// that names no configured vCenter is "ready": its calls fail at once,
// with the reason.
func (s *Set) ReadyFor(r fsm.ReplicaSpec) bool {
	d, err := s.For(r)
	return err != nil || d.Ready()
}

// UnreachableFor reports whether r's vCenter cannot be driven now
// (controller.ReplicaReadier): its latest round trip got no answer
// (Driver.Unreachable), or the replica names no configured vCenter.
func (s *Set) UnreachableFor(r fsm.ReplicaSpec) bool {
	d, err := s.For(r)
	return err != nil || d.Unreachable()
}

// pickVCenter resolves a replica's vcenter field against the configured
// names: empty is the only one; anything else must be configured.
func pickVCenter(want string, names []string) (string, error) {
	list := strings.Join(names, ", ")
	switch {
	case want == "" && len(names) == 1:
		return names[0], nil
	case want == "" && len(names) == 0:
		return "", &pickError{errNotFound, "no vCenter is configured on this node"}
	case want == "":
		return "", &pickError{errInvalid, fmt.Sprintf("the replica names no vcenter and this node has %d (%s): name one", len(names), list)}
	case slices.Contains(names, want):
		return want, nil
	case len(names) == 0:
		return "", &pickError{errNotFound, fmt.Sprintf("%q is not configured on this node (it has no vCenter)", want)}
	}
	return "", &pickError{errNotFound, fmt.Sprintf("%q is not configured on this node (configured: %s)", want, list)}
}

// pickError is why a replica has no vCenter: a driver sentinel and the
// reason people read.
type pickError struct {
	sentinel error
	reason   string
}

func (e *pickError) Error() string { return e.sentinel.Error() + ": vcenter: " + e.reason }
func (e *pickError) Unwrap() error { return e.sentinel }

// CheckVCenters checks that every VM replica of spec names a vCenter of
// names (the node's configuration), or none when there is exactly one.
// With no vCenter configured, a replica that names none is accepted (it
// is not driven, as before vCenters had names). The API calls it before
// it commits a spec, so a typo is refused instead of leaving the replica
// undriven. Errors read "replicas[N].vcenter: reason".
func CheckVCenters(spec fsm.ServiceSpec, names []string) error {
	for i, r := range spec.Replicas {
		if r.Platform != fsm.PlatformVM || (r.VCenter == "" && len(names) == 0) {
			continue
		}
		if _, err := pickVCenter(r.VCenter, names); err != nil {
			return fmt.Errorf("replicas[%d].vcenter: %s", i, err.(*pickError).reason)
		}
	}
	return nil
}

// route is For for one call: a replica that names no configured vCenter
// gets an *driver.OpError naming it.
func (s *Set) route(op string, r fsm.ReplicaSpec) (*Driver, error) {
	d, err := s.For(r)
	if err != nil {
		return nil, &driver.OpError{Op: op, Replica: r.Name, Target: target(r), Err: err}
	}
	return d, nil
}

// Attach implements driver.Driver on the replica's vCenter.
func (s *Set) Attach(ctx context.Context, r fsm.ReplicaSpec, opts ...driver.Option) error {
	d, err := s.route("attach", r)
	if err != nil {
		return err
	}
	return d.Attach(ctx, r, opts...)
}

// Detach implements driver.Driver on the replica's vCenter.
func (s *Set) Detach(ctx context.Context, r fsm.ReplicaSpec, opts ...driver.Option) error {
	d, err := s.route("detach", r)
	if err != nil {
		return err
	}
	return d.Detach(ctx, r, opts...)
}

// PowerOn implements driver.Driver on the replica's vCenter.
func (s *Set) PowerOn(ctx context.Context, r fsm.ReplicaSpec, opts ...driver.Option) error {
	d, err := s.route("power-on", r)
	if err != nil {
		return err
	}
	return d.PowerOn(ctx, r, opts...)
}

// Suspend implements driver.Driver on the replica's vCenter.
func (s *Set) Suspend(ctx context.Context, r fsm.ReplicaSpec) error {
	d, err := s.route("suspend", r)
	if err != nil {
		return err
	}
	return d.Suspend(ctx, r)
}

// Resume implements driver.Driver on the replica's vCenter.
func (s *Set) Resume(ctx context.Context, r fsm.ReplicaSpec) error {
	d, err := s.route("resume", r)
	if err != nil {
		return err
	}
	return d.Resume(ctx, r)
}

// PowerOff implements driver.Driver on the replica's vCenter.
func (s *Set) PowerOff(ctx context.Context, r fsm.ReplicaSpec) error {
	d, err := s.route("power-off", r)
	if err != nil {
		return err
	}
	return d.PowerOff(ctx, r)
}

// Restore implements driver.Driver on the replica's vCenter.
func (s *Set) Restore(ctx context.Context, r fsm.ReplicaSpec) error {
	d, err := s.route("restore", r)
	if err != nil {
		return err
	}
	return d.Restore(ctx, r)
}

// Observe implements driver.Driver on the replica's vCenter.
func (s *Set) Observe(ctx context.Context, r fsm.ReplicaSpec) (driver.Observation, error) {
	d, err := s.route("observe", r)
	if err != nil {
		return driver.Observation{Replica: r.Name, Target: r.VM, Power: driver.PowerUnknown, Tools: driver.ToolsUnknown}, err
	}
	return d.Observe(ctx, r)
}

// Watch merges the members' watches into one channel, closed when ctx
// ends. A member's events wait for room in the merged channel; while
// they wait the member's own buffer fills, it drops events and then sends
// an EventResync, as any driver's watch does for a slow reader.
func (s *Set) Watch(ctx context.Context) <-chan driver.Event {
	out := make(chan driver.Event, 256)
	var wg sync.WaitGroup
	for _, n := range s.names {
		in := s.byName[n].Watch(ctx)
		wg.Go(func() {
			for ev := range in {
				select {
				case out <- ev:
				case <-ctx.Done(): // the member closes in; drain it
				}
			}
		})
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}
