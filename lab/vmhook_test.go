package lab

import (
	"context"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ars-project/ars/lab/vcwatch"
	"github.com/ars-project/ars/vcsim"
)

// clockedReplicas records when each replica was last linked and unlinked.
// Safe for concurrent use: the Mirror is driven from the simulator's task
// goroutines and the watch.
type clockedReplicas struct {
	mu       sync.Mutex
	linked   map[string]time.Time
	unlinked map[string]time.Time
}

func (c *clockedReplicas) Start(string) error   { return nil }
func (c *clockedReplicas) Kill(string) error    { return nil }
func (c *clockedReplicas) Suspend(string) error { return nil }
func (c *clockedReplicas) Resume(string) error  { return nil }
func (c *clockedReplicas) Reset(string) error   { return nil }
func (c *clockedReplicas) Link(n string) error {
	c.mu.Lock()
	c.linked[n] = time.Now()
	c.mu.Unlock()
	return nil
}
func (c *clockedReplicas) Unlink(n string) error {
	c.mu.Lock()
	c.unlinked[n] = time.Now()
	c.mu.Unlock()
	return nil
}

func (c *clockedReplicas) at(n string, link bool) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if link {
		return c.linked[n]
	}
	return c.unlinked[n]
}

// mirroredVM is one simulator VM (replica "r", NIC disconnected) mirrored
// onto clockedReplicas the way Up wires it: the hook in the simulator if
// hook is set, and the watch. client is a separate vCenter session, as a
// controller node's is.
type mirroredVM struct {
	sim    *vcsim.Sim
	m      *Mirror
	reps   *clockedReplicas
	vm     *object.VirtualMachine // through client
	client *govmomi.Client
}

func newMirroredVM(tb testing.TB, ctx context.Context, hook bool) *mirroredVM {
	tb.Helper()
	sim, err := vcsim.Start(vcsim.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(sim.Close)
	const vmName = "DC0_H0_VM0"
	local, err := sim.VM(ctx, vmName)
	if err != nil {
		tb.Fatal(err)
	}
	if err := disconnect(ctx, sim, vmName); err != nil {
		tb.Fatal(err)
	}
	reps := &clockedReplicas{linked: map[string]time.Time{}, unlinked: map[string]time.Time{}}
	m := NewMirror(reps, "r")
	refs := map[types.ManagedObjectReference]string{local.Reference(): "r"}
	if hook {
		stop := followVMs(sim.Model.Map(), refs, func(n string, s vcwatch.State) {
			if err := m.ApplyLive(n, s); err != nil {
				tb.Error(err)
			}
		})
		tb.Cleanup(stop)
	}
	ca, err := sim.CAFile()
	if err != nil {
		tb.Fatal(err)
	}
	w, err := vcwatch.Login(ctx, sim.URL(), ca, "lab", "pw")
	if err != nil {
		tb.Fatal(err)
	}
	w.Add("r", local.Reference())
	mark := m.Mark()
	states, err := w.Read(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	if err := m.ApplyRead(states, mark); err != nil {
		tb.Fatal(err)
	}
	w.BeforeRead = func() { mark = m.Mark() }
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(wctx, func(s map[string]vcwatch.State) {
			if err := m.ApplyRead(s, mark); err != nil {
				tb.Error(err)
			}
		})
	}()
	tb.Cleanup(func() { cancel(); <-done; w.Close() })

	u, err := url.Parse(sim.URL())
	if err != nil {
		tb.Fatal(err)
	}
	sc := soap.NewClient(u, false)
	if err := sc.SetRootCAs(ca); err != nil {
		tb.Fatal(err)
	}
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		tb.Fatal(err)
	}
	c := &govmomi.Client{Client: vc, SessionManager: session.NewManager(vc)}
	if err := c.Login(ctx, url.UserPassword("node", "pw")); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Logout(context.Background()) })
	return &mirroredVM{sim: sim, m: m, reps: reps, client: c,
		vm: object.NewVirtualMachine(c.Client, local.Reference())}
}

// setNIC connects or disconnects the VM's NIC through the client and
// returns the task's info once the client has seen it complete.
func (v *mirroredVM) setNIC(tb testing.TB, ctx context.Context, connected bool) *types.TaskInfo {
	tb.Helper()
	devs, err := v.vm.Device(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	nics := devs.SelectByType((*types.VirtualEthernetCard)(nil))
	if len(nics) != 1 {
		tb.Fatalf("%d NICs, want 1", len(nics))
	}
	nics[0].GetVirtualDevice().Connectable.Connected = connected
	task, err := v.vm.Reconfigure(ctx, types.VirtualMachineConfigSpec{DeviceChange: []types.BaseVirtualDeviceConfigSpec{
		&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationEdit, Device: nics[0]},
	}})
	if err != nil {
		tb.Fatal(err)
	}
	info, err := task.WaitForResult(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return info
}

// A reconfigure that connects the NIC has linked the replica by the time
// a client sees the task complete, and one that disconnects it has
// unlinked it; a power-off has stopped it. That is a real host's order
// (its vNIC is connected when the task ends) and the Docker engine's (a
// container is connected when the call returns): the lab's lag was the
// watch's, which reads the simulator tens of milliseconds late.
func TestLinkedWhenTaskCompletes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v := newMirroredVM(t, ctx, true)
	for i := range 5 {
		info := v.setNIC(t, ctx, true)
		if _, linked := v.m.Applied("r"); !linked {
			t.Fatalf("round %d: reconfigure task %s complete, replica not linked", i, info.Key)
		}
		if at := v.reps.at("r", true); info.CompleteTime == nil || at.After(*info.CompleteTime) {
			t.Fatalf("round %d: linked at %v, after the task completed at %v", i, at, info.CompleteTime)
		}
		v.setNIC(t, ctx, false)
		if _, linked := v.m.Applied("r"); linked {
			t.Fatalf("round %d: disconnect task complete, replica still linked", i)
		}
	}
	task, err := v.vm.PowerOff(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if p, _ := v.m.Applied("r"); p != types.VirtualMachinePowerStatePoweredOff {
		t.Fatalf("power-off task complete, replica %s", p)
	}
}

// BenchmarkLinkAfterTask measures when the Mirror links (and unlinks) a
// replica relative to the completion of the reconfigure task that
// connected (disconnected) its NIC: with the hook in the simulator (the
// lab's path) and with the watch alone (the lab's path before). Metrics:
// the mean and the largest delay of the link and of the unlink after the
// task's completeTime, in ms (negative: before it).
func BenchmarkLinkAfterTask(b *testing.B) {
	for _, c := range []struct {
		name string
		hook bool
	}{{"hook", true}, {"watch", false}} {
		b.Run(c.name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			v := newMirroredVM(b, ctx, c.hook)
			var link, unlink []time.Duration
			wait := func(linked bool) {
				for {
					if _, l := v.m.Applied("r"); l == linked {
						return
					}
					if ctx.Err() != nil {
						b.Fatal("the Mirror did not follow the NIC")
					}
					time.Sleep(100 * time.Microsecond) // polling the Mirror; the delay is what is measured
				}
			}
			b.ResetTimer()
			for range b.N {
				info := v.setNIC(b, ctx, true)
				wait(true)
				link = append(link, v.reps.at("r", true).Sub(*info.CompleteTime))
				info = v.setNIC(b, ctx, false)
				wait(false)
				unlink = append(unlink, v.reps.at("r", false).Sub(*info.CompleteTime))
			}
			b.StopTimer()
			report := func(name string, ds []time.Duration) {
				var sum, worst time.Duration
				worst = ds[0]
				for _, d := range ds {
					sum += d
					worst = max(worst, d)
				}
				b.ReportMetric(float64(sum.Microseconds())/float64(len(ds))/1000, name+"-mean-ms")
				b.ReportMetric(float64(worst.Microseconds())/1000, name+"-max-ms")
			}
			report("link", link)
			report("unlink", unlink)
		})
	}
}
