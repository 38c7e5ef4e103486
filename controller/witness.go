package controller

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/ars-project/ars/controller/probe"
	"github.com/ars-project/ars/fsm"
)

// WitnessCluster is what a Witness needs from its node.
type WitnessCluster interface {
	Services() []fsm.Service
	// IsLeader: the leader votes with its controller's own probers, so a
	// witness probes only while its node is a follower (and for
	// WitnessHandover after it became leader).
	IsLeader() bool
	// SendToLeader delivers a small message to the leader, best effort.
	SendToLeader(msg []byte) error
	// Changed returns a channel closed when the node next applies a
	// committed entry (a service applied, a switch): the witness takes it
	// before it reads the state and wakes on it.
	Changed() <-chan struct{}
}

// WitnessConfig configures a Witness.
type WitnessConfig struct {
	NodeName string
	Cluster  WitnessCluster
	Logger   *slog.Logger
	// Query, ProbeClock and ProbeMetrics as in Config.
	Query        probe.QueryFunc
	ProbeClock   probe.Clock
	ProbeMetrics *probe.Metrics
	// Tick is how often the witness re-reads the replicated state and sends
	// due heartbeats (default 50ms).
	Tick time.Duration
}

// Witness runs on every node. While the node is a follower it probes every
// service whose probe.confirm is "quorum" — the same probe, from this
// node's own network position — and reports its verdict on the current
// activation to the leader: at once on every change, then as a heartbeat
// (ReportDownEvery while DOWN, ReportUpEvery otherwise). The leader counts a
// majority of voters agreeing before it switches (see evaluateQuorum), so a
// fault between the leader and the replicas (the leader's NIC, a route, a
// firewall rule on the leader) does not move the service.
//
// Services without quorum confirmation are not probed by followers: their
// verdicts would never be used, and each witness adds its probe rate to the
// serving replica's load.
type Witness struct {
	cfg WitnessConfig
	log *slog.Logger
	clk probe.Clock

	mu   sync.Mutex
	last map[string]witnessRead // service -> latest verdict read (see Votes)
}

// witnessRead is a verdict as the witness last read it.
type witnessRead struct {
	act activation
	st  probe.Status
	at  time.Time // probe clock
}

// WitnessHandover is how long a witness goes on probing after its node
// became leader. The leader's own prober starts with the term and needs a
// probe window for its first verdict; until then the witness's verdict,
// delivered in-process like a follower's report, stands for the leader's
// vote (see selfVoter), so a DoS that began before the election is not
// judged afresh.
const WitnessHandover = time.Second

// NewWitness checks cfg and returns a Witness; it starts nothing.
func NewWitness(cfg WitnessConfig) (*Witness, error) {
	if cfg.Cluster == nil {
		return nil, errors.New("controller: witness config: Cluster is required")
	}
	if cfg.NodeName == "" {
		return nil, errors.New("controller: witness config: NodeName is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 50 * time.Millisecond
	}
	clk := cfg.ProbeClock
	if clk == nil {
		clk = probe.SystemClock()
	}
	return &Witness{cfg: cfg, log: cfg.Logger.With("component", "witness"), clk: clk, last: map[string]witnessRead{}}, nil
}

// Votes are the witness's latest verdicts (see WitnessVotes). When its node
// becomes leader the witness goes on probing for WitnessHandover, then
// stops and keeps them as they were; they age from there.
func (w *Witness) Votes() []WitnessVote {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.clk.Now()
	out := make([]WitnessVote, 0, len(w.last))
	for name, rd := range w.last {
		v := WitnessVote{Report: Report{V: ReportVersion, Node: w.cfg.NodeName, Service: name,
			Replica: rd.act.replica, Epoch: rd.act.epoch, Down: rd.st.State == probe.StateDown},
			Age: max(now.Sub(rd.at), 0)}
		if v.Down {
			v.DownForUS = max(rd.at.Sub(rd.st.Since), 0).Microseconds()
		}
		if !rd.st.LastOK.IsZero() {
			v.SeenUp, v.UpAge = true, max(now.Sub(rd.st.LastOK), 0)
		}
		out = append(out, v)
	}
	return out
}

type witnessProbe struct {
	*proberRun
	service string
	sentAt  time.Time
	sent    probe.State
}

// Run probes and reports until ctx ends, then stops every prober.
func (w *Witness) Run(ctx context.Context) {
	probers := map[string]*witnessProbe{}
	changed := make(chan struct{}, 1)
	defer func() {
		for _, p := range probers {
			p.stop()
		}
	}()
	tick := time.NewTimer(w.cfg.Tick)
	defer tick.Stop()
	base := probe.Config{Clock: w.cfg.ProbeClock, Query: w.cfg.Query, Metrics: w.cfg.ProbeMetrics}
	// leaderAt: when this witness saw its node go from follower to
	// leader (zero: it follows, or led from the start).
	var leaderAt time.Time
	following := false
	for {
		applied := w.cfg.Cluster.Changed() // before the state is read: no change is missed
		want := map[string]activation{}
		leader := w.cfg.Cluster.IsLeader()
		switch {
		case !leader:
			following, leaderAt = true, time.Time{}
		case following:
			following, leaderAt = false, time.Now()
		}
		handover := leader && !leaderAt.IsZero() && time.Since(leaderAt) < WitnessHandover
		if !leader || handover {
			for _, s := range w.cfg.Cluster.Services() {
				if s.Spec.Probe.Confirm != fsm.ConfirmQuorum {
					continue
				}
				if a, ok := activationOf(s); ok {
					want[s.Spec.Name] = a
				}
			}
		}
		for name, p := range probers {
			if a, ok := want[name]; !ok || a != p.act {
				p.stop()
				delete(probers, name)
				if !leader {
					// Stopped for another activation or a deleted
					// service: its verdict is about nothing now. A node
					// that leads keeps it (Votes).
					w.forget(name)
				}
			}
		}
		for name, a := range want {
			if _, ok := probers[name]; ok {
				continue
			}
			pr, err := startProber(ctx, w.log, name, a, base, func(probe.Transition) {
				select {
				case changed <- struct{}{}:
				default:
				}
			})
			if err != nil {
				w.log.Error("prober not started", "service", name, "err", err)
				continue
			}
			probers[name] = &witnessProbe{proberRun: pr, service: name, sent: probe.StateUnknown}
		}
		for _, p := range probers {
			w.report(p)
		}
		select {
		case <-ctx.Done():
			return
		case <-applied:
			// A service applied or deleted, or an activation changed: a
			// new service's confirmation must not wait for the next tick
			// (with nothing to probe, 10 ticks: a DoS on a service just
			// applied in the lab was confirmed up to 500 ms late).
		case <-tick.C:
			// With nothing to probe (the usual case: no quorum-confirmed
			// service, or this node leads) re-read the state ten times
			// less often: each read copies every service; a commit wakes
			// the witness anyway (above).
			if len(probers) == 0 {
				tick.Reset(10 * w.cfg.Tick)
			} else {
				tick.Reset(w.cfg.Tick)
			}
		case <-changed:
		}
	}
}

// report sends p's verdict if it changed since the last report or a
// heartbeat is due.
func (w *Witness) report(p *witnessProbe) {
	st := p.p.Status()
	w.mu.Lock()
	w.last[p.service] = witnessRead{act: p.act, st: st, at: w.clk.Now()}
	w.mu.Unlock()
	now := time.Now()
	every := ReportUpEvery
	if st.State == probe.StateDown {
		every = ReportDownEvery
	}
	if st.State == p.sent && now.Sub(p.sentAt) < every {
		return
	}
	r := Report{Node: w.cfg.NodeName, Service: p.service, Replica: p.act.replica, Epoch: p.act.epoch,
		Down: st.State == probe.StateDown}
	if r.Down {
		// The prober's clock measures the outage; the wall clock only
		// paces the heartbeats.
		r.DownForUS = max(w.clk.Now().Sub(st.Since), 0).Microseconds()
	}
	msg, err := EncodeReport(r)
	if err != nil {
		w.log.Error("probe report not encoded", "service", p.service, "err", err)
		return
	}
	p.sent, p.sentAt = st.State, now
	if err := w.cfg.Cluster.SendToLeader(msg); err != nil {
		// No leader (an election) or no address for it yet: try again on
		// the next tick, not the next heartbeat, so the new leader has
		// the vote as soon as this node knows it (a leader change).
		p.sentAt = time.Time{}
		w.log.Debug("probe report not sent", "service", p.service, "err", err)
	}
}

func (w *Witness) forget(service string) {
	w.mu.Lock()
	delete(w.last, service)
	w.mu.Unlock()
}
