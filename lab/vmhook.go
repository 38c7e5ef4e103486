package lab

import (
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ars-project/ars/lab/vcwatch"
)

// vmHook listens to the simulator's object registry: the simulator calls
// UpdateObject synchronously for every property change it makes, on the
// goroutine that makes it. For a reconfigure that is the task's own
// goroutine, holding the VM's lock, after the new devices are in place and
// before the task is marked successful; the same holds for power tasks
// and reverts. Applying the VM's state there links the replica before any
// client can see the task complete, as a real host has the vNIC
// connected when its reconfigure task ends.
//
// apply runs with the VM's lock held: it must not call the simulator.
type vmHook struct {
	refs  map[types.ManagedObjectReference]string // VM -> replica
	apply func(replica string, state vcwatch.State)
}

// hookRef names the hook in the registry's table of listeners (a key only:
// no object of that reference exists).
var hookRef = types.ManagedObjectReference{Type: "ArsLabMirror", Value: "lab-mirror"}

func (h *vmHook) Reference() types.ManagedObjectReference { return hookRef }

func (h *vmHook) PutObject(*simulator.Context, mo.Reference) {}

func (h *vmHook) RemoveObject(*simulator.Context, types.ManagedObjectReference) {}

func (h *vmHook) UpdateObject(_ *simulator.Context, obj mo.Reference, _ []types.PropertyChange) {
	name, ok := h.refs[obj.Reference()]
	if !ok {
		return
	}
	// The registry hands listeners the mo type inside the simulator's
	// object, with the changes already applied.
	vm, ok := obj.(*mo.VirtualMachine)
	if !ok {
		if svm, ok := obj.(*simulator.VirtualMachine); ok {
			vm = &svm.VirtualMachine
		} else {
			return
		}
	}
	h.apply(name, vcwatch.StateOf(vm))
}

// followVMs calls apply with a VM's state (by replica name, refs) each
// time the simulator changes the VM, before the change's task completes.
// The returned function stops it.
func followVMs(reg *simulator.Registry, refs map[types.ManagedObjectReference]string, apply func(string, vcwatch.State)) (stop func()) {
	h := &vmHook{refs: make(map[types.ManagedObjectReference]string, len(refs)), apply: apply}
	for ref, n := range refs {
		h.refs[ref] = n
	}
	reg.AddHandler(h)
	return func() { reg.RemoveHandler(h) }
}
