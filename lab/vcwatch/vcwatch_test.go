package vcwatch

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/ars-project/ars/vcsim"
)

// The watcher reports a VM's current state first, then each change made
// behind its back: a power-off and a NIC disconnect.
func TestWatchReportsPowerAndNIC(t *testing.T) {
	sim, err := vcsim.Start(vcsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	vm, err := sim.VM(ctx, "DC0_H0_VM0")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := sim.CAFile()
	if err != nil {
		t.Fatal(err)
	}
	w, err := Login(ctx, sim.URL(), ca, "watcher", "pw")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Add("r1", vm.Reference())

	var mu sync.Mutex
	var seen []State
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(wctx, func(s map[string]State) {
			mu.Lock()
			seen = append(seen, s["r1"])
			mu.Unlock()
		})
	}()
	defer func() { stop(); <-done }()
	waitFor := func(what string, cond func(State) bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			ok := len(seen) > 0 && cond(seen[len(seen)-1])
			mu.Unlock()
			if ok {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for %s; seen %+v", what, seen)
	}
	waitFor("the VM attached (simulator VMs start on, NIC connected)", State.Attached)

	devs, err := vm.Device(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nic := devs.SelectByType((*types.VirtualEthernetCard)(nil))[0]
	nic.GetVirtualDevice().Connectable.Connected = false
	if err := vm.EditDevice(ctx, nic); err != nil {
		t.Fatal(err)
	}
	waitFor("the NIC disconnected", func(s State) bool { return !s.NICConnected && !s.Attached() })

	task, err := vm.PowerOff(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor("powered off", func(s State) bool { return s.Power == types.VirtualMachinePowerStatePoweredOff })
}
