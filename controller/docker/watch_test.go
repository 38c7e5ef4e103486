package docker

import (
	"context"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
)

// waitEvent reads events until one for replica r satisfies ok (resyncs
// are counted) and returns it with the time it took.
func waitEvent(t *testing.T, ch <-chan driver.Event, r fsm.ReplicaSpec, within time.Duration, what string,
	ok func(driver.Observation) bool) (driver.Event, time.Duration, int) {
	t.Helper()
	return waitEventSince(t, time.Now(), ch, r, within, what, ok)
}

// waitEventSince is waitEvent measuring from start.
func waitEventSince(t *testing.T, start time.Time, ch <-chan driver.Event, r fsm.ReplicaSpec, within time.Duration, what string,
	ok func(driver.Observation) bool) (driver.Event, time.Duration, int) {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	resyncs := 0
	for {
		select {
		case ev, open := <-ch:
			if !open {
				t.Fatalf("%s: watch channel closed", what)
			}
			if ev.Kind == driver.EventResync {
				resyncs++
				continue
			}
			if ev.Replica.Name == r.Name && ok(ev.State) {
				return ev, time.Since(start), resyncs
			}
		case <-timer.C:
			t.Fatalf("%s: no event within %s", what, within)
		}
	}
}

// TestWatch: a new watcher gets the current state first; changes made by
// hand (stop, remove, network disconnect) arrive as events, and Observe
// agrees with them.
func TestWatch(t *testing.T) {
	e := testEnv(t)
	d, cnt := newDriver(t, e, "", nil)
	r := e.replica(t, "192.0.2.10")
	ctx := ctxT(t)

	mustOp(t, cnt, "power-on", -1, func() error { return d.PowerOn(ctx, r) })
	mustOp(t, cnt, "attach", attachCalls(d), func() error { return d.Attach(ctx, r, driver.ServiceAddr(e.svcAddr)) })

	wctx, stop := context.WithCancel(ctx)
	ch := d.Watch(wctx)
	ev, took, _ := waitEvent(t, ch, r, 5*time.Second, "current state", func(o driver.Observation) bool {
		return o.Power == driver.PowerOn && o.NICConnected
	})
	t.Logf("first event (current state) after %s: %s", took, ev.State)

	// Disconnected by hand.
	start := time.Now()
	if _, err := e.cli.NetworkDisconnect(ctx, e.svcNet, client.NetworkDisconnectOptions{Container: ContainerName(r)}); err != nil {
		t.Fatal(err)
	}
	_, took, _ = waitEventSince(t, start, ch, r, 5*time.Second, "disconnect by hand", func(o driver.Observation) bool { return !o.NICConnected })
	t.Logf("network disconnect by hand seen %s after the request was sent", took)

	// Paused by hand.
	start = time.Now()
	if _, err := e.cli.ContainerPause(ctx, ContainerName(r), client.ContainerPauseOptions{}); err != nil {
		t.Fatal(err)
	}
	_, took, _ = waitEventSince(t, start, ch, r, 5*time.Second, "pause by hand", func(o driver.Observation) bool { return o.Power == driver.PowerSuspended })
	t.Logf("pause by hand seen %s after the request was sent", took)

	// Stopped by hand.
	zero := 0
	start = time.Now()
	if _, err := e.cli.ContainerStop(ctx, ContainerName(r), client.ContainerStopOptions{Timeout: &zero}); err != nil {
		t.Fatal(err)
	}
	_, took, _ = waitEventSince(t, start, ch, r, 5*time.Second, "stop by hand", func(o driver.Observation) bool { return o.Power == driver.PowerOff })
	t.Logf("stop by hand seen %s after the request was sent", took)
	if o := observe(t, d, r); o.Power != driver.PowerOff {
		t.Fatalf("observe after a stop by hand: %+v", o)
	}

	// A second watcher first gets the current state.
	ch2 := d.Watch(wctx)
	waitEvent(t, ch2, r, time.Second, "second watcher's first event", func(o driver.Observation) bool { return o.Power == driver.PowerOff })

	// Removed by hand.
	start = time.Now()
	if _, err := e.cli.ContainerRemove(ctx, ContainerName(r), client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	_, took, _ = waitEventSince(t, start, ch, r, 5*time.Second, "remove by hand", func(o driver.Observation) bool { return o.ChangeVersion == "" })
	t.Logf("removal by hand seen %s after the request was sent", took)
	if o := observe(t, d, r); o.Power != driver.PowerOff || o.ChangeVersion != "" {
		t.Fatalf("observe after a removal by hand: %+v", o)
	}

	// The driver's own operations show up too (restore = new container).
	mustOp(t, cnt, "restore", -1, func() error { return d.Restore(ctx, r) })
	waitEvent(t, ch, r, 5*time.Second, "restore", func(o driver.Observation) bool { return o.ChangeVersion != "" })

	stop()
	for range ch { // closed when ctx ends
	}
	for range ch2 {
	}
}
