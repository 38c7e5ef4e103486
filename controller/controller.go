package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ars-project/ars/controller/decide"
	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/controller/probe"
	"github.com/ars-project/ars/fsm"
)

// Cluster is what the controller needs from the replicated state machine:
// the subset of *cluster.Cluster it uses (the controller does not import
// cluster).
type Cluster interface {
	// Apply commits an encoded fsm command.
	Apply(ctx context.Context, cmd []byte) (fsm.Result, error)
	// Term is the current leader term, stamped on every command.
	Term() uint64
	Services() []fsm.Service
	Service(name string) (fsm.Service, bool)
	Alerts() []fsm.AlertRecord
	// Applied is signalled (coalesced) after committed commands are applied.
	Applied() <-chan struct{}
	// VoterCount is the number of Raft voters; a DoS verdict of a service
	// with probe.confirm "quorum" needs a majority of them.
	VoterCount() int
}

// Config configures a Controller.
type Config struct {
	Cluster Cluster
	// NodeName is this node's name: its own probe reports (sent by its
	// Witness before it became leader) never count as a second vote.
	NodeName string
	// Drivers maps a replica platform (fsm.PlatformVM, fsm.PlatformContainer)
	// to its driver. A replica whose platform has no driver is reported and
	// never touched.
	Drivers map[string]driver.Driver
	Logger  *slog.Logger
	Metrics *Metrics // nil: none
	// ProbeMetrics is handed to every service prober (nil: none).
	ProbeMetrics *probe.Metrics

	// ReconcileInterval is the level-triggered timer (default 1s).
	ReconcileInterval time.Duration
	// Query sends one probe; default probe.Query. It is used by the
	// probers and to verify a switch.
	Query probe.QueryFunc
	// ProbeClock is the probers' clock (default probe.SystemClock()).
	ProbeClock probe.Clock
	// VerifyAttempts bounds the probes that verify a switch (default 25),
	// VerifyBackoff is the pause between them (default 20ms: the new
	// replica's link comes up a few ms after the driver call returns, and
	// the pause is part of the measured switch time).
	VerifyAttempts int
	VerifyBackoff  time.Duration
	// Now is the leader clock (default time.Now).
	Now func() time.Time
	// Witness is this node's own Witness (nil: none): a new leader takes
	// its verdicts from before it led (see takeOver).
	Witness WitnessVotes
	// DisableProbes sends no probe at all: no probers, and switches
	// complete without the verify probe (-dev, and tests that drive verdicts
	// by hand).
	DisableProbes bool
	// Agents makes the clients of the replica agents of address-handover
	// replicas (nil: none; such replicas are then never available).
	// HandoverTimeout bounds one agent call (default
	// DefaultHandoverTimeout); AgentPollInterval is how often each agent
	// is asked what it holds (default DefaultAgentPollInterval).
	Agents            AgentDialer
	HandoverTimeout   time.Duration
	AgentPollInterval time.Duration

	// passWait is how long a pass waits for one platform call (default
	// passWait); tests lengthen it to see what waits behind a call.
	passWait time.Duration
}

// Controller is the leader loop: it probes, decides, commits and
// reconciles. Register Run with cluster.OnLeader.
type Controller struct {
	cfg     Config
	cl      Cluster
	log     *slog.Logger
	m       *Metrics
	now     func() time.Time
	query   probe.QueryFunc
	running sync.Mutex // one Run at a time

	leading atomic.Bool   // a Run is in progress: reports are wanted
	reports chan received // followers' probe reports, see HandleReport

	healthMu   sync.Mutex
	healthView []StandbyHealth // see StandbyHealth
}

// received is a follower's report and when this node received it.
type received struct {
	Report
	at time.Time
}

// New checks cfg and returns a Controller; it starts nothing.
func New(cfg Config) (*Controller, error) {
	if cfg.Cluster == nil {
		return nil, errors.New("controller: config: Cluster is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ReconcileInterval <= 0 {
		cfg.ReconcileInterval = time.Second
	}
	if cfg.Query == nil {
		cfg.Query = probe.Query
	}
	if cfg.HandoverTimeout <= 0 {
		cfg.HandoverTimeout = DefaultHandoverTimeout
	}
	if cfg.AgentPollInterval <= 0 {
		cfg.AgentPollInterval = DefaultAgentPollInterval
	}
	if cfg.VerifyAttempts <= 0 {
		cfg.VerifyAttempts = 25
	}
	if cfg.VerifyBackoff <= 0 {
		cfg.VerifyBackoff = 20 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.passWait <= 0 {
		cfg.passWait = passWait
	}
	drivers := make(map[string]driver.Driver, len(cfg.Drivers))
	for p, d := range cfg.Drivers {
		if d != nil {
			drivers[p] = d
		}
	}
	cfg.Drivers = drivers
	return &Controller{cfg: cfg, cl: cfg.Cluster, log: cfg.Logger, m: cfg.Metrics, now: cfg.Now, query: cfg.Query,
		reports: make(chan received, 256)}, nil
}

// HandleReport takes a follower's probe report (the payload of a
// cluster message; install it with cluster.SetMessageHandler). It never
// blocks: reports that do not decode or find the queue full are dropped
// (followers repeat them). Reports that arrive before this node's loop
// runs (followers send to the Raft leader as soon as they know it, before
// its barrier) are queued too and counted when it starts; an old one has
// expired by then (ReportTTL).
func (c *Controller) HandleReport(msg []byte) {
	r, err := DecodeReport(msg)
	if err != nil {
		c.m.report("invalid")
		c.log.Debug("probe report dropped", "err", err)
		return
	}
	rec := received{Report: r, at: c.now()}
	select {
	case c.reports <- rec:
		c.m.report("accepted")
		return
	default:
	}
	if c.leading.Load() {
		c.m.report("overflow")
		return
	}
	// Not leading: the queue holds reports from long ago (sent to this
	// node when it led, or thought to lead); the newest matter, so the
	// oldest gives way.
	select {
	case <-c.reports:
	default:
	}
	select {
	case c.reports <- rec:
		c.m.report("accepted")
	default:
	}
}

// verdict says that a service's prober changed its verdict on one
// activation; the evidence itself is read from the prober (evaluate).
type verdict struct {
	service string
	act     activation
}

// switchTiming is what the leader remembers of a switch it decided, to
// report its phases; a switch inherited from an earlier leader has none.
type switchTiming struct {
	detection time.Duration
	start     time.Time
	// detached is when the old replica was first known off the service
	// address: the critical path's detach of it returned, or its agent
	// released the address (zero until then).
	detached time.Time
	// took is when the new replica first had the address: its attach
	// returned, or its agent claimed it (zero until then).
	took time.Time
}

// trigger is when what the switch answered happened: the first failed
// probe of a DoS verdict, an alert's time (by the detector's clock, never
// after the decision).
func (t switchTiming) trigger() time.Time { return t.start.Add(-t.detection) }

// attachment is when a replica was first seen attached, and whether this
// leader attached it (then it may still be coming up).
type attachment struct {
	at      time.Time
	byUs    bool
	firstOK time.Time // when the leader's probes first got an answer after at (byUs), or when it was seen serving before the term
}

// run is the state of one leadership.
type run struct {
	c        *Controller
	probers  map[string]*proberRun
	verdicts chan verdict
	kick     chan struct{}
	timingOf map[string]switchTiming       // service/generation -> timing
	retries  map[string]time.Time          // service -> when to weigh its DoS evidence again (damped, not committed, or held back by lookAgain)
	alertAt  map[string]time.Time          // alert id -> retry time (damped alerts)
	obs      map[string]driver.Observation // replica key -> last observation
	down     map[string]time.Time          // replica key -> since when its platform does not answer (see platformAnswered)
	reported map[string]bool               // replicas reported as undrivable
	tally    *tally                        // followers' probe votes
	fired    map[string]uint64             // service -> epoch a DoS verdict was decided on
	// stuck: service -> what decide saw when a DoS verdict found no
	// replica to take over (see evaluate); gone once the verdict is
	// decided again or its evidence is lost.
	stuck map[string]stuckVerdict
	// pending: detector alert id -> what decide saw when the alert
	// found no replica to take over; it stays unanswered in the ledger
	// and is decided again once either changes (see handleAlerts).
	pending map[string]stuckVerdict
	// noted: service -> the replica and outcome of the last verdict
	// record (see noteVerdict); gone when the evidence is lost.
	noted map[string]string
	// reportSeen: a follower's report was counted in this leadership.
	reportSeen bool
	// attachedSince: replica key -> when the reconciler first saw it
	// attached (continuously since), and whether it attached it itself.
	attachedSince map[string]attachment
	// Background operations (see background): replica key -> what the
	// one in progress does.
	busy   map[string]job
	bgDone chan bgResult
	// Switches' critical paths in flight (see criticalCalls): service ->
	// its calls.
	switching map[string]*critical
	// ended is signalled when a platform call that no pass waits for has
	// returned (callEnded).
	ended chan struct{}
	// pass counts reconcile passes (a read belongs to the pass that
	// started it, see observe).
	pass uint64
	bg   sync.WaitGroup
	// Platform reads of the loop (see observe): replica key -> the read in
	// flight; stale: a commit arrived while the pass waited for one.
	reads map[string]read
	rg    sync.WaitGroup
	stale bool
	// startOnly: the pass has several switches to complete; it starts
	// each one's critical path without waiting for it (criticalCalls).
	startOnly bool
	// samples: service -> the probes this leader sent to its address
	// (outage.go). Only the loop touches the map; each log has its lock.
	samples map[string]*sampleLog
	// health: replica key -> the health prober of a standby with a
	// health_addr (health.go); healthKick is signalled when one changes
	// its verdict.
	health     map[string]*healthRun
	healthKick chan struct{}
	// agents: the clients of the replica agents of address-handover
	// replicas, and what each last said (address.go).
	agents *agentSet
}

// Run is one leadership: it returns when ctx ends (leadership lost), after
// every goroutine it started has stopped.
func (c *Controller) Run(ctx context.Context) {
	c.running.Lock()
	defer c.running.Unlock()
	r := &run{
		c:        c,
		probers:  map[string]*proberRun{},
		verdicts: make(chan verdict, 64),
		kick:     make(chan struct{}, 1),
		timingOf: map[string]switchTiming{},
		retries:  map[string]time.Time{},
		alertAt:  map[string]time.Time{},
		obs:      map[string]driver.Observation{},
		down:     map[string]time.Time{},
		reported: map[string]bool{},
		tally:    newTally(),
		fired:    map[string]uint64{},
		stuck:    map[string]stuckVerdict{},
		pending:  map[string]stuckVerdict{},
		noted:    map[string]string{},

		attachedSince: map[string]attachment{},
		busy:          map[string]job{},
		bgDone:        make(chan bgResult),
		switching:     map[string]*critical{},
		ended:         make(chan struct{}, 1),
		reads:         map[string]read{},
		samples:       map[string]*sampleLog{},
		health:        map[string]*healthRun{},
		healthKick:    make(chan struct{}, 1),
		agents:        newAgentSet(),
	}
	c.leading.Store(true)
	defer c.leading.Store(false)
	var wg sync.WaitGroup
	for _, d := range c.cfg.Drivers {
		ch := d.Watch(ctx)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range ch {
				select {
				case r.kick <- struct{}{}:
				default:
				}
			}
		}()
	}
	defer func() {
		r.stopProbers()
		r.stopHealth()
		r.bg.Wait()
		r.rg.Wait()
		r.stopAgents()
		wg.Wait()
	}()
	c.log.Info("controller started")
	r.takeOver()
	tick := time.NewTicker(c.cfg.ReconcileInterval)
	defer tick.Stop()
	for {
		r.syncProbers(ctx)
		r.syncHealth(ctx)
		r.handleAlerts(ctx)
		r.handleRetries(ctx)
		r.evaluateAll(ctx)
		r.reconcileAll(ctx)
		if r.stale {
			continue // a commit cut the pass short: pass again at once
		}
		if ctx.Err() == nil {
			r.c.m.pass()
		}
		if !r.wait(ctx, tick.C) {
			c.log.Info("controller stopped")
			return
		}
	}
}

// wait blocks until the next full pass is due: a commit, a driver event, a
// verdict or the timer. Followers' reports arrive many times a second; they
// are taken in batches and evaluated here without a full pass (a pass
// observes every replica, and reports queued behind passes would expire
// before they were counted). It returns false when ctx ends.
func (r *run) wait(ctx context.Context, tick <-chan time.Time) bool {
	var due dueTimer
	defer due.stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-r.c.cl.Applied():
		case <-tick:
		case <-r.kick:
		case <-r.healthKick:
			// A standby's health verdict changed: a pass shows it and
			// decides again what found no replica to take over.
		case <-r.ended:
		case res := <-r.bgDone:
			r.bgEnded(res)
		case v := <-r.verdicts:
			r.handleVerdict(ctx, v)
		case rep := <-r.c.reports:
			r.takeReports(ctx, rep)
			continue
		case <-due.arm(r):
			// A decision it commits wakes the loop through Applied.
			due.fired()
			r.handleDue(ctx)
			continue
		}
		return true
	}
}

// takeReports adds rep and every report queued behind it to the tally and
// weighs the evidence of the services they name.
func (r *run) takeReports(ctx context.Context, rep received) {
	services := map[string]bool{}
	for more := true; more; {
		r.firstReport(rep)
		r.tally.add(rep.Report, rep.at)
		services[rep.Service] = true
		select {
		case rep = <-r.c.reports:
		default:
			more = false
		}
	}
	for name := range services {
		r.evaluate(ctx, name)
	}
}

// ---- probes ---------------------------------------------------------------

func (r *run) syncProbers(ctx context.Context) {
	if r.c.cfg.DisableProbes {
		return
	}
	want := map[string]activation{}
	for _, s := range r.c.cl.Services() {
		if a, ok := activationOf(s); ok {
			want[s.Spec.Name] = a
		}
	}
	for name, pr := range r.probers {
		if a, ok := want[name]; !ok || a != pr.act {
			pr.stop()
			delete(r.probers, name)
		}
	}
	for name := range r.tally.votes {
		if _, ok := want[name]; !ok {
			r.tally.forget(name)
		}
	}
	for name := range r.samples {
		if _, ok := want[name]; !ok {
			delete(r.samples, name)
		}
	}
	for name, a := range want {
		if _, ok := r.probers[name]; ok {
			continue
		}
		// Every result goes to the service's probe log as well: the
		// outage a switch record reports is measured from it (outage.go).
		lg := r.sampleLog(name)
		base := probe.Config{Clock: r.c.cfg.ProbeClock, Query: r.c.query, Metrics: r.c.cfg.ProbeMetrics,
			OnResult: func(res probe.Result) { lg.add(res, r.c.now()) }}
		pr, err := startProber(ctx, r.c.log, name, a, base, func(t probe.Transition) {
			r.c.m.verdict(name, t.To.String())
			r.c.log.Info("probe verdict", "service", name, "replica", a.replica, "state", t.To.String(), "detection", t.Detection)
			select {
			case r.verdicts <- verdict{service: name, act: a}:
			case <-ctx.Done():
			}
		})
		if err != nil {
			r.c.log.Error("prober not started", "service", name, "err", err)
			continue
		}
		r.probers[name] = pr
	}
}

// sampleLog returns the probe log of a service, creating it.
func (r *run) sampleLog(service string) *sampleLog {
	lg, ok := r.samples[service]
	if !ok {
		lg = &sampleLog{}
		r.samples[service] = lg
	}
	return lg
}

func (r *run) stopProbers() {
	for name, pr := range r.probers {
		pr.stop()
		delete(r.probers, name)
	}
}

// handleVerdict acts on a prober transition of the current activation (a
// transition of an earlier one is stale and dropped).
func (r *run) handleVerdict(ctx context.Context, v verdict) {
	svc, ok := r.c.cl.Service(v.service)
	if !ok {
		return
	}
	if cur, ok := activationOf(svc); ok && cur == v.act {
		r.evaluate(ctx, v.service)
	}
}

// evaluate decides on a DoS verdict when the evidence against the current
// activation of a service holds: the leader's own prober says DOWN
// (probe.confirm "none"), or a majority of the voters' probers do — the
// leader's and the fresh reports of the followers (probe.confirm
// "quorum"). It is level-triggered (called on every verdict, report and
// loop pass) and fires once per activation while the evidence holds;
// losing it re-arms it, and so does a retry (damped decision, failed
// commit).
//
// Failures count against the active replica only from the moment it was
// attached (see judgedFrom): an outage that began before is the switch's
// or the creation's own gap, and the replica gets a full probe window
// after its attach before it can be judged.
func (r *run) evaluate(ctx context.Context, name string) {
	svc, ok := r.c.cl.Service(name)
	if !ok {
		return
	}
	a, ok := activationOf(svc)
	if !ok {
		return
	}
	pr, ok := r.probers[name]
	if !ok || pr.act != a {
		return // no prober for this activation yet: nothing to weigh
	}
	from, fresh, ok := r.judgedFrom(svc)
	if !ok {
		delete(r.fired, name)
		return
	}
	spec := pr.p.Spec()
	grace := time.Duration(spec.Window)
	if spec.Profile == fsm.ProfilePaper || grace <= 0 {
		grace = time.Duration(spec.Timeout) * time.Duration(max(spec.Failures, 1))
	}
	now := r.c.now()
	st := pr.p.Status()
	if fresh {
		// This leader attached it. Until it has answered once it is coming
		// up (a container's endpoint took up to 0.86 s to pass traffic
		// here), not down; then it is judged from its first answer, so the
		// followers, whose probes see it come up a little later, get a
		// probe window too. One found attached (by an earlier leader) is
		// judged from when it was found.
		key := replicaKey(name, a.replica)
		att := r.attachedSince[key]
		if att.firstOK.IsZero() {
			if st.LastOK.Before(from) {
				if now.Sub(from) < StartupGrace {
					r.lookAgain(name, from.Add(StartupGrace))
					return
				}
			} else {
				att.firstOK = st.LastOK
				r.attachedSince[key] = att
			}
		}
		if !att.firstOK.IsZero() {
			from = att.firstOK
		}
	}
	n := 0
	var earliest time.Time
	vote := func(since time.Time) {
		if since.Before(from) {
			if now.Sub(from) < grace {
				r.lookAgain(name, from.Add(grace))
				return // attached too recently to be judged
			}
			since = from
		}
		n++
		if earliest.IsZero() || since.Before(earliest) {
			earliest = since
		}
	}
	if st.State == probe.StateDown {
		vote(st.Since)
	}
	need, quorum := 1, svc.Spec.Probe.Confirm == fsm.ConfirmQuorum
	if quorum {
		for _, since := range r.tally.down(name, a.replica, a.epoch, r.selfVoter(st), now) {
			vote(since)
		}
		need = Majority(r.c.cl.VoterCount())
	}
	if n < need {
		delete(r.fired, name)
		delete(r.stuck, name)
		delete(r.noted, name)
		return
	}
	if e, ok := r.fired[name]; ok && e == a.epoch {
		s, ok := r.stuck[name]
		if !ok || (s.generation == svc.Generation && maps.Equal(s.caps, r.capabilities(svc))) {
			return
		}
		// It found no replica to take over, and what decide chooses
		// from has changed since (a platform answers again, a restore
		// made a standby): the verdict still holds, decide it again.
	}
	r.fired[name] = a.epoch
	delete(r.stuck, name)
	detection := max(now.Sub(earliest), 0)
	ev := decide.DoSVerdict{Service: name, Replica: a.replica, DetectedAt: now,
		Detection: detection, Confirmations: n, Quorum: quorum,
		AnsweredAt: r.answeredAt(name, a.replica, st)}
	r.decideCommit(ctx, ev, "", detection)
}

// answeredAt is the latest answer the leader's probes of the current
// activation got through the service address after the reconciler saw
// replica attached (or the switch's verification, itself such an answer);
// zero if none. decide does not flap-damp a verdict against a replica that
// answered after its switch started: it served, then failed anew. During a
// make-before-break overlap after an exploit switch the source may still
// answer for a moment; that is the only case in which such an answer is
// not the replica's own, and it leads to at most one undamped switch.
func (r *run) answeredAt(name, replica string, st probe.Status) time.Time {
	att, ok := r.attachedSince[replicaKey(name, replica)]
	if !ok {
		return time.Time{}
	}
	if !st.LastOK.IsZero() && !st.LastOK.Before(att.at) {
		return st.LastOK
	}
	return att.firstOK
}

// judgedFrom is when probe failures start to count against the service's
// active replica, and whether this leader attached it then (fresh). While
// a switch is open: always (decide damps a DoS on the replica being
// switched to for min_dwell, then moves on from a stuck switch).
// Otherwise from when the reconciler saw it attached; not at all before
// that — the service is not down then, it is not up yet: at creation, or
// while drift (a NIC disconnected by hand from a running replica) is
// repaired, which is faster than a switch. An active seen attached that
// then stops running (a crash) stays judged: see converge.
func (r *run) judgedFrom(svc fsm.Service) (from time.Time, fresh, ok bool) {
	if svc.Intent != nil {
		return time.Time{}, false, true
	}
	act, ok := svc.Active()
	if !ok {
		return time.Time{}, false, false
	}
	a, ok := r.attachedSince[replicaKey(svc.Spec.Name, act.Name)]
	return a.at, a.byUs, ok
}

func (r *run) evaluateAll(ctx context.Context) {
	for _, s := range r.c.cl.Services() {
		r.evaluate(ctx, s.Spec.Name)
	}
}

// lookAgain has the service's evidence weighed again at at (or earlier, if
// a retry is due before): evaluate calls it when it holds a verdict back
// only because its replica was attached too recently to be judged, and
// nothing else — a new verdict, a follower's report — may come to weigh it
// once it can be.
func (r *run) lookAgain(name string, at time.Time) {
	if cur, ok := r.retries[name]; !ok || at.Before(cur) {
		r.retries[name] = at
	}
}

// handleRetries re-arms and re-evaluates services whose damped or
// uncommitted DoS verdict is due again.
func (r *run) handleRetries(ctx context.Context) {
	now := r.c.now()
	for name, at := range r.retries {
		if now.Before(at) {
			continue
		}
		delete(r.retries, name)
		delete(r.fired, name)
		r.evaluate(ctx, name)
	}
}

// ---- alerts ---------------------------------------------------------------

// handleAlerts feeds every ledger entry without an Outcome to decide:
// detector alerts and operators' switch requests (kind manual) alike, so
// the leader loop is the one writer of Switch commands. The outcome is
// committed with the decision (Switch/ReplicaRole AlertID, or an
// alert.outcome command), so a new leader neither loses nor replays one.
//
// A detector's alert that found no replica to take over is not answered:
// it stays pending, and is decided again once the service's generation or
// its replicas' capabilities change (a platform answers again, a restore
// makes a standby). Answered, the exploited replica would go on serving
// after a replica became available (chaos seed 26: a vCenter method
// failing for 2 s made every VM unavailable as an exploit was reported,
// and the exploited container served for the rest of the schedule).
func (r *run) handleAlerts(ctx context.Context) {
	now := r.c.now()
	undecided := map[string]bool{}
	for _, a := range r.c.cl.Alerts() {
		if a.Outcome != "" || ctx.Err() != nil {
			continue
		}
		undecided[a.ID] = true
		if at, ok := r.alertAt[a.ID]; ok && now.Before(at) {
			continue
		}
		if p, ok := r.pending[a.ID]; ok {
			svc, found := r.c.cl.Service(a.Service)
			if found && p.generation == svc.Generation && maps.Equal(p.caps, r.capabilities(svc)) {
				continue
			}
			delete(r.pending, a.ID)
		}
		var det time.Duration
		if a.At > 0 {
			if d := now.Sub(time.Unix(0, a.At)); d > 0 {
				det = d
			}
		}
		r.decideCommit(ctx, decide.EventFromRecord(a), a.ID, det)
	}
	for id := range r.pending {
		if !undecided[id] {
			delete(r.pending, id)
		}
	}
}

// ---- decide and commit ------------------------------------------------------

const maxDecideAttempts = 3

// StartupGrace is how long a replica that was attached but has not answered
// a single probe since is left to come up before the probes judge it. A
// replica that answered once is judged from then on; a switch target that
// never comes up is moved on from by decide's rule for open switches.
const StartupGrace = 5 * time.Second

// commitRetry is how soon a verdict whose commit failed (no quorum for a
// moment, leadership moving) is decided again if it still holds.
const commitRetry = 250 * time.Millisecond

// decideCommit decides on ev with the current state and commits the
// decision; on fsm.ErrStaleGeneration it decides again on fresh state
// (bounded). alertID ties the decision to a ledger alert.
func (r *run) decideCommit(ctx context.Context, ev decide.Event, alertID string, detection time.Duration) {
	name := ev.ServiceName()
	for attempt := 1; attempt <= maxDecideAttempts; attempt++ {
		if ctx.Err() != nil {
			return
		}
		now := r.c.now()
		svc, ok := r.c.cl.Service(name)
		var dec decide.Decision
		var caps map[string]decide.Capabilities
		var err error
		if !ok {
			dec = decide.Decision{Outcome: decide.OutcomeRejected, Reason: "unknown service " + name}
			err = fmt.Errorf("%w: %q", fsm.ErrUnknownService, name)
		} else {
			caps = r.capabilities(svc)
			dec, err = decide.Decide(decide.State{Service: svc, Capabilities: caps}, ev, now)
		}
		r.c.m.decision(name, string(dec.Outcome))
		log := r.c.log.With("service", name, "event", ev.String(), "outcome", dec.Outcome, "reason", dec.Reason)
		if err != nil {
			log.Warn("decision rejected", "err", err)
		} else {
			log.Info("decision")
		}
		cmds := dec.Commands
		if v, ok := ev.(decide.DoSVerdict); ok && len(cmds) == 0 && err == nil {
			if dec.Outcome == decide.OutcomeNoEligible {
				r.stuck[name] = stuckVerdict{generation: svc.Generation, caps: caps}
			}
			r.noteVerdict(ctx, v, dec)
		}
		if len(cmds) == 0 {
			if !dec.RetryAt.IsZero() {
				// Damped: decide again when it would not be.
				if alertID != "" {
					r.alertAt[alertID] = dec.RetryAt
				} else if _, ok := ev.(decide.DoSVerdict); ok {
					r.retries[name] = dec.RetryAt
				}
				return
			}
			if alertID == "" {
				return
			}
			if _, detector := ev.(decide.Alert); detector && dec.Outcome == decide.OutcomeNoEligible {
				if _, known := r.pending[alertID]; !known {
					log.Warn("alert pending: no replica can take over yet; it is decided again when one can")
				}
				r.pending[alertID] = stuckVerdict{generation: svc.Generation, caps: caps}
				return
			}
			cmds = []fsm.Command{fsm.AlertOutcome{ID: alertID, Outcome: outcomeText(ev, dec.Outcome, dec.Reason)}}
		}
		stale := false
		for _, cmd := range cmds {
			var sw *fsm.Switch
			switch c := cmd.(type) {
			case fsm.Switch:
				c.AlertID = alertID
				if c.At == 0 {
					c.At = now.UnixNano()
				}
				sw = &c
				cmd = c
			case fsm.ReplicaRole:
				c.AlertID = alertID
				cmd = c
			}
			res, err := r.apply(ctx, cmd)
			if errors.Is(err, fsm.ErrStaleGeneration) && attempt < maxDecideAttempts {
				log.Info("decision stale; deciding again", "err", err)
				stale = true
				break
			}
			if _, manual := ev.(decide.ManualSwitch); manual && err != nil && rejectedForGood(err) {
				// The FSM refuses the operator's switch as such (a target
				// that cannot serve): answer the request instead of
				// deciding it again on every pass.
				log.Warn("switch refused by the state machine", "err", err)
				if _, oerr := r.apply(ctx, fsm.AlertOutcome{ID: alertID,
					Outcome: outcomeText(ev, decide.OutcomeRejected, err.Error())}); oerr != nil {
					log.Error("commit failed", "err", oerr)
				}
				break
			}
			if err != nil {
				log.Error("commit failed", "err", err)
				// An alert stays unanswered in the ledger and is decided
				// again on the next pass; a verdict is an edge, so it is
				// kept to be decided again shortly if it still holds.
				if _, ok := ev.(decide.DoSVerdict); ok {
					r.retries[name] = now.Add(commitRetry)
				}
				return
			}
			if sw != nil {
				log.Info("switch committed", "generation", res.Generation, "term", r.c.cl.Term())
				r.timingOf[timingKey(name, res.Generation)] = switchTiming{detection: detection, start: time.Unix(0, sw.At)}
				r.c.m.switchStarted(svc, *sw)
			}
		}
		if !stale {
			delete(r.alertAt, alertID)
			return
		}
	}
}

func (r *run) apply(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	data, err := fsm.Encode(r.c.cl.Term(), cmd)
	if err != nil {
		return fsm.Result{}, fmt.Errorf("encode %s: %w", cmd.Type(), err)
	}
	res, err := r.c.cl.Apply(ctx, data)
	if err != nil {
		return res, fmt.Errorf("commit %s: %w", cmd.Type(), err)
	}
	return res, nil
}

func timingKey(service string, gen uint64) string { return fmt.Sprintf("%s/%d", service, gen) }

// outcomeText is the Outcome recorded for a ledger entry that the decision
// answers without a switch or role change. An operator's request keeps the
// reason as well ("rejected: ..."): the API answers the operator with it.
func outcomeText(ev decide.Event, o decide.Outcome, reason string) string {
	s := string(o)
	if _, manual := ev.(decide.ManualSwitch); manual && reason != "" {
		s += ": " + reason
	}
	return clipText(s, 256)
}

// rejectedForGood tells a commit error that deciding again cannot cure
// (the state machine rejects the command as such) from one that can (no
// quorum, leadership moving, a stale generation).
func rejectedForGood(err error) bool {
	return errors.Is(err, fsm.ErrConflict) || errors.Is(err, fsm.ErrInvalid) ||
		errors.Is(err, fsm.ErrUnknownReplica) || errors.Is(err, fsm.ErrUnknownService)
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") // a rune cut in two is dropped
}

// capabilities tells decide which replicas cannot be driven now (no driver
// for their platform, unreachable, not found, on a vCenter that does not
// answer, or their latest call found the platform unavailable), which
// cannot be restored, and which their platform last reported powered off
// (a switch to them would have to start them), and which standbys do not
// answer the leader's health probe (health.go).
func (r *run) capabilities(svc fsm.Service) map[string]decide.Capabilities {
	caps := map[string]decide.Capabilities{}
	for _, rs := range svc.Spec.Replicas {
		d, ok := r.c.cfg.Drivers[rs.Platform]
		if !ok {
			caps[rs.Name] = decide.Capabilities{Unavailable: true, NoRestore: true}
			continue
		}
		c, known := decide.Capabilities{}, false
		if o, ok := r.obs[replicaKey(svc.Spec.Name, rs.Name)]; ok {
			c, known = decide.Capabilities{Unavailable: !o.Reachable, NoRestore: !o.Supports.Restore, Stopped: o.Power == driver.PowerOff}, true
		}
		if _, down := r.down[replicaKey(svc.Spec.Name, rs.Name)]; down || unreachable(d, rs) {
			// Its vCenter does not answer (ReplicaReadier), or its
			// latest call found its platform unavailable or it stopped
			// (platformAnswered): a switch to it would wait for the
			// platform, not for the replica.
			c.Unavailable, known = true, true
		}
		if r.agentDown(svc.Spec.Name, rs) {
			// Its replica agent did not answer its latest call: it
			// cannot take the address (see errAgent).
			c.Unavailable, known = true, true
		}
		if st, ok := svc.Replica(rs.Name); ok && r.notAnswering(svc, st) {
			c.NotAnswering, known = true, true
		}
		if known {
			caps[rs.Name] = c
		}
	}
	return caps
}

// noteVerdict commits a verdict record for a DoS verdict whose decision
// commits nothing else (damped, no eligible replica, ignored), so that the
// event stream tells of it; a switch tells of its own. A decision taken
// again with the same outcome for the same replica (a damped verdict's
// retries) is not recorded again until the evidence is lost. The record
// is best effort: one the cluster cannot read yet (a voter below format
// level 4) is skipped, one that fails is logged.
func (r *run) noteVerdict(ctx context.Context, v decide.DoSVerdict, dec decide.Decision) {
	key := v.Replica + "\x00" + string(dec.Outcome)
	if r.noted[v.Service] == key {
		return
	}
	r.noted[v.Service] = key
	_, err := r.apply(ctx, fsm.Verdict{Service: v.Service, Replica: v.Replica,
		DetectionMS: float64(v.Detection) / float64(time.Millisecond), Confirmations: v.Confirmations, Quorum: v.Quorum,
		Outcome: clipText(string(dec.Outcome), 256), Reason: clipText(dec.Reason, fsm.MaxVerdictReason), At: r.c.now().UnixNano()})
	if err != nil && !errors.Is(err, fsm.ErrNeedsUpgrade) && ctx.Err() == nil {
		r.c.log.Warn("verdict record not committed", "service", v.Service, "err", err)
	}
}

// stuckVerdict is what decide was given when a DoS verdict found no
// replica to take over: the service's generation and the replicas'
// capabilities. A verdict is an edge, decided once per activation; this
// one is decided again as soon as either differs, since nothing else may
// come to weigh it (chaos seed 90: every VM's platform failed its reads
// for 2 s as a DoS hit the active, and the service stayed down 74 s after
// they answered again).
type stuckVerdict struct {
	generation uint64
	caps       map[string]decide.Capabilities
}

func replicaKey(service, replica string) string { return service + "/" + replica }

// ---- metrics ----------------------------------------------------------------

// Metrics are the controller's collectors.
type Metrics struct {
	verdicts  *prometheus.CounterVec
	decisions *prometheus.CounterVec
	switches  *prometheus.CounterVec
	phases    *prometheus.HistogramVec
	actions   *prometheus.CounterVec
	errors    *prometheus.CounterVec
	reports   *prometheus.CounterVec
	standby   *prometheus.GaugeVec
	agents    *prometheus.GaugeVec
	passes    prometheus.Counter
}

// NewMetrics creates the controller's collectors and registers them with
// reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ars_controller_verdicts_total", Help: "Probe verdict transitions seen by the leader, by service and new state.",
		}, []string{"service", "state"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ars_controller_decisions_total", Help: "Decisions taken, by service and outcome.",
		}, []string{"service", "outcome"}),
		switches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ars_controller_switches_total", Help: "Switches committed, by service, reason and impl pair (from->to).",
		}, []string{"service", "reason", "pair"}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ars_controller_switch_phase_seconds", Help: "Measured switch phases: detection, switch, total (trigger to verified), outage (no answer to the leader's probes through the service address) and exposure (the old replica on the service network after the trigger).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"service", "phase"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ars_controller_reconcile_actions_total", Help: "Driver actions taken by the reconciler, by service and action.",
		}, []string{"service", "action"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ars_controller_reconcile_errors_total", Help: "Reconciler errors, by service and action.",
		}, []string{"service", "action"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ars_controller_probe_reports_total", Help: "Followers' probe reports received by the leader, by result (accepted, invalid, overflow).",
		}, []string{"result"}),
		standby: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ars_controller_standby_health", Help: "The leader's health probe of a standby with a health_addr, by service and replica: 1 answers, 0 does not answer (probe.standby_failures failures in a row). Absent until the first verdict and while the replica is not standby.",
		}, []string{"service", "replica"}),
		agents: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ars_controller_replica_agent_up", Help: "Whether the replica agent of an address-handover replica answered the leader's latest call, by service and replica: 1 answered, 0 did not. Absent until the first call and on nodes that do not lead.",
		}, []string{"service", "replica"}),
		passes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ars_controller_reconcile_passes_total", Help: "Reconcile passes this node completed as leader, each over every service (a pass a commit cut short is not counted).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.verdicts, m.decisions, m.switches, m.phases, m.actions, m.errors, m.reports, m.standby, m.agents, m.passes)
	}
	return m
}

func (m *Metrics) pass() {
	if m != nil {
		m.passes.Inc()
	}
}

func (m *Metrics) verdict(service, state string) {
	if m != nil {
		m.verdicts.WithLabelValues(service, state).Inc()
	}
}

func (m *Metrics) decision(service, outcome string) {
	if m != nil {
		m.decisions.WithLabelValues(service, outcome).Inc()
	}
}

func (m *Metrics) switchStarted(svc fsm.Service, s fsm.Switch) {
	if m == nil {
		return
	}
	fs, _ := svc.Spec.Replica(s.From)
	ts, _ := svc.Spec.Replica(s.To)
	m.switches.WithLabelValues(svc.Spec.Name, s.Reason, fs.Impl+"->"+ts.Impl).Inc()
}

func (m *Metrics) phase(service, phase string, d time.Duration) {
	if m != nil {
		m.phases.WithLabelValues(service, phase).Observe(d.Seconds())
	}
}

func (m *Metrics) action(service, action string) {
	if m != nil {
		m.actions.WithLabelValues(service, action).Inc()
	}
}

func (m *Metrics) failed(service, action string) {
	if m != nil {
		m.errors.WithLabelValues(service, action).Inc()
	}
}

// setAnswering sets a replica's 0/1 series of g.
func setAnswering(g *prometheus.GaugeVec, service, replica string, answering bool) {
	v := 0.0
	if answering {
		v = 1
	}
	g.WithLabelValues(service, replica).Set(v)
}

func (m *Metrics) standbyHealth(service, replica string, answering bool) {
	if m != nil {
		setAnswering(m.standby, service, replica, answering)
	}
}

func (m *Metrics) standbyForget(service, replica string) {
	if m != nil {
		m.standby.DeleteLabelValues(service, replica)
	}
}

func (m *Metrics) agentAnswering(service, replica string, answering bool) {
	if m != nil {
		setAnswering(m.agents, service, replica, answering)
	}
}

func (m *Metrics) agentForget(service, replica string) {
	if m != nil {
		m.agents.DeleteLabelValues(service, replica)
	}
}

func (m *Metrics) report(result string) {
	if m != nil {
		m.reports.WithLabelValues(result).Inc()
	}
}
