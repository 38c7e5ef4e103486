// Package vcwatch follows the power state and NIC connection of a set of
// VMs in a vCenter (in practice the lab's embedded simulator) and reports
// every change. It is how the lab turns what the controller does through
// the real govmomi code path into what happens to the replicas it stands
// for: powered on ↔ running, NIC connected ↔ linked to the service network.
//
// It watches with a property collector of its own (WaitForUpdatesEx on
// runtime.powerState and config.changeVersion — every reconfigure moves the
// latter, a NIC connected or disconnected included) and, on every update,
// reads the VMs' devices fresh in one round trip: streaming device arrays
// would be large on a real vCenter, and govmomi's simulator shares them
// with the VM (a data race with the next reconfigure).
package vcwatch

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// State is what the watcher reports of one VM.
type State struct {
	Power types.VirtualMachinePowerState
	// NICConnected: some ethernet card of the VM is connected (the lab's
	// VMs have one, the service NIC).
	NICConnected bool
}

// Attached reports whether the VM is on the service network: powered on
// with its NIC connected.
func (s State) Attached() bool {
	return s.Power == types.VirtualMachinePowerStatePoweredOn && s.NICConnected
}

// Watcher follows a fixed set of VMs.
type Watcher struct {
	// BeforeRead, if set, is called by Run just before each read whose
	// result it passes to onChange (set it before Run). The lab takes its
	// Mirror's mark there, to tell a read that a change applied
	// meanwhile has overtaken.
	BeforeRead func()

	vc   *vim25.Client
	sm   *session.Manager
	refs map[types.ManagedObjectReference]string // VM -> caller's name for it
}

// Login connects to the SDK endpoint sdkURL (https://host/sdk), verifying
// its certificate against caFile, and logs in as user. The session is the
// watcher's own (Close logs out).
func Login(ctx context.Context, sdkURL, caFile, user, password string) (*Watcher, error) {
	u, err := soap.ParseURL(sdkURL)
	if err != nil {
		return nil, fmt.Errorf("vcwatch: %w", err)
	}
	sc := soap.NewClient(u, false)
	// Verified against the CA: a pinned thumbprint makes govmomi try a
	// verified handshake first, which the server logs as a failure on
	// every new connection.
	if err := sc.SetRootCAs(caFile); err != nil {
		return nil, fmt.Errorf("vcwatch: %w", err)
	}
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("vcwatch: connect to %s: %w", u.Host, err)
	}
	sm := session.NewManager(vc)
	if err := sm.Login(ctx, url.UserPassword(user, password)); err != nil {
		return nil, fmt.Errorf("vcwatch: login to %s: %w", u.Host, err)
	}
	return &Watcher{vc: vc, sm: sm, refs: map[types.ManagedObjectReference]string{}}, nil
}

// Add watches the VM ref under name (call before Run).
func (w *Watcher) Add(name string, ref types.ManagedObjectReference) { w.refs[ref] = name }

// Close logs the watcher's session out.
func (w *Watcher) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = w.sm.Logout(ctx)
}

// Read returns the current state of every watched VM, by name.
func (w *Watcher) Read(ctx context.Context) (map[string]State, error) {
	if len(w.refs) == 0 {
		return map[string]State{}, nil // nothing to watch (a lab of containers only)
	}
	refs := make([]types.ManagedObjectReference, 0, len(w.refs))
	for ref := range w.refs {
		refs = append(refs, ref)
	}
	var vms []mo.VirtualMachine
	if err := property.DefaultCollector(w.vc).Retrieve(ctx, refs, []string{"runtime.powerState", "config.hardware.device"}, &vms); err != nil {
		return nil, fmt.Errorf("vcwatch: read VMs: %w", err)
	}
	out := make(map[string]State, len(vms))
	for i := range vms {
		out[w.refs[vms[i].Self]] = StateOf(&vms[i])
	}
	return out, nil
}

// StateOf is the State of vm as its runtime.powerState and
// config.hardware.device give it (the properties Read retrieves).
func StateOf(vm *mo.VirtualMachine) State {
	st := State{Power: vm.Runtime.PowerState}
	if vm.Config != nil {
		for _, d := range object.VirtualDeviceList(vm.Config.Hardware.Device).SelectByType((*types.VirtualEthernetCard)(nil)) {
			if c := d.GetVirtualDevice().Connectable; c != nil && c.Connected {
				st.NICConnected = true
			}
		}
	}
	return st
}

// Run calls onChange with the state of every watched VM now and after
// every change, until ctx ends. A failed watch is rebuilt after a short
// pause; onChange then gets a fresh read, so no change is missed for good.
func (w *Watcher) Run(ctx context.Context, onChange func(map[string]State)) {
	if len(w.refs) == 0 {
		<-ctx.Done()
		return
	}
	for ctx.Err() == nil {
		if err := w.runOnce(ctx, onChange); err != nil && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

func (w *Watcher) runOnce(ctx context.Context, onChange func(map[string]State)) error {
	res, err := methods.CreatePropertyCollector(ctx, w.vc, &types.CreatePropertyCollector{This: w.vc.ServiceContent.PropertyCollector})
	if err != nil {
		return err
	}
	pc := res.Returnval
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = methods.DestroyPropertyCollector(c, w.vc, &types.DestroyPropertyCollector{This: pc})
		cancel()
	}()
	spec := types.PropertyFilterSpec{PropSet: []types.PropertySpec{{Type: "VirtualMachine", PathSet: []string{"runtime.powerState", "config.changeVersion"}}}}
	for ref := range w.refs {
		spec.ObjectSet = append(spec.ObjectSet, types.ObjectSpec{Obj: ref})
	}
	if _, err := methods.CreateFilter(ctx, w.vc, &types.CreateFilter{This: pc, Spec: spec}); err != nil {
		return err
	}
	version := ""
	wait := int32(1) // long poll of a second: also a periodic re-read
	for {
		r, err := methods.WaitForUpdatesEx(ctx, w.vc, &types.WaitForUpdatesEx{This: pc, Version: version, Options: &types.WaitOptions{MaxWaitSeconds: &wait}})
		if err != nil {
			return err
		}
		if r.Returnval != nil {
			version = r.Returnval.Version
		}
		if w.BeforeRead != nil {
			w.BeforeRead()
		}
		states, err := w.Read(ctx)
		if err != nil {
			return err
		}
		onChange(states)
	}
}
