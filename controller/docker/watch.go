package docker

import (
	"context"
	"reflect"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
)

// watched is the last reported state of one replica.
type watched struct {
	r   fsm.ReplicaSpec
	obs driver.Observation
}

// watchEvents are the engine events that can change an Observation:
// container lifecycle (power, re-creation) and network (dis)connections.
var watchEvents = []string{
	"create", "start", "die", "stop", "kill", "pause", "unpause", "destroy", "rename", "oom", "restart",
	"connect", "disconnect",
}

// Watch streams changes of every replica this driver has been called
// with, on every configured engine, until ctx ends. A new watcher first
// receives the current state of every replica already watched. Each engine
// is followed through its event stream (container and network events); a
// replica an event concerns is inspected and reported if its Observation
// changed. When a stream fails (engine restarting, connection lost), or a
// read finds the engine unreachable while the stream is up, the driver
// re-reads every replica, subscribes again with backoff, reads them again
// and then sends EventResync, so an "unreachable" report is always
// followed by another read. Sends never block. The streams run only while
// somebody watches.
func (d *Driver) Watch(ctx context.Context) <-chan driver.Event {
	sub := driver.NewSubscriber(256)
	d.subMu.Lock()
	d.subs[sub] = struct{}{}
	now := time.Now()
	for _, w := range d.last {
		sub.Send(driver.Event{Kind: driver.EventChanged, Replica: w.r, State: w.obs, At: now})
	}
	for _, n := range d.order {
		h := d.hosts[n]
		h.mu.Lock()
		if !h.watching {
			h.watching = true
			wctx, cancel := context.WithCancel(context.Background())
			h.watchCancel = cancel
			go h.watchLoop(wctx)
		}
		h.mu.Unlock()
	}
	d.subMu.Unlock()
	context.AfterFunc(ctx, func() {
		d.subMu.Lock()
		delete(d.subs, sub)
		close(sub.C)
		if len(d.subs) == 0 {
			for _, n := range d.order {
				h := d.hosts[n]
				h.mu.Lock()
				if h.watchCancel != nil {
					h.watchCancel()
				}
				h.mu.Unlock()
			}
		}
		d.subMu.Unlock()
	})
	return sub.C
}

func (d *Driver) publish(ev driver.Event) {
	d.subMu.Lock()
	defer d.subMu.Unlock()
	for sub := range d.subs {
		sub.Send(ev)
	}
}

// report publishes a replica's state if it differs from what was last
// reported.
func (h *host) report(r fsm.ReplicaSpec, obs driver.Observation, at time.Time) {
	d := h.d
	d.subMu.Lock()
	defer d.subMu.Unlock()
	key := h.name + "\x00" + r.Name
	if prev, ok := d.last[key]; ok && reflect.DeepEqual(prev.obs, obs) {
		return
	}
	d.last[key] = watched{r: r, obs: obs}
	for sub := range d.subs {
		sub.Send(driver.Event{Kind: driver.EventChanged, Replica: r, State: obs, At: at})
	}
}

// stopWatching ends the loop if nobody watches (it forgets what it
// reported: nothing keeps it current any more). Otherwise it returns a
// fresh context for the loop to go on with.
func (h *host) stopWatching() (context.Context, bool) {
	d := h.d
	d.subMu.Lock()
	defer d.subMu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(d.subs) > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		h.watchCancel = cancel
		return ctx, false
	}
	h.watching = false
	h.watchCancel = nil
	h.streamDown.Store(false) // nothing follows the engine any more
	for _, r := range h.watched {
		delete(d.last, h.name+"\x00"+r.Name)
	}
	return nil, true
}

func (h *host) snapshot() map[string]fsm.ReplicaSpec {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := make(map[string]fsm.ReplicaSpec, len(h.watched))
	for k, v := range h.watched {
		m[k] = v
	}
	return m
}

// refresh reads one replica and reports it; an engine that cannot be
// reached (or does not answer in time) makes it "unreachable", and that
// error is returned: the caller must not treat the report as final (see
// follow). Other failures are logged and leave the last report alone.
func (h *host) refresh(ctx context.Context, r fsm.ReplicaSpec) error {
	obs, err := h.d.observeOnce(ctx, h, r)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		if s, _ := classify(err); s != errUnavailable {
			h.log.Debug("docker watch: cannot read a replica", "replica", r.Name, "err", err)
			return nil
		}
		obs = driver.Observation{Replica: r.Name, Target: ContainerName(r), Power: driver.PowerUnknown, Host: h.name}
	}
	h.report(r, obs, time.Now())
	return err
}

// watchPause is the pause before subscribing again after the n-th failure
// in a row: 100 ms doubling, at most 2 s.
func watchPause(n int) time.Duration {
	return min(2*driver.Backoff(n), 2*time.Second)
}

// watchLoop follows one engine's event stream while anybody watches.
func (h *host) watchLoop(ctx context.Context) {
	failures := 0
	dirty := false // events may have been missed: tell watchers to resync
	for {
		if ctx.Err() != nil {
			var stop bool
			if ctx, stop = h.stopWatching(); stop {
				return
			}
		}
		specs := h.snapshot()
		if len(specs) == 0 {
			select {
			case <-ctx.Done():
			case <-h.kick:
			}
			continue
		}
		err := h.follow(ctx, specs, &dirty, &failures)
		if ctx.Err() != nil {
			continue
		}
		h.setStreamDown(true, err)
		failures++
		dirty = true
		h.d.m.watchRestarts.WithLabelValues(h.name).Inc()
		h.log.Debug("docker watch: event stream failed or the engine did not answer a read; subscribing again", "err", err, "failures", failures)
		for _, r := range specs {
			_ = h.refresh(ctx, r) // reports "unreachable" if it is; retried below
		}
		driver.Sleep(ctx, watchPause(failures))
	}
}

// follow subscribes to the engine's events, reads every watched replica
// (so nothing between the last read and the subscription is lost), and
// then handles events until the stream fails or ctx ends.
//
// A read that finds the engine unreachable ends follow with that error,
// like a broken stream, even if the stream itself is up: the replica has
// just been reported unreachable, and a healthy stream brings no event to
// correct that (nothing changes on the replica), so only the loop's
// re-read, resubscription and resync do. Only once the stream is up and
// every replica was read does follow tell watchers to resync (clearing
// dirty) and reset failures.
func (h *host) follow(ctx context.Context, specs map[string]fsm.ReplicaSpec, dirty *bool, failures *int) error {
	if err := h.ready(ctx); err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel() // also closes the stream's connection
	f := make(client.Filters).Add("type", string(events.ContainerEventType), string(events.NetworkEventType)).
		Add("event", watchEvents...)
	res := h.cli.Events(sctx, client.EventsListOptions{Filters: f})
	select {
	case err := <-res.Err: // the subscription itself failed
		if err == nil {
			err = context.Canceled
		}
		return err
	default:
	}
	for _, r := range specs {
		if err := h.refresh(sctx, r); err != nil {
			return err
		}
	}
	h.setStreamDown(false, nil)
	if *dirty {
		*dirty = false
		h.d.publish(driver.Event{Kind: driver.EventResync, At: time.Now()})
	}
	*failures = 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-h.kick:
			// A replica joined or its spec changed: read it now (the
			// stream's filters are by type, so no new subscription).
			now := h.snapshot()
			for name, r := range now {
				if old, ok := specs[name]; !ok || !old.Equal(r) {
					if err := h.refresh(sctx, r); err != nil {
						return err
					}
				}
			}
			specs = now
		case err := <-res.Err:
			if err == nil {
				err = context.Canceled
			}
			return err
		case m := <-res.Messages:
			if r, ok := h.replicaOf(m, specs); ok {
				h.d.m.events.WithLabelValues(h.name, string(m.Type)).Inc()
				if err := h.refresh(sctx, r); err != nil {
					return err
				}
			}
		}
	}
}

// setStreamDown records whether the watch has lost the engine (its event
// stream broke, or a read found it unreachable) and logs a change.
func (h *host) setStreamDown(down bool, err error) {
	if h.streamDown.Swap(down) == down {
		return
	}
	if down {
		h.log.Warn("docker engine lost: its event stream broke or a read got no answer; its replicas are reported unavailable until the watch reads them again", "err", err)
		return
	}
	h.log.Info("docker engine followed again: event stream up and every replica read")
}

// ReadyFor reports whether operations on r can run now
// (controller.ReplicaReadier): always, the driver holds no session to
// wait for.
func (d *Driver) ReadyFor(fsm.ReplicaSpec) bool { return true }

// UnreachableFor reports whether r's engine is known lost
// (controller.ReplicaReadier): the watch's event stream to it broke, or a
// read got no answer, and the watch has not subscribed and read every
// replica again since. The controller then neither chooses r nor waits
// for it: an engine shutting down may leave a call unanswered until its
// timeout (chaos seed 53: a switch to a container chosen just as its
// engine began to restart), while its event stream breaks at once. A
// replica naming no configured host is unreachable too. Only known while
// somebody watches (the controller always does while it leads).
func (d *Driver) UnreachableFor(r fsm.ReplicaSpec) bool {
	h, err := d.hostFor(r)
	return err != nil || h.streamDown.Load()
}

// replicaOf finds the watched replica an event concerns.
func (h *host) replicaOf(m events.Message, specs map[string]fsm.ReplicaSpec) (fsm.ReplicaSpec, bool) {
	var name string
	switch m.Type {
	case events.ContainerEventType:
		name = m.Actor.Attributes[labelReplica]
		if name == "" {
			h.mu.Lock()
			name = h.ids[m.Actor.ID]
			h.mu.Unlock()
		}
	case events.NetworkEventType:
		h.mu.Lock()
		name = h.ids[m.Actor.Attributes["container"]]
		h.mu.Unlock()
	}
	r, ok := specs[name]
	return r, ok && name != ""
}
