package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/controller/probe"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/replicaagent"
)

// reconcileAll brings every service's replicas to their committed roles:
// first the critical path of every open switch, then the other replicas
// of every service. The critical path reads nothing from a platform
// (attach, detach, verify), while converging reads every replica, and a
// read of a platform that is down or slow (a vCenter that does not
// answer) holds the pass for the driver's timeout times its attempts. In
// one pass per service, a switch of a service that came after such a
// replica waited for its read; now it never waits for another service's
// platform.
func (r *run) reconcileAll(ctx context.Context) {
	r.stale = false
	r.pass++
	services := r.c.cl.Services()
	r.syncAgents(ctx, services)
	open := map[string]bool{} // services whose switch stays open this pass
	// With several switches open (attacks on several services at once)
	// no switch waits for another's critical path: each is started
	// without waiting (a pass waited up to passWait for each in turn, so
	// the fifth of five concurrent switches started ~100 ms after its
	// commit in the scale lab), and each one's end wakes the loop, whose
	// next pass completes it.
	r.startOnly = countIntents(services) > 1
	defer func() { r.startOnly = false }()
	for i, svc := range services {
		if svc.Intent == nil {
			continue
		}
		if ctx.Err() != nil || r.stale {
			return
		}
		name := svc.Spec.Name
		if !r.completeIntent(ctx, svc, *svc.Intent) {
			open[name] = true
			continue
		}
		fresh, ok := r.c.cl.Service(name)
		if !ok {
			services[i] = fsm.Service{} // deleted meanwhile
			continue
		}
		services[i] = fresh
	}
	for _, svc := range services {
		if ctx.Err() != nil || r.stale {
			return
		}
		switch {
		case svc.Spec.Name == "":
		case open[svc.Spec.Name]:
			// The active replica and the one it replaces are the
			// switch's: leave them to the next pass's critical path (a
			// make-before-break source keeps serving until the target is
			// attached); the others still converge.
			r.converge(ctx, svc, true, svc.Intent.From)
		default:
			r.converge(ctx, svc, svc.Intent != nil, "")
		}
	}
}

// countIntents is how many of services have a switch open.
func countIntents(services []fsm.Service) int {
	n := 0
	for _, s := range services {
		if s.Intent != nil {
			n++
		}
	}
	return n
}

// driverFor returns the replica's spec and driver; ok is false (and the
// replica is reported once) when its platform has no driver.
func (r *run) driverFor(svc fsm.Service, replica string) (fsm.ReplicaSpec, driver.Driver, bool) {
	spec, ok := svc.Spec.Replica(replica)
	if !ok {
		return spec, nil, false
	}
	d, ok := r.c.cfg.Drivers[spec.Platform]
	if !ok {
		key := replicaKey(svc.Spec.Name, replica)
		if !r.reported[key] {
			r.reported[key] = true
			r.c.log.Warn("replica not managed: no driver for its platform",
				"service", svc.Spec.Name, "replica", replica, "platform", spec.Platform)
			r.c.m.failed(svc.Spec.Name, "no-driver")
		}
		return spec, nil, false
	}
	return spec, d, true
}

// errStale ends a reconcile pass that was waiting for a platform read when
// a command was committed: the pass acts on the state it read before, and
// acting on it now could undo the new commit (detach a replica a switch
// just made active). The loop passes again at once, on the fresh state.
var errStale = errors.New("a command was committed while the pass waited for the platform")

// observed is the result of one platform read.
type observed struct {
	o   driver.Observation
	err error
}

// read is a platform read in flight, started at a service generation in
// a reconcile pass.
type read struct {
	ch       chan observed
	gen      uint64
	pass     uint64
	orphaned *atomic.Bool // no pass waits for it: its end wakes the loop
}

// errPending: a platform call (a replica's read, a switch's critical
// path) has not returned within passWait, or was started by an earlier
// pass and has not returned yet; the pass goes on without it.
var errPending = errors.New("a platform call is still in flight")

// observe reads a replica's platform state. The read runs beside the loop,
// which keeps deciding while it waits: a platform that accepts calls but
// does not answer (a Docker engine shutting down, a vCenter that is slow,
// hung or still logging in) holds a read for its driver's timeout times
// its attempts, and decisions — a verdict, a follower's vote, a damped
// verdict's retry, an alert — must not wait behind it. A commit made
// meanwhile ends the pass (errStale) with the read in flight. A later pass
// does not wait for it (errPending: the replica is skipped, and the other
// replicas and services are reconciled), and does not start another, so a
// replica has at most one read in flight; its end wakes the loop. A
// result read at an older generation of the service is not used (roles
// changed since, and with them what this leader did to the replica): the
// replica is read again. A pass waits for a read it started at most
// passWait (await), then goes on the same way; the read itself is given
// no budget: a vSphere read waits for the session's login, which a
// budget would starve.
func (r *run) observe(ctx context.Context, svc fsm.Service, d driver.Driver, spec fsm.ReplicaSpec) (driver.Observation, error) {
	service := svc.Spec.Name
	key := replicaKey(service, spec.Name)
	var res observed
	for {
		rd, ok := r.reads[key]
		if ok && rd.pass != r.pass {
			rd.orphaned.Store(true) // before the receive: an end after it wakes the loop
			select {
			case res = <-rd.ch:
			default:
				return driver.Observation{}, errPending
			}
		} else {
			if !ok {
				rd = read{ch: make(chan observed, 1), gen: svc.Generation, pass: r.pass, orphaned: new(atomic.Bool)}
				r.reads[key] = rd
				r.rg.Add(1)
				go func() {
					defer r.rg.Done()
					o, err := d.Observe(ctx, spec)
					rd.ch <- observed{o, err}
					if rd.orphaned.Load() {
						r.callEnded()
					}
				}()
			}
			var err error
			if res, err = r.await(ctx, rd.ch); err != nil {
				if res, err = leaveInFlight(rd.ch, rd.orphaned, err); err != nil {
					return driver.Observation{}, err
				}
			}
		}
		delete(r.reads, key)
		if rd.gen == svc.Generation {
			break
		}
	}
	r.platformAnswered(service, spec.Name, res.err)
	if res.err != nil {
		r.c.m.failed(service, "observe")
		delete(r.obs, key)
		return res.o, fmt.Errorf("observe: %w", res.err)
	}
	r.obs[key] = res.o
	return res.o, nil
}

// leaveInFlight is what a pass does when it stops waiting for a call (err
// from awaitOn): the call is orphaned, so its end wakes the loop. A
// result that came in the meantime is used if the pass goes on
// (errPending), and left for the next pass otherwise (errStale: this
// pass's view of the roles is out of date; or leadership ended).
func leaveInFlight[T any](ch chan T, orphaned *atomic.Bool, err error) (T, error) {
	orphaned.Store(true) // before the receive: an end after it wakes the loop
	var res T
	select {
	case res = <-ch:
		if errors.Is(err, errPending) {
			return res, nil
		}
		ch <- res
	default:
	}
	return res, err
}

// callEnded wakes the loop when a platform call that no pass waits for
// has returned (a read or a switch's critical path a pass left in flight).
func (r *run) callEnded() {
	select {
	case r.ended <- struct{}{}:
	default:
	}
}

// await waits for a platform read, deciding meanwhile on what the loop's
// wait would: probe verdicts, followers' reports, due retries of damped
// verdicts and alerts, and ends of background work. It returns errStale
// (and marks the pass stale) once a command has been committed, or a
// platform call a pass left in flight has ended (a read, or a switch's
// critical path: the next pass takes its result first), and the
// context's error when leadership ends.
//
// After passWait it returns errPending: the call stays in flight and the
// pass goes on without it (the caller skips the replica or the switch),
// so a platform that does not answer (a hung vCenter) holds no other
// replica's reconciliation, nor the first reads of a new leader's actives.
func (r *run) await(ctx context.Context, ch chan observed) (observed, error) {
	return awaitOn(ctx, r, ch)
}

// passWait is how long a pass waits for one platform call before it goes
// on without it. A platform that answers takes milliseconds for a read or
// a NIC change (a vCenter under the "lan" profile 20–30 ms); a power-on on
// a switch's critical path can take longer, and the switch then completes
// in the pass its end wakes.
const passWait = 250 * time.Millisecond

// awaitOn is await for any result channel.
func awaitOn[T any](ctx context.Context, r *run, ch <-chan T) (T, error) {
	var due dueTimer
	defer due.stop()
	limit := time.NewTimer(r.c.cfg.passWait)
	defer limit.Stop()
	var zero T
	for {
		select {
		case res := <-ch:
			return res, nil
		case <-limit.C:
			return zero, errPending
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-r.c.cl.Applied():
			r.stale = true
			return zero, errStale
		case <-r.ended:
			r.stale = true
			return zero, errStale
		case res := <-r.bgDone:
			r.bgEnded(res)
		case v := <-r.verdicts:
			r.handleVerdict(ctx, v)
		case rep := <-r.c.reports:
			r.takeReports(ctx, rep)
		case <-due.arm(r):
			due.fired()
			r.handleDue(ctx)
		}
	}
}

// dueTimer fires when the earliest retry (nextRetry) is due, for the
// loop's waits: a damped verdict or alert, a commit to try again, a
// verdict that came while its replica was too recently attached to be
// judged. None of them waits for the reconcile timer.
type dueTimer struct {
	t    *time.Timer
	last time.Time // when it last fired
}

// arm sets the timer for the earliest retry and returns its channel (nil,
// which never fires, if nothing is due).
func (d *dueTimer) arm(r *run) <-chan time.Time {
	at, ok := r.nextRetry()
	if !ok {
		return nil
	}
	// A retry that failed again (a commit without quorum) stays due: take
	// it up again no sooner than commitRetry, as the loop's own passes
	// would, not in a tight loop.
	wait := max(time.Until(at), commitRetry-time.Since(d.last))
	if d.t == nil {
		d.t = time.NewTimer(wait)
	} else {
		d.t.Reset(wait)
	}
	return d.t.C
}

func (d *dueTimer) fired() { d.last = time.Now() }

func (d *dueTimer) stop() {
	if d.t != nil {
		d.t.Stop()
	}
}

// handleDue decides what is due: alerts and verdicts to decide again.
func (r *run) handleDue(ctx context.Context) {
	r.handleAlerts(ctx)
	r.handleRetries(ctx)
}

// nextRetry is the earliest time a damped or uncommitted verdict, or a
// damped alert, is due to be decided again.
func (r *run) nextRetry() (time.Time, bool) {
	var next time.Time
	for _, m := range []map[string]time.Time{r.retries, r.alertAt} {
		for _, at := range m {
			if next.IsZero() || at.Before(next) {
				next = at
			}
		}
	}
	return next, !next.IsZero()
}

// serviceAddr is the Attach and PowerOn option carrying the service's IP
// address and port (the Docker driver assigns the address to the
// container at Attach and arms the replica's address helper with both at
// PowerOn; vSphere ignores them).
func serviceAddr(svc fsm.Service) driver.Option {
	ap, _ := netip.ParseAddrPort(svc.Spec.Address) // validated by the fsm
	return driver.ServiceAddrPort(ap)
}

// sawAttached records whether a replica of the service is attached,
// keeping the time it was first seen attached (see judgedFrom); byUs marks
// an attach this leader just made (the replica may still be coming up, see
// StartupGrace), as opposed to one found attached.
func (r *run) sawAttached(service, replica string, attached, byUs bool) {
	key := replicaKey(service, replica)
	if !attached {
		delete(r.attachedSince, key)
		return
	}
	if _, ok := r.attachedSince[key]; !ok {
		r.attachedSince[key] = attachment{at: r.c.now(), byUs: byUs}
	}
}

// errTargetDoesNotStart: a switch's target was found not running by the
// switch's attach (or stopped after this leader had attached it), and
// starting it in place failed (see platformAnswered).
var errTargetDoesNotStart = errors.New("found stopped and did not start")

// platformAnswered records how a call on a replica ended: err wrapping
// driver.ErrUnavailable means its platform did not answer (a Docker engine
// restarting, a vCenter gone), errTargetDoesNotStart that a switch found
// its target not running and could not start it, anything else that it
// answered. Until a later call
// succeeds, decide is told the replica is unavailable: it is not chosen,
// and a DoS verdict on it as the active is not held for min_dwell
// (waiting cannot bring it up in time). The service's evidence is weighed
// again at once when its replica is newly found so: a verdict already
// damped would otherwise wait for its RetryAt (chaos: 1.9 s of outage
// when an engine restart killed an exploit switch's target before it
// answered).
func (r *run) platformAnswered(service, replica string, err error) {
	key := replicaKey(service, replica)
	if errors.Is(err, errAgent) {
		// Its replica agent failed, not its platform: agentDown tells
		// decide, and the agent's next answer (its poller) clears it.
		r.lookAgain(service, r.c.now())
		return
	}
	if !errors.Is(err, driver.ErrUnavailable) && !errors.Is(err, errTargetDoesNotStart) {
		if since, ok := r.down[key]; ok {
			delete(r.down, key)
			r.c.log.Info("replica available again: a call on it worked", "service", service, "replica", replica,
				"after", r.c.now().Sub(since))
			// A verdict that found no replica to take over may find
			// this one (see stuckVerdict): pass again at once.
			select {
			case r.kick <- struct{}{}:
			default:
			}
		}
		return
	}
	if _, ok := r.down[key]; ok {
		return
	}
	now := r.c.now()
	r.down[key] = now
	r.c.log.Info("replica unavailable: its platform does not answer, or it is stopped and did not start", "service", service, "replica", replica, "err", err)
	r.lookAgain(service, now)
}

// sawActiveAttached is sawAttached for the service's active replica. One
// newly seen attached has the service's evidence weighed again at once: a
// verdict that came before (the active is not judged until it is seen
// attached) waits for nothing else.
func (r *run) sawActiveAttached(service, replica string, attached, byUs bool) {
	_, before := r.attachedSince[replicaKey(service, replica)]
	r.sawAttached(service, replica, attached, byUs)
	if attached && !before {
		r.lookAgain(service, r.c.now())
	}
}

// do runs one driver action and counts it.
func (r *run) do(service, action string, spec fsm.ReplicaSpec, f func() error) error {
	r.c.m.action(service, action)
	if err := f(); err != nil {
		r.c.m.failed(service, action)
		r.c.log.Warn("reconcile action failed", "service", service, "replica", spec.Name, "action", action, "err", err)
		return fmt.Errorf("%s %s: %w", action, spec.Name, err)
	}
	r.c.log.Debug("reconcile action", "service", service, "replica", spec.Name, "action", action)
	return nil
}

// completeIntent runs the critical path of the open switch (attach To,
// detach From, in the intent's mode), verifies the service through its
// address and commits SwitchDone. It reports whether the intent is closed.
func (r *run) completeIntent(ctx context.Context, svc fsm.Service, in fsm.Intent) bool {
	name := svc.Spec.Name
	to, ok := svc.Replica(in.To)
	if !ok || to.Role != fsm.RoleActive || !to.Clean {
		// docs/design.md §4.4: never attach a replica that is not a clean active.
		r.c.log.Error("open switch target is not a clean active replica", "service", name, "to", in.To, "role", to.Role)
		return false
	}
	toSpec, dTo, ok := r.driverFor(svc, in.To)
	if !ok {
		return false
	}
	fromSpec, dFrom, ok := r.driverFor(svc, in.From)
	if !ok {
		// Nothing may be attached before the old replica can be fenced.
		r.c.log.Error("open switch source has no driver: cannot detach it", "service", name, "from", in.From, "platform", fromSpec.Platform)
		return false
	}
	if j, busy := r.busy[replicaKey(name, in.To)]; busy && (j.detaches || j.attaches) {
		// A detach of the target still under way could land after the
		// attach, and an attach is not made twice at once.
		r.c.log.Debug("open switch waits for a background operation on its target", "service", name, "to", in.To)
		return false
	}
	if j, busy := r.busy[replicaKey(name, in.From)]; busy && j.attaches {
		// The source's attach could land after the switch's detach.
		r.c.log.Debug("open switch waits for the attach of its source", "service", name, "from", in.From)
		return false
	}
	// A switch between two address-handover replicas whose target is
	// linked makes no platform call on its critical path (the source's
	// NIC detach follows it): it does not wait for the driver.
	agentsOnly := toSpec.AddressHandover() && fromSpec.AddressHandover() && r.agentLinked(name, toSpec)
	if _, inFlight := r.switching[name]; !inFlight && !agentsOnly && (!ready(dTo, toSpec) || !ready(dFrom, fromSpec)) {
		// A new leader's vCenter login is still running: the switch is
		// committed and starts the moment the driver is ready (its
		// EventResync wakes the loop), instead of holding the loop.
		r.c.log.Debug("open switch waits for its driver", "service", name, "generation", in.Generation)
		return false
	}
	res, ok := r.criticalCalls(ctx, svc, in, toSpec, dTo, fromSpec, dFrom)
	if !ok {
		return false // in flight
	}
	for _, f := range res.fenced {
		r.sawAttached(name, f, false, false)
		r.sawNICDetached(name, f)
	}
	if !res.detached.IsZero() || !res.released.IsZero() {
		r.sawAttached(name, in.From, false, false)
	}
	if !res.detached.IsZero() {
		r.sawNICDetached(name, in.From)
	}
	if !res.released.IsZero() && res.detached.IsZero() && ready(dFrom, fromSpec) {
		// Its agent released the address; the platform's fence (the NIC
		// detach) follows off the critical path. The source's own
		// convergence detaches it too (quarantined), but only once the
		// switch is closed, and it is what fences it when the driver was
		// not ready yet (a new leader logging in).
		r.fenceInBackground(ctx, svc, in.From, fromSpec, dFrom)
	}
	if res.attachTried {
		r.platformAnswered(name, in.To, res.attachErr)
	}
	if res.attached {
		r.sawActiveAttached(name, in.To, true, true)
	}
	key := timingKey(name, in.Generation)
	if t, ok := r.timingOf[key]; ok {
		// The first detach (or release) that returned took the old
		// replica off the address; a later pass's finds it off already.
		off := res.detached
		if !res.released.IsZero() && (off.IsZero() || res.released.Before(off)) {
			off = res.released
		}
		if t.detached.IsZero() && !off.IsZero() {
			t.detached = off
		}
		if t.took.IsZero() && !res.took.IsZero() {
			t.took = res.took
		}
		r.timingOf[key] = t
	}
	if err := res.err; err != nil {
		r.c.log.Warn("switch critical path failed; retrying on the next pass", "service", name,
			"generation", in.Generation, "err", err)
		return false
	}
	if err := r.verify(ctx, svc); err != nil {
		r.c.m.failed(name, "verify")
		r.c.log.Warn("switch not verified; retrying on the next pass", "service", name, "generation", in.Generation, "err", err)
		return false
	}
	now := r.c.now()
	// The verification was an answer through the service address: the
	// target is up, so it is judged from now on (see evaluate).
	if key := replicaKey(name, in.To); r.attachedSince[key].firstOK.IsZero() {
		if att, ok := r.attachedSince[key]; ok {
			att.firstOK = now
			r.attachedSince[key] = att
		}
	}
	t, known := r.timingOf[key]
	var trigger time.Time
	if known {
		trigger = t.trigger()
	} else {
		t.start = time.Unix(0, in.OpenedAt) // inherited from an earlier leader: detection unknown
	}
	sw := max(now.Sub(t.start), 0)
	total := t.detection + sw
	done := fsm.SwitchDone{Service: name, Generation: in.Generation, DetectionMS: ms(t.detection), SwitchMS: ms(sw),
		TotalMS: ms(total), At: now.UnixNano()}
	switchFigures(&done, r.sampleLog(name).samples(), trigger, t.detached, now, maxProbeHole(svc.Spec.Probe))
	if res.handover != "" {
		done.Handover = res.handover
		if !t.took.IsZero() && !t.detached.IsZero() {
			done.OldHeldMS = ptr(ms(max(t.detached.Sub(t.took), 0)))
		}
	}
	_, err := r.apply(ctx, done)
	if errors.Is(err, fsm.ErrNeedsUpgrade) && (done.Handover != "" || done.OldHeldMS != nil) {
		// A node does not read the handover figures yet (format level 6).
		done.Handover, done.OldHeldMS = "", nil
		_, err = r.apply(ctx, done)
	}
	if errors.Is(err, fsm.ErrNeedsUpgrade) {
		// A node of an earlier version does not read the measurements
		// (a rolling upgrade): complete the switch in the old form.
		r.c.log.Warn("switch done without its measurements: a node does not read them yet", "service", name, "err", err)
		done.OutageMS, done.ProbesSent, done.ProbesLost, done.ExposureMS = nil, nil, nil, nil
		_, err = r.apply(ctx, done)
	}
	if err != nil {
		if errors.Is(err, fsm.ErrStaleGeneration) {
			return true // superseded or closed meanwhile; the fresh state decides
		}
		r.c.log.Error("switch done not committed", "service", name, "err", err)
		return false
	}
	delete(r.timingOf, key)
	r.c.m.phase(name, "detection", t.detection)
	r.c.m.phase(name, "switch", sw)
	r.c.m.phase(name, "total", total)
	attrs := []any{"service", name, "generation", in.Generation, "from", in.From, "to", in.To,
		"detection", t.detection, "switch", sw, "total", total}
	if done.OutageMS != nil {
		outage := time.Duration(*done.OutageMS * float64(time.Millisecond))
		r.c.m.phase(name, "outage", outage)
		attrs = append(attrs, "outage", outage, "probes_lost", *done.ProbesLost, "probes_sent", *done.ProbesSent)
	}
	if done.ExposureMS != nil {
		exposure := time.Duration(*done.ExposureMS * float64(time.Millisecond))
		r.c.m.phase(name, "exposure", exposure)
		attrs = append(attrs, "exposure", exposure)
	}
	r.c.log.Info("switch done", attrs...)
	return true
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// critical is the platform calls of one switch's critical path, made off
// the loop (see criticalCalls).
type critical struct {
	gen      uint64 // the switch's generation
	ch       chan criticalResult
	orphaned atomic.Bool // no pass waits for it: its end wakes the loop
	// cancel ends the calls' context: a superseded switch makes no call it
	// has not started, and its calls in flight are abandoned.
	cancel context.CancelFunc
}

type criticalResult struct {
	attached bool // the target was attached (address handover: its agent claimed the address)
	// handover is how the address reached the target: fsm.HandoverAddress
	// or "nic" (empty: the target's part did not run).
	handover string
	// took is when the target had the address (its attach or its claim
	// returned); released is when the source's agent released it (zero:
	// not released by its agent).
	took, released time.Time
	// attachTried: the target's attach was called; attachErr is how it
	// ended (see platformAnswered).
	attachTried bool
	attachErr   error
	detached    time.Time // when the source's detach returned (zero: not detached here)
	fenced      []string  // replicas of a superseded switch detached first (see unfenced)
	err         error
}

// fence is a replica the critical path detaches before its own calls.
type fence struct {
	spec fsm.ReplicaSpec
	d    driver.Driver
}

// unfenced lists the service's replicas, other than the switch's two
// ends, that may still be on the service network: those this leader saw
// attached and has not seen detached since, and the sources of the
// switches the open one superseded (the not-done records after the last
// verified switch) that it has not seen detached. A make-before-break
// switch superseded before its attach landed never detached its source;
// a new leader may not have read it yet. The next switch detaches them
// before anything else: §4.2 allows two attached replicas, the two ends
// of the open switch, never a third. A detach that fails keeps the
// switch from attaching (it is retried), as §4.2 wants while a platform
// that may still hold the address does not answer. Normally the list is
// empty (a switch's own detach of its source and the reconciler's reads
// clear an entry), so no call is added to the critical path; a detach of
// a replica that is already detached reads it and changes nothing.
func (r *run) unfenced(svc fsm.Service, in fsm.Intent) []fence {
	name := svc.Spec.Name
	maybe := map[string]bool{}
	for i := len(svc.History) - 1; i >= 0; i-- {
		rec := svc.History[i]
		if rec.Done {
			break
		}
		if rec.Generation == in.Generation {
			continue
		}
		spec, _ := svc.Spec.Replica(rec.From)
		if o, seen := r.obs[replicaKey(name, rec.From)]; !seen || r.onAddress(name, spec, o.NICConnected) {
			maybe[rec.From] = true
		}
	}
	var out []fence
	for _, rs := range svc.Spec.Replicas {
		if rs.Name == in.From || rs.Name == in.To {
			continue
		}
		if _, attached := r.attachedSince[replicaKey(name, rs.Name)]; !attached && !maybe[rs.Name] {
			continue
		}
		if spec, d, ok := r.driverFor(svc, rs.Name); ok {
			out = append(out, fence{spec, d})
		}
	}
	return out
}

// criticalCalls makes the platform calls of the open switch in (attach the
// target, detach the source, in the switch's mode) in a goroutine of their
// own and waits for them as observe waits for a read: the loop decides
// meanwhile, and a commit ends the pass (errStale) with the calls still in
// flight. A later pass does not wait for calls in flight: it skips the
// switch (ok false) and goes on with the other services, and the calls'
// end wakes the loop. So a switch whose platform does not answer (a hung
// vCenter) holds its own service, never another service's switch. The
// calls of an earlier, superseded switch of the service are cancelled —
// its next step (a power-on, then an attach of a target an exploit has
// since quarantined) must not run: chaos seed 10 saw a superseded
// switch's target linked after the exploit on it — and let end before
// this one's start: two switches' attaches and detaches must not
// interleave.
func (r *run) criticalCalls(ctx context.Context, svc fsm.Service, in fsm.Intent, toSpec fsm.ReplicaSpec, dTo driver.Driver,
	fromSpec fsm.ReplicaSpec, dFrom driver.Driver) (criticalResult, bool) {
	name := svc.Spec.Name
	for {
		cp, inFlight := r.switching[name]
		var res criticalResult
		if inFlight {
			if cp.gen != in.Generation {
				cp.cancel()
			}
			cp.orphaned.Store(true) // before the receive: an end after it wakes the loop
			select {
			case res = <-cp.ch:
			default:
				return res, false
			}
		} else {
			cp = r.startCritical(ctx, svc, in, toSpec, dTo, fromSpec, dFrom, r.unfenced(svc, in))
			var err error
			if r.startOnly {
				err = errPending // see reconcileAll
			} else {
				res, err = awaitOn(ctx, r, cp.ch)
			}
			if err != nil {
				if res, err = leaveInFlight(cp.ch, &cp.orphaned, err); err != nil {
					return res, false
				}
			}
		}
		delete(r.switching, name)
		if cp.gen == in.Generation {
			return res, true
		}
		// The calls of a superseded switch are done: this one's start,
		// once its drivers are ready (the driver's EventResync wakes the
		// loop).
		if !ready(dTo, toSpec) || !ready(dFrom, fromSpec) {
			return res, false
		}
	}
}

// startCritical starts the calls of criticalCalls.
func (r *run) startCritical(ctx context.Context, svc fsm.Service, in fsm.Intent, toSpec fsm.ReplicaSpec, dTo driver.Driver,
	fromSpec fsm.ReplicaSpec, dFrom driver.Driver, fences []fence) *critical {
	name := svc.Spec.Name
	r.c.log.Info("switch critical path started", "service", name, "generation", in.Generation,
		"mode", in.Mode, "from", in.From, "to", in.To, "fence_first", len(fences))
	ctx, cancel := context.WithCancel(ctx)
	cp := &critical{gen: in.Generation, ch: make(chan criticalResult, 1), cancel: cancel}
	r.switching[name] = cp
	// step is r.do for the switch's calls: none starts once the switch
	// is superseded (or leadership ended).
	step := func(action string, spec fsm.ReplicaSpec, f func() error) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s %s: not started: the switch was superseded or leadership ended: %w", action, spec.Name, err)
		}
		return r.do(name, action, spec, f)
	}
	// One driver call each (docs/design.md §5): the drivers read the state
	// before they act, so no Observe round trip precedes them. Only a
	// target that is not running (its standby was lost, or a suspended
	// replica was chosen) costs a power-on on the critical path.
	var attached atomic.Bool
	var attachTried bool // written by the goroutine below before it sends the result
	var attachErr error
	attach := func() (err error) {
		attachTried = true
		defer func() { attached.Store(err == nil); attachErr = err }()
		err = step("attach", toSpec, func() error { return dTo.Attach(ctx, toSpec, serviceAddr(svc)) })
		if !errors.Is(err, driver.ErrInvalidState) {
			return err
		}
		if err = step("power-on", toSpec, func() error { return dTo.PowerOn(ctx, toSpec, serviceAddr(svc)) }); err == nil {
			err = step("attach", toSpec, func() error { return dTo.Attach(ctx, toSpec, serviceAddr(svc)) })
		}
		if err != nil && !errors.Is(err, driver.ErrUnavailable) {
			// It is not running (killed with its engine, crashed, or a
			// suspended replica was chosen) and does not start in place:
			// a DoS verdict need not wait for it (see platformAnswered).
			// Chaos seed 53: an engine shutting down killed the chosen
			// container and refused its start ("failed to update store")
			// for a second before its socket closed.
			err = fmt.Errorf("%w: %w", errTargetDoesNotStart, err)
		}
		return err
	}
	var detachedAt atomic.Int64 // unix nanoseconds when the detach returned
	detach := func() error {
		err := step("detach", fromSpec, func() error { return dFrom.Detach(ctx, fromSpec) })
		if err == nil {
			detachedAt.Store(r.c.now().UnixNano())
		}
		return err
	}
	platformDetach := detach // the source's NIC detach, whatever its handover
	// Address handover (address.go). The target's agent claims the
	// address: one agent call, after a NIC attach only if its NIC is not
	// known connected (a standby is kept connected). The source's agent
	// releases it; where it does not, the platform fences the source on
	// the critical path (its NIC detach), and where it does, the NIC
	// detach follows off the critical path (completeIntent).
	var tookAt, releasedAt atomic.Int64
	handover := "nic"
	nicAttach := attach
	attach = func() error {
		err := nicAttach()
		if err == nil {
			tookAt.Store(r.c.now().UnixNano())
		}
		return err
	}
	if toSpec.AddressHandover() {
		handover = fsm.HandoverAddress
		linked := r.obs[replicaKey(name, toSpec.Name)].NICConnected || r.agentLinked(name, toSpec)
		attach = func() (err error) {
			if !linked {
				if err = nicAttach(); err != nil {
					return err
				}
			}
			attachTried = true
			defer func() { attached.Store(err == nil); attachErr = err }()
			if err = ctx.Err(); err != nil {
				return fmt.Errorf("claim %s: not started: the switch was superseded or leadership ended: %w", toSpec.Name, err)
			}
			_, err = r.agentCall(ctx, svc, toSpec, in.Generation, true)
			var ae *replicaagent.Error
			if err != nil && linked && errors.As(err, &ae) && ae.Code == replicaagent.CodeNoCarrier {
				// The agent says its NIC is not connected after all (the
				// leader's view was stale, or it was disconnected by
				// hand): connect it, then claim again.
				if err = nicAttach(); err == nil {
					_, err = r.agentCall(ctx, svc, toSpec, in.Generation, true)
				}
			}
			if err == nil {
				tookAt.Store(r.c.now().UnixNano())
			}
			return err
		}
	}
	if fromSpec.AddressHandover() {
		nicDetach := detach
		detach = func() error {
			if ctx.Err() == nil {
				if _, err := r.agentCall(ctx, svc, fromSpec, in.Generation, false); err == nil {
					releasedAt.Store(r.c.now().UnixNano())
					return nil
				}
			}
			return nicDetach()
		}
	}
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		defer cancel()
		var err error
		var fenced []string
		for _, f := range fences {
			if err = step("detach", f.spec, func() error { return f.d.Detach(ctx, f.spec) }); err != nil {
				break
			}
			fenced = append(fenced, f.spec.Name)
		}
		switch {
		case err != nil:
		case in.Mode == fsm.ModeParallel:
			// Both calls at once: the platform works on the two replicas
			// side by side, so one operation, not two, stands between the
			// verdict and the new replica on the network. They may overlap
			// on it, as in make-before-break; the intent stays open until
			// both are done.
			detached := make(chan error, 1)
			go func() { detached <- detach() }()
			err = errors.Join(attach(), <-detached)
		case in.Mode == fsm.ModeMakeBeforeBreak:
			if err = attach(); err == nil {
				err = detach()
			} else if errors.Is(err, errAgent) {
				// The target's agent does not take the address. Kept
				// serving, an exploited source would answer the probes,
				// so no verdict would ever move the service on (a source
				// that stopped answering, a DoS's, loses nothing): cut
				// it off now — released, and its NIC detached — and let
				// the silent address move the service on to the next
				// replica.
				err = errors.Join(err, detach())
				if releasedAt.Load() != 0 {
					// Released by its agent: the NIC still connects it.
					err = errors.Join(err, platformDetach())
				}
			}
		default:
			if err = detach(); err == nil {
				err = attach()
			}
		}
		res := criticalResult{attached: attached.Load(), attachTried: attachTried, attachErr: attachErr, fenced: fenced, err: err}
		if at := detachedAt.Load(); at != 0 {
			res.detached = time.Unix(0, at)
		}
		if at := releasedAt.Load(); at != 0 {
			res.released = time.Unix(0, at)
		}
		if at := tookAt.Load(); at != 0 {
			res.took, res.handover = time.Unix(0, at), handover
		}
		cp.ch <- res
		if cp.orphaned.Load() {
			r.callEnded()
		}
	}()
	return cp
}

// verify sends probes to the service address until one answers: a new
// probe every VerifyBackoff, overlapping (a probe sent before the new
// replica's link was up is lost and would cost a whole probe timeout if
// the next one waited for it), at most VerifyAttempts. With probes
// disabled it sends nothing and the switch completes unverified: such a
// node (-dev) has no service to ask.
func (r *run) verify(ctx context.Context, svc fsm.Service) error {
	if r.c.cfg.DisableProbes {
		return nil
	}
	n := r.c.cfg.VerifyAttempts
	results := make(chan probe.Result, n)
	tick := time.NewTicker(r.c.cfg.VerifyBackoff)
	defer tick.Stop()
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel() // probes still in flight are abandoned, not waited for
		wg.Wait()
	}()
	lg := r.sampleLog(svc.Spec.Name)
	sent, done := 0, 0
	send := func() {
		sent++
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- r.c.query(ctx, svc.Spec.Address, svc.Spec.Probe)
		}()
	}
	send()
	var last error
	for done < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("verify: %w", ctx.Err())
		case <-tick.C:
			if sent < n {
				send()
			}
		case res := <-results:
			lg.add(res, r.c.now())
			done++
			if res.OK {
				return nil
			}
			last = res.Err
		}
	}
	return fmt.Errorf("verify %s: no valid answer after %d probes: %w", svc.Spec.Address, n, last)
}

// converge brings every replica to its role's platform state: the
// non-active ones first, then the active (skipped while an intent is open:
// that is the critical path's job), never the one named skip.
func (r *run) converge(ctx context.Context, svc fsm.Service, skipActive bool, skip string) {
	name := svc.Spec.Name
	othersAttached, othersPending := false, false
	for _, rs := range svc.Replicas {
		if rs.Role == fsm.RoleActive || rs.Role == fsm.RoleMaintenance || rs.Name == skip || ctx.Err() != nil {
			continue
		}
		switch r.convergeReplica(ctx, svc, rs) {
		case pending:
			othersPending = true
		case notDetached:
			othersAttached = true
		}
		if r.stale {
			return
		}
	}
	act, ok := svc.Active()
	if !ok || skipActive || ctx.Err() != nil {
		return
	}
	if !act.Clean {
		return // docs/design.md §4.4 (the FSM never makes an unclean replica active)
	}
	spec, d, ok := r.driverFor(svc, act.Name)
	if !ok {
		return
	}
	key := replicaKey(name, act.Name)
	if _, busy := r.busy[key]; busy || !ready(d, spec) || unreachable(d, spec) {
		// Being started or attached in the background (below), or its
		// platform is not ready or does not answer. An address-handover
		// active whose agent holds the address on a connected link is
		// seen serving without the platform (a new leader logging in).
		if !busy && spec.AddressHandover() && r.holdsAddress(name, act.Name) && r.agentLinked(name, spec) {
			r.sawActiveAttached(name, act.Name, true, false)
		}
		return
	}
	o, err := r.observe(ctx, svc, d, spec)
	if err != nil {
		if !errors.Is(err, errStale) && !errors.Is(err, errPending) && ctx.Err() == nil {
			r.c.log.Warn("observe failed", "service", name, "replica", act.Name, "err", err)
		}
		return
	}
	if o.Power != driver.PowerOn {
		// Not running: crashed (a container's server exits and takes the
		// container with it), stopped, paused or powered off. The service
		// is down, so a replica seen serving keeps being judged from its
		// attach (its attachedSince stays; see judgedFrom): a switch to the
		// warm standby is faster than a start in place (a container start
		// takes about a second, a VM boot far longer), and a replica an
		// attack stopped is then restored before it serves again. One
		// never seen serving by this leader (a new service, a new leader)
		// is not judged until it runs. The start in place runs in the
		// background, keeping the leader loop free to switch; it brings the
		// service back when the switch is damped or there is nowhere to go.
		// It starts the replica detached: by the time a platform that was
		// away (a Docker engine restarting) carries out the start, the
		// service may have been switched elsewhere, and a replica that came
		// back on the service network would take the address from the new
		// active (chaos: a 3.7 s outage after an engine restart). A pass
		// after the start attaches it if it is still the active.
		r.background(ctx, name, act.Name, job{}, func(ctx context.Context) nicAfter {
			if r.do(name, "detach", spec, func() error { return d.Detach(ctx, spec) }) != nil {
				return nicUnknown
			}
			_ = r.do(name, "power-on", spec, func() error { return d.PowerOn(ctx, spec, serviceAddr(svc)) })
			return nicUnknown // the active: judged from its attach (see above), a pass attaches it
		})
		return
	}
	// Running but detached (a NIC disconnected by hand): not judged while
	// it is re-attached, which takes milliseconds, faster than a switch.
	// An address-handover active is on the address once its agent holds
	// it.
	onAddr := o.NICConnected && (!spec.AddressHandover() || r.holdsAddress(name, act.Name))
	r.sawActiveAttached(name, act.Name, onAddr, false)
	if o.NICConnected && !onAddr {
		switch {
		case othersAttached:
			r.c.m.failed(name, "claim-blocked")
			r.c.log.Warn("active's address not claimed: another replica may still hold it", "service", name, "replica", act.Name)
		case othersPending:
		default:
			r.claimForActive(ctx, svc, act.Name, spec)
		}
		return
	}
	if !o.NICConnected {
		switch {
		case othersAttached:
			// docs/design.md §4.2: attach only when every other replica is known detached.
			r.c.m.failed(name, "attach-blocked")
			r.c.log.Warn("active not attached: another replica may still be attached", "service", name, "replica", act.Name)
			return
		case othersPending:
			return // a pass after their detaches (or reads) attaches it
		}
		// In the background too: the active's platform may be the one
		// that does not answer. No switch touches the replica until the
		// attach has returned (completeIntent).
		r.background(ctx, name, act.Name, job{attaches: true}, func(ctx context.Context) nicAfter {
			if r.do(name, "attach", spec, func() error { return d.Attach(ctx, spec, serviceAddr(svc)) }) != nil {
				return nicUnknown
			}
			return nicAttached
		})
	}
}

// detachState is what convergeReplica knows of a replica's service NIC.
type detachState int

const (
	detached    detachState = iota // known detached
	pending                        // a background detach (or restore), or its read, is under way
	notDetached                    // may be attached: not observed, or the detach failed
)

// convergeReplica handles one non-active, non-maintenance replica and
// says whether it is known detached.
//
// Its platform calls all run in the background, detaches included: a
// detach is fast on a platform that answers, but one that does not (a
// hung vCenter) would hold the loop, and with it the next verdict and
// every other service's switch, for its timeout times its attempts. A
// replica whose detach is under way is not known detached, so its
// service's active is attached on the pass after the detach (§4.2), and a
// switch to it waits for the detach (completeIntent).
func (r *run) convergeReplica(ctx context.Context, svc fsm.Service, rs fsm.ReplicaState) detachState {
	name := svc.Spec.Name
	spec, d, ok := r.driverFor(svc, rs.Name)
	if !ok {
		return detached // not ours to drive; reported
	}
	key := replicaKey(name, rs.Name)
	if j, busy := r.busy[key]; busy {
		// A background operation is at work on it; observing it now would
		// see it half-way. A replica being detached or restored is not
		// known detached.
		if j.detaches || rs.Role == fsm.RoleQuarantined || rs.Role == fsm.RoleRecovering {
			return pending
		}
		return detached
	}
	if !ready(d, spec) || unreachable(d, spec) {
		// Not observed yet, or its platform does not answer (a vCenter
		// that is down): reading it would only wait for its timeout. It is
		// read again once the driver hears from the platform.
		return notDetached
	}
	o, err := r.observe(ctx, svc, d, spec)
	switch {
	case errors.Is(err, errPending):
		return pending
	case err != nil:
		if !errors.Is(err, errStale) && ctx.Err() == nil {
			r.c.log.Warn("observe failed", "service", name, "replica", rs.Name, "err", err)
		}
		return notDetached
	}
	r.sawAttached(name, rs.Name, r.onAddress(name, spec, o.NICConnected), false)
	if rs.Role == fsm.RoleStandby && spec.AddressHandover() {
		return r.convergeAddressStandby(ctx, svc, rs, spec, d, o)
	}
	needDetach := o.NICConnected || o.NICStartConnected
	detach := func(ctx context.Context) bool {
		return !needDetach || r.do(name, "detach", spec, func() error { return d.Detach(ctx, spec) }) == nil
	}
	// after is what a job that detached (or found detached) leaves known.
	after := func(detached bool) nicAfter {
		if detached {
			return nicDetached
		}
		return nicUnknown
	}
	state := detached
	if needDetach {
		state = pending
	}
	switch rs.Role {
	case fsm.RoleStandby:
		if needDetach || o.Power != driver.PowerOn {
			r.background(ctx, name, rs.Name, job{detaches: needDetach}, func(ctx context.Context) nicAfter {
				ok := detach(ctx)
				if ok && o.Power != driver.PowerOn {
					_ = r.do(name, "power-on", spec, func() error { return d.PowerOn(ctx, spec, serviceAddr(svc)) })
				}
				return after(ok) // a power-on starts it detached (the detach cleared start-connected)
			})
		}
	case fsm.RoleSuspended:
		if needDetach || o.Power == driver.PowerOn {
			r.background(ctx, name, rs.Name, job{detaches: needDetach}, func(ctx context.Context) nicAfter {
				if !detach(ctx) {
					return nicUnknown
				}
				if o.Power == driver.PowerOn {
					if o.Supports.Suspend {
						_ = r.do(name, "suspend", spec, func() error { return d.Suspend(ctx, spec) })
					} else {
						_ = r.do(name, "power-off", spec, func() error { return d.PowerOff(ctx, spec) })
					}
				}
				return nicDetached
			})
		}
	case fsm.RoleQuarantined, fsm.RoleRecovering:
		if !o.Supports.Restore {
			if !r.reported[key+"/restore"] {
				r.reported[key+"/restore"] = true
				r.c.log.Warn("replica cannot be restored; it stays out of service", "service", name, "replica", rs.Name, "role", rs.Role)
				r.c.m.failed(name, "restore-unsupported")
			}
			if needDetach {
				r.background(ctx, name, rs.Name, job{detaches: true}, func(ctx context.Context) nicAfter {
					return after(detach(ctx))
				})
			}
			return state
		}
		r.background(ctx, name, rs.Name, job{detaches: true}, func(ctx context.Context) nicAfter {
			if !detach(ctx) {
				return nicUnknown
			}
			return after(r.restore(ctx, name, rs.Name, spec, d))
		})
		// A revert may connect the NIC (a snapshot taken attached): until
		// it is over and detached again, this replica is not known detached.
		return pending
	}
	return state
}

// job is what a background operation may do to its replica, for the
// loop's rules while it runs.
type job struct {
	// detaches: the replica may stay attached until the job ends, so it is
	// not known detached (§4.2) and no switch attaches it meanwhile.
	detaches bool
	// attaches: the job puts the replica on the service network; no
	// switch detaches it meanwhile (the attach could land after it).
	attaches bool
}

// nicAfter is what a background job leaves known of its replica's
// service NIC.
type nicAfter int

const (
	nicUnknown  nicAfter = iota // the job made no call that tells
	nicAttached                 // the job attached the replica (the active)
	nicDetached                 // the job's detach returned without error
)

// bgResult is the end of a background operation.
type bgResult struct {
	service, replica string
	nic              nicAfter
}

// bgEnded records the end of a background operation. A detach that
// returned is as good as a read that saw the NIC disconnected: the
// replica is no longer "seen attached", so the next switch does not fence
// it (unfenced). Without this, a replica detached just before its
// platform stopped answering (a hung vCenter) stayed "seen attached"
// until a read that never came, and the next switch's critical path
// waited on that platform for a detach that had already happened.
func (r *run) bgEnded(res bgResult) {
	delete(r.busy, replicaKey(res.service, res.replica))
	switch res.nic {
	case nicAttached:
		r.sawActiveAttached(res.service, res.replica, true, true)
	case nicDetached:
		r.sawAttached(res.service, res.replica, false, false)
		r.sawNICDetached(res.service, res.replica)
	}
}

// sawNICDetached records in the replica's last observation that a detach
// of its NIC returned: the observation no longer says connected. An
// address-handover claim trusts a connected NIC to carry the address (no
// attach first); with the stale observation a claim on a standby fenced
// by its NIC (its agent had been cut off) failed for a minute in chaos
// seed 27, its announcement refused by a link without carrier.
func (r *run) sawNICDetached(service, replica string) {
	key := replicaKey(service, replica)
	if o, ok := r.obs[key]; ok {
		o.NICConnected, o.NICStartConnected = false, false
		r.obs[key] = o
	}
}

// background runs f for one replica off the leader loop, at most one at a
// time per replica; the loop makes a full pass when it ends. f gets the
// leadership's context: it is cancelled when leadership ends, and Run
// waits for f before it returns (docs/design.md §4.1). f may use only the
// driver, r.do, r.apply and the logger — the run's maps belong to the
// loop; it returns what it leaves known of the replica's service NIC.
func (r *run) background(ctx context.Context, service, replica string, j job, f func(ctx context.Context) nicAfter) {
	key := replicaKey(service, replica)
	if _, busy := r.busy[key]; busy {
		return
	}
	r.busy[key] = j
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		res := bgResult{service: service, replica: replica, nic: f(ctx)}
		select {
		case r.bgDone <- res:
		case <-ctx.Done():
		}
	}()
}

// restore reverts a quarantined or recovering replica to its clean state,
// detaches it again (a snapshot may hold the NIC connected) and commits
// "restored" against the service's generation as it is then (the restore
// is valid whatever else changed, as long as the replica still waits for
// it). Runs in the background. It says whether the replica ended
// detached: false when the revert or the detach after it failed (a revert
// may leave the NIC connected).
func (r *run) restore(ctx context.Context, service, replica string, spec fsm.ReplicaSpec, d driver.Driver) bool {
	if r.do(service, "restore", spec, func() error { return d.Restore(ctx, spec) }) != nil {
		return false
	}
	if r.do(service, "detach", spec, func() error { return d.Detach(ctx, spec) }) != nil {
		return false
	}
	// Other commits (another replica's restore, a switch) may move the
	// generation between the read and the commit: read again and retry
	// the commit, not the revert.
	var err error
	for attempt := 0; attempt < maxDecideAttempts; attempt++ {
		svc, ok := r.c.cl.Service(service)
		if !ok {
			return true
		}
		if rs, ok := svc.Replica(replica); !ok || (rs.Role != fsm.RoleQuarantined && rs.Role != fsm.RoleRecovering) {
			return true
		}
		cmd := fsm.ReplicaRole{Service: service, Replica: replica, Action: fsm.ActionRestored,
			ExpectGeneration: svc.Generation, Reason: "restored to its clean state by the controller"}
		if _, err = r.apply(ctx, cmd); !errors.Is(err, fsm.ErrStaleGeneration) {
			break
		}
	}
	if err != nil {
		r.c.m.failed(service, "commit-restored")
		r.c.log.Warn("restored not committed; retrying on the next pass", "service", service, "replica", replica, "err", err)
	}
	return true
}
