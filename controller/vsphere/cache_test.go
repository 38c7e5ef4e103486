package vsphere

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/vcsim"
)

// cachedObserves is how many observations came from the cache.
func (e *env) cachedObserves() uint64 {
	e.t.Helper()
	var m dto.Metric
	if err := e.d.m.Ops.WithLabelValues(e.d.name, "observe", "cached").(prometheus.Metric).Write(&m); err != nil {
		e.t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// watchedAndCached subscribes to the watch and observes r until an
// observation comes from the cache; it returns the subscription.
func (e *env) watchedAndCached(r fsm.ReplicaSpec) <-chan driver.Event {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	ch := e.d.Watch(ctx)
	eventually(e.t, 10*time.Second, "an observation from the cache", func() bool {
		before := e.cachedObserves()
		e.observe(r)
		return e.cachedObserves() > before
	})
	return ch
}

// With the watch following a VM, the observations of a reconcile pass
// reuse the last read: 50 observations of an unchanged VM cost at most one
// round trip to vCenter (the alive check), not 50 reads of its devices.
func TestObserveReusesAReadTheWatchVouchesFor(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	e.start()
	r := replica("bind9-win", vm0)
	e.watchedAndCached(r)
	reads, cached := e.calls("RetrieveProperties"), e.cachedObserves()
	for range 50 {
		if o := e.observe(r); o.Power != driver.PowerOn || !o.NICConnected {
			t.Fatalf("cached observation = %+v", o)
		}
	}
	if n := e.calls("RetrieveProperties") - reads; n > 1 {
		t.Fatalf("50 observations made %d RetrieveProperties calls, want at most 1", n)
	}
	if n := e.cachedObserves() - cached; n != 50 {
		t.Fatalf("%d of 50 observations came from the cache", n)
	}
	// Without a watch (nobody subscribed) every observation reads.
	e2 := newEnv(t, vcsim.Options{}, nil)
	e2.start()
	for range 3 {
		e2.observe(r)
	}
	if n := e2.cachedObserves(); n != 0 {
		t.Fatalf("%d observations came from the cache without a watch", n)
	}
}

// A change by someone else invalidates the read before the watch reports
// it: the pass the report wakes sees the change.
func TestObserveSeesAChangeTheWatchReported(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	e.start()
	r := replica("bind9-win", vm0)
	ch := e.watchedAndCached(r)
	e.powerOffByHand(vm0)
	nextEvent(t, ch, 10*time.Second, "power-off by hand", powerIs(r.Name, driver.PowerOff))
	if o := e.observe(r); o.Power != driver.PowerOff || o.NICConnected {
		t.Fatalf("observation after the watch reported a power-off = %+v", o)
	}
	// A change of the configuration only (the change version moves).
	e.watchedAndCached(r)
	before := e.observe(r).ChangeVersion
	e.annotateByHand(vm0, "by hand")
	nextEvent(t, ch, 10*time.Second, "reconfigure by hand", func(ev driver.Event) bool {
		return ev.Replica.Name == r.Name && ev.State.ChangeVersion != before
	})
	if o := e.observe(r); o.ChangeVersion == before {
		t.Fatalf("observation after a reconfigure by hand kept change version %q", before)
	}
}

// The driver's own operation invalidates the read at once: an observation
// right after a detach shows the NIC disconnected, without waiting for
// the watch.
func TestObserveAfterAnOperationReads(t *testing.T) {
	e := newEnv(t, vcsim.Options{}, nil)
	e.start()
	r := replica("bind9-win", vm0)
	e.watchedAndCached(r)
	for range 3 {
		if err := e.d.Detach(e.ctx(), r); err != nil {
			t.Fatal(err)
		}
		if o := e.observe(r); o.NICConnected {
			t.Fatalf("observation right after a detach = %+v", o)
		}
		if err := e.d.Attach(e.ctx(), r); err != nil {
			t.Fatal(err)
		}
		if o := e.observe(r); !o.NICConnected {
			t.Fatalf("observation right after an attach = %+v", o)
		}
	}
}

// A vCenter that stops answering is not hidden by the cache: the
// observation waits for vCenter as a read would, fails, and the vCenter is
// reported unreachable.
func TestObserveOfAHungVCenterFails(t *testing.T) {
	var hang atomic.Bool
	handler := func(ctx *simulator.Context, m *simulator.Method) (mo.Reference, types.BaseMethodFault) {
		if hang.Load() && m.Name == "RetrieveProperties" {
			time.Sleep(time.Second) // past the call timeout
			return nil, &types.SystemError{Reason: "hung"}
		}
		return nil, nil
	}
	e := newEnv(t, vcsim.Options{Handler: handler}, func(c *Config) { c.CallTimeout = 300 * time.Millisecond; c.MaxAttempts = 1 })
	e.start()
	r := replica("bind9-win", vm0)
	e.watchedAndCached(r)
	hang.Store(true)
	time.Sleep(aliveWindow) // the last answer ages out
	if o, err := e.d.Observe(e.ctx(), r); err == nil {
		t.Fatalf("observation of a hung vCenter succeeded: %+v", o)
	}
	if !e.d.Unreachable() {
		t.Fatal("a hung vCenter is not reported unreachable")
	}
}

// A read older than maxCacheAge is not reused, even with nothing changed:
// what the watch does not stream is seen within that time.
func TestCachedReadExpires(t *testing.T) {
	var c obsCache
	c.init()
	r := replica("bind9-win", vm0)
	c.cover([]string{r.VM})
	c.put(r, driver.Observation{Replica: r.Name}, c.stamp(r.VM))
	if _, ok := c.get(r); !ok {
		t.Fatal("a fresh read of a covered, unchanged VM is not reused")
	}
	e := c.entries[cacheKey(r)]
	e.at = e.at.Add(-maxCacheAge)
	c.entries[cacheKey(r)] = e
	if _, ok := c.get(r); ok {
		t.Fatalf("a read %s old is reused", maxCacheAge)
	}
}
