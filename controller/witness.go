package controller

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/ars-project/ars/controller/probe"
	"github.com/ars-project/ars/fsm"
)

// WitnessCluster is what a Witness needs from its node.
type WitnessCluster interface {
	Services() []fsm.Service
	// IsLeader: the leader votes with its controller's own probers, so a
	// witness probes only while its node is a follower.
	IsLeader() bool
	// SendToLeader delivers a small message to the leader, best effort.
	SendToLeader(msg []byte) error
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
}

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
	return &Witness{cfg: cfg, log: cfg.Logger.With("component", "witness")}, nil
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
	for {
		want := map[string]activation{}
		if !w.cfg.Cluster.IsLeader() {
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
		case <-tick.C:
			// With nothing to probe (the usual case: no quorum-confirmed
			// service, or this node leads) re-read the state ten times
			// less often: each read copies every service.
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
		clk := w.cfg.ProbeClock
		if clk == nil {
			clk = probe.SystemClock()
		}
		r.DownForUS = max(clk.Now().Sub(st.Since), 0).Microseconds()
	}
	msg, err := EncodeReport(r)
	if err != nil {
		w.log.Error("probe report not encoded", "service", p.service, "err", err)
		return
	}
	// Mark it sent even if sending failed: the next heartbeat retries, and
	// a missing leader is the normal state during an election.
	p.sent, p.sentAt = st.State, now
	if err := w.cfg.Cluster.SendToLeader(msg); err != nil {
		w.log.Debug("probe report not sent", "service", p.service, "err", err)
	}
}
