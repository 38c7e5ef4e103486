package vsphere

import (
	"context"
	"errors"
	"reflect"
	"time"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
)

// watched is the last reported state of one replica.
type watched struct {
	r   fsm.ReplicaSpec
	obs driver.Observation
}

// Watch streams changes of every replica this driver has observed or acted
// on during the current leadership term, until ctx ends. A new watcher
// first receives the current state of every replica already watched. The
// watch runs only while somebody watches, and only with a held session
// (not in per-operation mode).
func (d *Driver) Watch(ctx context.Context) <-chan driver.Event {
	sub := driver.NewSubscriber(256)
	d.subMu.Lock()
	d.subs[sub] = struct{}{}
	now := time.Now()
	for _, w := range d.last {
		sub.Send(driver.Event{Kind: driver.EventChanged, Replica: w.r, State: w.obs, At: now})
	}
	d.subMu.Unlock()
	d.kickWatch()
	context.AfterFunc(ctx, func() {
		d.subMu.Lock()
		delete(d.subs, sub)
		close(sub.C)
		d.subMu.Unlock()
		d.kickWatch()
	})
	return sub.C
}

func (d *Driver) hasSubscribers() bool {
	d.subMu.Lock()
	defer d.subMu.Unlock()
	return len(d.subs) > 0
}

// publish sends an event to every subscriber (see subscriber.send).
func (d *Driver) publish(ev driver.Event) {
	d.subMu.Lock()
	defer d.subMu.Unlock()
	for sub := range d.subs {
		sub.Send(ev)
	}
}

// report publishes a replica's state if it differs from what was last
// reported; an FT-protected VM that failed over is reported as such.
func (d *Driver) report(r fsm.ReplicaSpec, obs driver.Observation, at time.Time) {
	d.subMu.Lock()
	defer d.subMu.Unlock()
	key := r.Name + "\x00" + r.VM
	prev, had := d.last[key]
	if had && reflect.DeepEqual(prev.obs, obs) {
		return
	}
	d.last[key] = watched{r: r, obs: obs}
	kind := driver.EventChanged
	if had && ftFailover(prev.obs, obs) {
		kind = driver.EventFTFailover
	}
	for sub := range d.subs {
		sub.Send(driver.Event{Kind: kind, Replica: r, State: obs, At: at})
	}
}

// forgetReported drops what the watch reported: nothing watches any more,
// so it will not be kept current.
func (d *Driver) forgetReported() {
	d.subMu.Lock()
	clear(d.last)
	d.subMu.Unlock()
}

// watchProps are the VM properties whose change wakes the watch: power,
// FT, host, reachability, tools, and the configuration version (which every
// reconfigure, a NIC change by hand included, moves on). Device lists and
// snapshot trees are not streamed: they are large on a real vCenter, and
// vcsim shares the device array of its update sets with the VM (a data race
// with the next reconfigure under the race detector). A changed VM is read
// in full instead.
var watchProps = []string{
	"runtime.powerState",
	"runtime.connectionState",
	"runtime.faultToleranceState",
	"runtime.host",
	"guest.toolsRunningStatus",
	"config.changeVersion",
}

// watcher follows the watched VMs with a property collector of its own
// (WaitForUpdatesEx long polls). Collectors and filters belong to the
// session that created them: after a re-login they are gone, so the
// watcher rebuilds them whenever the session generation changes, after any
// error, and when the set of watched replicas changes (filters are changed
// only between two waits, never during one).
type watcher struct {
	d        *Driver
	s        *session
	pc       types.ManagedObjectReference
	version  string
	builtV   uint64
	builtGen uint64
	dirty    bool     // updates may have been missed: tell subscribers to resync
	covered  []string // the VMs (ReplicaSpec.VM) the built collector filters
}

func (d *Driver) watchLoop(ctx context.Context, s *session) {
	w := &watcher{d: d, s: s}
	// The loop ends with the term, and the session is logged out next:
	// vCenter drops a session's collectors with it, so the collector is
	// not destroyed here. (The simulator's collector takes no lock of its
	// own; a destroy right after a filter was created over another
	// connection was a data race inside it under -race.)
	defer d.forgetReported()
	failures := 0
	for ctx.Err() == nil {
		d.mu.Lock()
		v := d.watchV
		specs := make(map[types.ManagedObjectReference][]fsm.ReplicaSpec, len(d.watched))
		for ref, m := range d.watched {
			for _, r := range m {
				specs[ref] = append(specs[ref], r)
			}
		}
		d.mu.Unlock()

		if len(specs) == 0 || !d.hasSubscribers() {
			if w.pc.Value != "" {
				w.destroy()
				d.forgetReported()
			}
			select {
			case <-ctx.Done():
				return
			case <-d.kick:
			}
			continue
		}
		if gen := s.gen.Load(); w.pc.Value == "" || w.builtV != v || w.builtGen != gen {
			if w.pc.Value != "" && w.builtGen != gen {
				w.dirty = true // the old collector died with the old session
			}
			w.destroy()
			if err := w.build(ctx, specs); err != nil {
				failures++
				d.log.Warn("vcenter watch: cannot build the property collector", "err", err)
				if !driver.Sleep(ctx, min(driver.Backoff(failures)*4, 5*time.Second)) {
					return
				}
				continue
			}
			w.builtV, w.builtGen = v, gen
			d.m.WatchRebuilds.WithLabelValues(d.name).Inc()
		}
		set, err := w.wait(ctx)
		if err != nil {
			d.cache.invalidate()
			if ctx.Err() != nil {
				return
			}
			failures++
			d.log.Debug("vcenter watch: wait failed; rebuilding", "err", err)
			w.dirty = true
			w.destroy()
			if !driver.Sleep(ctx, min(driver.Backoff(failures), time.Second)) {
				return
			}
			continue
		}
		failures = 0
		if w.dirty {
			w.dirty = false
			d.publish(driver.Event{Kind: driver.EventResync, At: time.Now()})
		}
		if set != nil {
			w.apply(ctx, set, specs)
		}
		// The first wait after a build delivered every filtered VM's
		// state; from here the collector follows them (obsCache).
		d.cache.cover(w.covered)
	}
}

func (w *watcher) build(ctx context.Context, specs map[types.ManagedObjectReference][]fsm.ReplicaSpec) error {
	s := w.s
	res, err := methods.CreatePropertyCollector(ctx, s.vc, &types.CreatePropertyCollector{This: s.vc.ServiceContent.PropertyCollector})
	if err != nil {
		return err
	}
	w.pc = res.Returnval
	w.version = ""
	w.covered = w.covered[:0]
	// One filter per VM, so that a VM that vanished fails alone.
	for ref, rs := range specs {
		_, err := methods.CreateFilter(ctx, s.vc, &types.CreateFilter{
			This: w.pc,
			Spec: types.PropertyFilterSpec{
				ObjectSet: []types.ObjectSpec{{Obj: ref}},
				PropSet:   []types.PropertySpec{{Type: "VirtualMachine", PathSet: watchProps}},
			},
		})
		if err != nil {
			if _, ok := vimFault(err).(*types.ManagedObjectNotFound); ok {
				w.d.log.Warn("vcenter watch: VM vanished", "vm", ref.Value, "replica", rs[0].Name)
				continue
			}
			w.destroy()
			return err
		}
		for _, r := range rs {
			w.covered = append(w.covered, r.VM)
		}
	}
	return nil
}

func (w *watcher) destroy() {
	w.d.cache.invalidate()
	if w.pc.Value == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.d.cfg.CallTimeout)
	defer cancel()
	// Through raw: after a re-login the collector is gone and that is fine.
	_, _ = methods.DestroyPropertyCollector(ctx, w.s.raw, &types.DestroyPropertyCollector{This: w.pc})
	w.pc = types.ManagedObjectReference{}
}

func (w *watcher) wait(ctx context.Context) (*types.UpdateSet, error) {
	secs := int32(w.d.cfg.WatchWait / time.Second)
	res, err := methods.WaitForUpdatesEx(ctx, w.s.vc, &types.WaitForUpdatesEx{
		This:    w.pc,
		Version: w.version,
		Options: &types.WaitOptions{MaxWaitSeconds: &secs},
	})
	if err != nil {
		return nil, err
	}
	if res.Returnval != nil {
		w.version = res.Returnval.Version
	}
	return res.Returnval, nil
}

// apply reads the current state of every VM the update set names and
// reports what changed for each replica. The updates themselves carry only
// small scalar properties (watchProps); the full state (NICs, snapshots) of
// a changed VM is read fresh, in one round trip.
func (w *watcher) apply(ctx context.Context, set *types.UpdateSet, specs map[types.ManagedObjectReference][]fsm.ReplicaSpec) {
	changed := map[types.ManagedObjectReference]bool{}
	for _, fs := range set.FilterSet {
		for _, ou := range fs.ObjectSet {
			changed[ou.Obj] = changed[ou.Obj] || ou.Kind == types.ObjectUpdateKindLeave
		}
	}
	now := time.Now()
	for ref := range changed {
		for _, r := range specs[ref] {
			w.d.cache.changed(r.VM)
		}
	}
	for ref, left := range changed {
		var vm *mo.VirtualMachine
		if !left {
			var err error
			vm, _, err = w.s.readVM(ctx, ref, false)
			switch {
			case errors.Is(err, errRefGone):
				left = true
			case err != nil:
				w.d.log.Debug("vcenter watch: cannot read a changed VM", "vm", ref.Value, "err", err)
				w.dirty = true
				continue
			}
		}
		for _, r := range specs[ref] {
			obs := driver.Observation{Replica: r.Name, Target: r.VM, Power: driver.PowerUnknown, Tools: driver.ToolsUnknown}
			if !left {
				obs, _ = observation(r, vm, nil)
			}
			w.d.report(r, obs, now)
		}
	}
}

// ftFailover reports an FT failover between two observations of a
// protected VM: FT leaves "running" for needSecondary/starting (the
// secondary took over or was lost and is being re-created), or the VM now
// runs on another host (the secondary's).
func ftFailover(prev, cur driver.Observation) bool {
	if !prev.FT.Protected() && !cur.FT.Protected() {
		return false
	}
	if prev.FT == driver.FTRunning && (cur.FT == driver.FTNeedSecondary || cur.FT == driver.FTStarting) {
		return true
	}
	return prev.FT.Protected() && cur.FT.Protected() && prev.Host != "" && cur.Host != "" && prev.Host != cur.Host
}
