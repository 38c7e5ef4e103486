package controller

import (
	"context"
	"slices"
	"time"

	"github.com/ars-project/ars/controller/probe"
	"github.com/ars-project/ars/fsm"
)

// Standby health (DESIGN.md, "Standby health"): the leader asks the probe
// question at the health_addr of each standby that has one, slowly and on
// a schedule of its own, and tells decide which standbys do not answer.

// healthTarget is what one standby health prober probes: the replica's
// health address with the pacing of its service, for one standby term of
// the replica (its ReplicaState.Since). A replica that leaves the standby
// role, or comes back to it, gets a fresh prober and a fresh verdict.
type healthTarget struct {
	addr  string
	spec  fsm.ProbeSpec // as standbySpec makes it
	epoch uint64
}

// healthRun is one running standby health prober.
type healthRun struct {
	service, replica string
	target           healthTarget
	p                *probe.Prober
	cancel           context.CancelFunc
	done             chan struct{}
}

func (h *healthRun) stop() {
	h.cancel()
	<-h.done
}

// StandbyHealth is the leader's measured health of one standby: its
// latest verdict, once there is one.
type StandbyHealth struct {
	Service string
	Replica string
	Addr    string // the replica's health_addr
	// Answering: the latest probe answered (false: probe.standby_failures
	// probes in a row failed).
	Answering bool
	// Since is when the verdict was reached; LastOK when the latest valid
	// answer arrived (zero if none in this standby term).
	Since  time.Time
	LastOK time.Time
	// Failures counts the consecutive failures since the latest answer;
	// LastReason is the latest failure's reason.
	Failures   int
	LastReason string
}

// standbySpec is the probe a standby's health prober runs: the service's
// question and timeout, one probe at a time (profile paper: the next no
// sooner than standby_interval after the previous start), and a verdict
// after standby_failures failures in a row. Its own schedule and in-flight
// limit of one: it shares nothing with the active's prober.
func standbySpec(p fsm.ProbeSpec) fsm.ProbeSpec {
	s := p
	s.Profile = fsm.ProfilePaper
	s.Interval = p.StandbyInterval
	if s.Interval <= 0 {
		s.Interval = fsm.DefaultStandbyInterval
	}
	s.Failures = p.StandbyFailures
	if s.Failures <= 0 {
		s.Failures = fsm.DefaultStandbyFailures
	}
	if s.Timeout <= 0 || s.Timeout > s.Interval {
		s.Timeout = min(s.Interval, fsm.DefaultPaperTimeout)
	}
	s.Window = 0
	s.Confirm = fsm.ConfirmNone
	return s
}

// healthTargets are the standbys to probe now: every replica in role
// standby whose spec names a health_addr.
func healthTargets(services []fsm.Service) map[string]healthTarget {
	want := map[string]healthTarget{}
	for _, s := range services {
		for _, rs := range s.Replicas {
			if rs.Role != fsm.RoleStandby {
				continue
			}
			sp, ok := s.Spec.Replica(rs.Name)
			if !ok || sp.HealthAddr == "" {
				continue
			}
			want[replicaKey(s.Spec.Name, rs.Name)] = healthTarget{addr: sp.HealthAddr, spec: standbySpec(s.Spec.Probe), epoch: rs.Since}
		}
	}
	return want
}

// syncHealth starts a health prober for each standby to probe and stops
// the others: a replica that became active (the service's prober takes
// over), left the standby role otherwise, lost its health_addr, or whose
// service was deleted. Every prober also ends with the leadership (ctx),
// and Run waits for them (stopHealth).
func (r *run) syncHealth(ctx context.Context) {
	if r.c.cfg.DisableProbes {
		return
	}
	want := healthTargets(r.c.cl.Services())
	for key, h := range r.health {
		if t, ok := want[key]; !ok || t != h.target {
			h.stop()
			delete(r.health, key)
			r.c.m.standbyForget(h.service, h.replica)
		}
	}
	for _, s := range r.c.cl.Services() {
		for _, rs := range s.Replicas {
			key := replicaKey(s.Spec.Name, rs.Name)
			t, ok := want[key]
			if !ok {
				continue
			}
			if _, running := r.health[key]; running {
				continue
			}
			h, err := r.startHealth(ctx, s.Spec.Name, rs.Name, t)
			if err != nil {
				r.c.log.Error("standby health prober not started", "service", s.Spec.Name, "replica", rs.Name, "err", err)
				continue
			}
			r.health[key] = h
		}
	}
	r.c.publishHealth(r.healthView())
}

func (r *run) startHealth(ctx context.Context, service, replica string, t healthTarget) (*healthRun, error) {
	h := &healthRun{service: service, replica: replica, target: t, done: make(chan struct{})}
	p, err := probe.New(probe.Config{
		Service: service + "/" + replica, Addr: t.addr, Spec: t.spec,
		Clock: r.c.cfg.ProbeClock, Query: r.c.query,
		OnTransition: func(tr probe.Transition) {
			answering := tr.To == probe.StateUp
			r.c.m.standbyHealth(service, replica, answering)
			if answering {
				r.c.log.Info("standby answers its health probe", "service", service, "replica", replica, "addr", t.addr)
			} else {
				r.c.log.Warn("standby does not answer its health probe", "service", service, "replica", replica, "addr", t.addr,
					"failures", tr.Failures, "reason", string(tr.Reason))
			}
			// Never blocks the prober: the loop reads every verdict
			// again on its pass (capabilities, healthView).
			select {
			case r.healthKick <- struct{}{}:
			default:
			}
		},
	})
	if err != nil {
		return nil, err
	}
	h.p = p
	hctx, cancel := context.WithCancel(ctx)
	h.cancel = cancel
	go func() {
		defer close(h.done)
		if err := p.Run(hctx); err != nil && hctx.Err() == nil {
			r.c.log.Error("standby health prober stopped", "service", service, "replica", replica, "err", err)
		}
	}()
	return h, nil
}

func (r *run) stopHealth() {
	for key, h := range r.health {
		h.stop()
		delete(r.health, key)
		r.c.m.standbyForget(h.service, h.replica)
	}
	r.c.publishHealth(nil)
}

// notAnswering reports whether the leader's health prober of the
// replica, in its current standby term, judged it not answering.
func (r *run) notAnswering(svc fsm.Service, rs fsm.ReplicaState) bool {
	h, ok := r.health[replicaKey(svc.Spec.Name, rs.Name)]
	if !ok || h.target.epoch != rs.Since || rs.Role != fsm.RoleStandby {
		return false
	}
	return h.p.Status().State == probe.StateDown
}

// healthView is the measured health of every probed standby that has a
// verdict, by service and replica name.
func (r *run) healthView() []StandbyHealth {
	var out []StandbyHealth
	for _, h := range r.health {
		st := h.p.Status()
		if st.State == probe.StateUnknown {
			continue // not measured yet: nothing to show
		}
		out = append(out, StandbyHealth{Service: h.service, Replica: h.replica, Addr: h.target.addr,
			Answering: st.State == probe.StateUp, Since: st.At, LastOK: st.LastOK,
			Failures: st.Failures, LastReason: string(st.LastReason)})
	}
	slices.SortFunc(out, func(a, b StandbyHealth) int {
		if a.Service != b.Service {
			if a.Service < b.Service {
				return -1
			}
			return 1
		}
		if a.Replica < b.Replica {
			return -1
		}
		if a.Replica > b.Replica {
			return 1
		}
		return 0
	})
	return out
}

// publishHealth replaces what StandbyHealth returns.
func (c *Controller) publishHealth(v []StandbyHealth) {
	c.healthMu.Lock()
	c.healthView = v
	c.healthMu.Unlock()
}

// StandbyHealth is the leader's measured health of the standbys it
// probes (those with a health_addr), sorted by service and replica; only
// standbys with a verdict are listed, and nothing while this node does
// not lead. The slice is the caller's.
func (c *Controller) StandbyHealth() []StandbyHealth {
	c.healthMu.Lock()
	defer c.healthMu.Unlock()
	return slices.Clone(c.healthView)
}
