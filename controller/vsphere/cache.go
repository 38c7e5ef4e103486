package vsphere

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
)

// obsCache keeps the last full read of each replica's VM for as long as
// the property-collector watch vouches that the VM has not changed since.
//
// The leader's reconcile loop observes every replica on every pass (once
// a second and after every commit); each observation was a read of the
// VM's properties, devices included: at 25 services of four VM replicas
// about a hundred reads a second, a third of the leader's CPU in XML
// decoding, and load no vCenter owner would accept at hundreds of VMs.
// A read is reused only while
//
//   - the watch covers the VM: its collector was built with the VM's
//     filter on the current session and has delivered its first update set
//     (the VM's state at the time), and no wait has failed since;
//   - no update about the VM has arrived since the read (the watch streams
//     the power, connection, FT, host and tools state and the
//     configuration version, which every reconfigure moves);
//   - this driver has no operation on the VM in flight and started none
//     since the read;
//   - the read showed no task running (a task's end changes no watched
//     property when it fails);
//   - the read is younger than maxCacheAge: what the watch does not
//     stream (a task someone else started, a snapshot taken or deleted by
//     hand) is seen within that time, as the once-a-second reads saw it
//     within a second. (Watching the recent-task list too made the
//     simulator race with itself under -race: it shares that list between
//     the VM and its update sets.)
//
// A change made by someone else reaches the cache as fast as the watch
// delivers it (the update that invalidates the entry is also what wakes
// the reconcile loop), so a pass reads no older state than a fresh read
// issued a moment before the change would have. An observation from the
// cache still needs vCenter to be answering: see Driver.alive.
type obsCache struct {
	mu      sync.Mutex
	epoch   uint64            // bumped when the watch may have missed updates
	changes map[string]uint64 // per VM (ReplicaSpec.VM): updates seen, operations started and ended
	busy    map[string]int    // per VM: this driver's operations in flight
	covered map[string]bool   // VMs the live watch vouches for
	entries map[string]cachedObs
}

type cachedObs struct {
	obs            driver.Observation
	epoch, changes uint64
	at             time.Time // when the read started
}

// maxCacheAge bounds how long a read is reused: every replica's VM is read
// in full at least this often.
const maxCacheAge = 10 * time.Second

// stamp is what a read is valid for: taken before the read, so that an
// update arriving during the read invalidates it.
type stamp struct {
	epoch, changes uint64
	at             time.Time
}

func (c *obsCache) init() {
	c.changes = map[string]uint64{}
	c.busy = map[string]int{}
	c.covered = map[string]bool{}
	c.entries = map[string]cachedObs{}
}

func cacheKey(r fsm.ReplicaSpec) string { return r.Name + "\x00" + r.VM }

// reset forgets everything: a term starts or ends.
func (c *obsCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.init()
}

// invalidate: the watch may have missed updates (its wait failed, it was
// rebuilt, the session changed). Nothing read before is reused, and no VM
// is covered until the rebuilt watch has delivered its first update set.
func (c *obsCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	clear(c.covered)
	clear(c.entries)
}

// cover marks VMs whose current state the watch has delivered (its first
// update set after a build) and follows from now on.
func (c *obsCache) cover(vms []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, vm := range vms {
		c.covered[vm] = true
	}
}

// changed records an update about a VM, or an operation on it starting or
// ending.
func (c *obsCache) changed(vm string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.changes[vm]++
}

// opStart and opEnd bracket one of this driver's operations on a VM.
func (c *obsCache) opStart(vm string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy[vm]++
	c.changes[vm]++
}

func (c *obsCache) opEnd(vm string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.busy[vm]--; c.busy[vm] <= 0 {
		delete(c.busy, vm)
	}
	c.changes[vm]++
}

func (c *obsCache) stamp(vm string) stamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return stamp{c.epoch, c.changes[vm], time.Now()}
}

// put keeps a read taken at st, if it may be reused at all.
func (c *obsCache) put(r fsm.ReplicaSpec, obs driver.Observation, st stamp) {
	if len(obs.Tasks) > 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.epoch != c.epoch || st.changes != c.changes[r.VM] {
		return // changed during the read
	}
	c.entries[cacheKey(r)] = cachedObs{obs: obs, epoch: st.epoch, changes: st.changes, at: st.at}
}

// get returns the reusable read of r, if there is one.
func (c *obsCache) get(r fsm.ReplicaSpec) (driver.Observation, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[cacheKey(r)]
	if !ok || !c.covered[r.VM] || c.busy[r.VM] > 0 || e.epoch != c.epoch || e.changes != c.changes[r.VM] ||
		time.Since(e.at) >= maxCacheAge {
		return driver.Observation{}, false
	}
	return e.obs, true
}

// aliveWindow is how recent an answer from vCenter must be for an
// observation to come from the cache without a round trip of its own. A
// reconcile pass observes every replica within milliseconds, so one pass
// costs at most one round trip per vCenter.
const aliveWindow = 500 * time.Millisecond

// alive returns nil if vCenter answered a call of this session within
// aliveWindow, or answers one now. A cached observation must not hide a
// vCenter that stopped answering: while it hangs this call hangs (up to the
// call timeout) as a read would, marks the vCenter unreachable on its
// timeout as a read would, and fails with a fault when the read's method
// does (it is a RetrieveProperties, of the session's own user session).
// Calls run one at a time; concurrent callers share the answer.
func (d *Driver) alive(ctx context.Context, s *session) error {
	if d.answeredWithin(aliveWindow) {
		return nil
	}
	select {
	case d.ping <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-d.ping }()
	if d.answeredWithin(aliveWindow) {
		return nil
	}
	var sm mo.SessionManager
	res, err := methods.RetrieveProperties(ctx, s.vc, &types.RetrieveProperties{
		This: s.vc.ServiceContent.PropertyCollector,
		SpecSet: []types.PropertyFilterSpec{{
			ObjectSet: []types.ObjectSpec{{Obj: *s.vc.ServiceContent.SessionManager}},
			PropSet:   []types.PropertySpec{{Type: "SessionManager", PathSet: []string{"currentSession"}}},
		}},
	})
	if err == nil {
		err = mo.LoadObjectContent(res.Returnval, &sm)
	}
	if err != nil {
		return err
	}
	if sm.CurrentSession == nil {
		// The session is gone (the simulator answers an empty object
		// rather than NotAuthenticated): a fresh read logs in again.
		return errNoSession
	}
	return nil
}

var errNoSession = errors.New("vcenter session is gone")

func (d *Driver) answeredWithin(w time.Duration) bool {
	at := d.answeredAt.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < w
}

// cachedObserve returns r's observation from the cache when the cache may
// be used and vCenter answers; ok is false when a fresh read is needed.
func (d *Driver) cachedObserve(ctx context.Context, s *session, r fsm.ReplicaSpec) (driver.Observation, bool, error) {
	if s == nil { // per-operation mode: nothing is watched
		return driver.Observation{}, false, nil
	}
	if _, ok := d.cache.get(r); !ok {
		return driver.Observation{}, false, nil
	}
	if err := d.alive(ctx, s); err != nil {
		if errors.Is(err, errNoSession) {
			return driver.Observation{}, false, nil
		}
		return driver.Observation{}, false, fmt.Errorf("vcenter check: %w", err)
	}
	// The entry may have been invalidated while vCenter was asked.
	obs, ok := d.cache.get(r)
	return obs, ok, nil
}
