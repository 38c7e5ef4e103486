package vsphere

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
)

// vmProps are the VM properties the driver reads and watches.
var vmProps = []string{
	"name",
	"runtime.powerState",
	"runtime.connectionState",
	"runtime.faultToleranceState",
	"runtime.host",
	"guest.toolsRunningStatus",
	"config.hardware.device",
	"config.changeVersion",
	"snapshot",
}

// taskState is a task in a VM's recentTask list.
type taskState struct {
	name  string // descriptionId without the "VirtualMachine." prefix
	state types.TaskInfoState
}

// readVM reads vmProps of one VM in one round trip; with tasks it follows
// recentTask to the tasks' state in the same call.
func (s *session) readVM(ctx context.Context, ref types.ManagedObjectReference, tasks bool) (*mo.VirtualMachine, []taskState, error) {
	spec := types.PropertyFilterSpec{
		ObjectSet: []types.ObjectSpec{{Obj: ref}},
		PropSet:   []types.PropertySpec{{Type: "VirtualMachine", PathSet: vmProps}},
	}
	if tasks {
		spec.ObjectSet[0].SelectSet = []types.BaseSelectionSpec{&types.TraversalSpec{Type: "VirtualMachine", Path: "recentTask"}}
		spec.PropSet = append(spec.PropSet, types.PropertySpec{Type: "Task", PathSet: []string{"info.state", "info.descriptionId"}})
	}
	res, err := methods.RetrieveProperties(ctx, s.vc, &types.RetrieveProperties{
		This: s.vc.ServiceContent.PropertyCollector, SpecSet: []types.PropertyFilterSpec{spec},
	})
	if err != nil {
		if _, ok := vimFault(err).(*types.ManagedObjectNotFound); ok {
			return nil, nil, fmt.Errorf("%w: %w", errRefGone, err)
		}
		return nil, nil, err
	}
	var (
		vm *mo.VirtualMachine
		ts []taskState
	)
	for _, oc := range res.Returnval {
		switch oc.Obj.Type {
		case "VirtualMachine":
			if oc.Obj != ref {
				continue
			}
			v, err := mo.ObjectContentToType(oc)
			if err != nil {
				return nil, nil, fmt.Errorf("read vm properties: %w", err)
			}
			m, ok := v.(mo.VirtualMachine)
			if !ok {
				return nil, nil, fmt.Errorf("read vm properties: unexpected %T", v)
			}
			vm = &m
		case "Task":
			var t taskState
			for _, p := range oc.PropSet {
				switch p.Name {
				case "info.state":
					t.state, _ = p.Val.(types.TaskInfoState)
				case "info.descriptionId":
					d, _ := p.Val.(string)
					t.name = strings.TrimPrefix(d, "VirtualMachine.")
				}
			}
			if t.state == types.TaskInfoStateQueued || t.state == types.TaskInfoStateRunning {
				ts = append(ts, t)
			}
		}
	}
	if vm == nil {
		// vCenter returns nothing (rather than a fault) for an object that
		// vanished between lookup and read.
		return nil, nil, fmt.Errorf("%w: %s returned no properties", errRefGone, ref)
	}
	return vm, ts, nil
}

// observation turns VM properties into the platform-neutral Observation.
// nicErr is not nil when the spec's NIC is missing or ambiguous.
func observation(r fsm.ReplicaSpec, vm *mo.VirtualMachine, tasks []taskState) (obs driver.Observation, nicErr error) {
	obs = driver.Observation{
		Replica:   r.Name,
		Target:    r.VM,
		Power:     driver.PowerUnknown,
		Tools:     driver.ToolsUnknown,
		FT:        driver.FTNotConfigured,
		Reachable: true,
	}
	switch vm.Runtime.PowerState {
	case types.VirtualMachinePowerStatePoweredOn:
		obs.Power = driver.PowerOn
	case types.VirtualMachinePowerStatePoweredOff:
		obs.Power = driver.PowerOff
	case types.VirtualMachinePowerStateSuspended:
		obs.Power = driver.PowerSuspended
	}
	switch vm.Runtime.ConnectionState {
	case "", types.VirtualMachineConnectionStateConnected:
	default:
		obs.Reachable = false
	}
	if ft := vm.Runtime.FaultToleranceState; ft != "" {
		obs.FT = driver.FTState(ft)
	}
	if vm.Runtime.Host != nil {
		obs.Host = vm.Runtime.Host.Value
	}
	if vm.Guest != nil {
		switch vm.Guest.ToolsRunningStatus {
		case string(types.VirtualMachineToolsRunningStatusGuestToolsRunning), string(types.VirtualMachineToolsRunningStatusGuestToolsExecutingScripts):
			obs.Tools = driver.ToolsRunning
		case string(types.VirtualMachineToolsRunningStatusGuestToolsNotRunning):
			obs.Tools = driver.ToolsNotRunning
		}
	}
	var devices object.VirtualDeviceList
	if vm.Config != nil {
		obs.ChangeVersion = vm.Config.ChangeVersion
		devices = object.VirtualDeviceList(vm.Config.Hardware.Device)
	}
	for _, t := range tasks {
		obs.Tasks = append(obs.Tasks, t.name+" "+string(t.state))
	}
	sort.Strings(obs.Tasks)

	nic, nicErr := findNIC(devices, r.NIC)
	if nicErr == nil {
		if c := nic.GetVirtualDevice().Connectable; c != nil {
			obs.NICConnected = c.Connected && obs.Power == driver.PowerOn
			obs.NICStartConnected = c.StartConnected
			obs.Supports.Attach = true
		}
	}
	protected := obs.FT.Protected()
	obs.Supports.Suspend = !protected
	if r.Snapshot != "" && !protected {
		_, err := findSnapshot(vm, r.Snapshot)
		obs.Supports.Restore = err == nil
	}
	return obs, nicErr
}

// findNIC finds the service NIC by its device name ("ethernet-0", as govc
// names it) or its label ("Network adapter 1", as the vSphere client shows
// it). An empty label means the VM's only NIC.
func findNIC(devices object.VirtualDeviceList, label string) (types.BaseVirtualDevice, error) {
	nics := devices.SelectByType((*types.VirtualEthernetCard)(nil))
	names := make([]string, 0, len(nics))
	for _, d := range nics {
		name := devices.Name(d)
		desc := ""
		if info := d.GetVirtualDevice().DeviceInfo; info != nil {
			desc = info.GetDescription().Label
		}
		if label != "" && (name == label || desc == label) {
			return d, nil
		}
		if desc != "" && desc != name {
			name += " (" + desc + ")"
		}
		names = append(names, name)
	}
	switch {
	case len(nics) == 0:
		return nil, fmt.Errorf("%w: the VM has no network adapter", errNotFound)
	case label == "" && len(nics) == 1:
		return nics[0], nil
	case label == "":
		return nil, fmt.Errorf("%w: the VM has %d network adapters (%s): name the service NIC in the replica's nic", errInvalid, len(nics), strings.Join(names, ", "))
	}
	return nil, fmt.Errorf("%w: the VM has no network adapter %q (it has %s)", errNotFound, label, strings.Join(names, ", "))
}

// findSnapshot finds the snapshot with this name; two of the same name are
// an error (reverting to the wrong "clean" state is worse than not
// reverting).
func findSnapshot(vm *mo.VirtualMachine, name string) (types.ManagedObjectReference, error) {
	var found []types.ManagedObjectReference
	var walk func([]types.VirtualMachineSnapshotTree)
	walk = func(list []types.VirtualMachineSnapshotTree) {
		for _, t := range list {
			if t.Name == name {
				found = append(found, t.Snapshot)
			}
			walk(t.ChildSnapshotList)
		}
	}
	if vm.Snapshot != nil {
		walk(vm.Snapshot.RootSnapshotList)
	}
	switch len(found) {
	case 0:
		return types.ManagedObjectReference{}, fmt.Errorf("%w: the VM has no snapshot %q", errNotFound, name)
	case 1:
		return found[0], nil
	}
	return types.ManagedObjectReference{}, fmt.Errorf("%w: the VM has %d snapshots named %q; keep one", errInvalid, len(found), name)
}
