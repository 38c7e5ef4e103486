package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/replicaagent"
)

// Address handover (DESIGN.md, "Address handover"): a replica with
// handover "address" keeps its service NIC connected while it is standby
// and holds the service address only while its replica agent has claimed
// it. The leader keeps a client per such replica, polls its agent, claims
// the address on the switch's critical path (one agent call, no platform
// task) and releases it on the old active, whose NIC it then disconnects
// off the critical path: the platform's fence, which no agent can undo.

// Defaults of the address handover settings.
const (
	// DefaultHandoverTimeout bounds one agent call. An agent answers in
	// a millisecond or two on a management network; one that has not
	// answered by then is taken for dead, and the switch goes on without
	// it (see errAgent).
	DefaultHandoverTimeout = 500 * time.Millisecond
	// DefaultAgentPollInterval is how often the leader asks each agent
	// what it holds: it keeps the connection warm for the next claim and
	// tells decide which agents answer.
	DefaultAgentPollInterval = time.Second
)

// AddressAgent is one replica agent as the leader calls it
// (replicaagent.Client).
type AddressAgent interface {
	Claim(ctx context.Context, f replicaagent.Fence, address netip.Addr) (replicaagent.Result, error)
	Release(ctx context.Context, f replicaagent.Fence, address netip.Addr) (replicaagent.Result, error)
	State(ctx context.Context) (replicaagent.State, error)
	Close()
}

// AgentDialer returns a client for the agent of replica at addr
// ("IP:port"). It must not block: the connection is made by the first
// call.
type AgentDialer func(replica, addr string) (AddressAgent, error)

// errAgent: a replica agent did not answer, or refused. The failed call
// itself makes the replica unavailable to decide (agentDown, until its
// agent answers again), and platformAnswered has the service's evidence
// weighed again: a switch whose target's agent fails moves on to the
// next replica by that replica's own handover.
var errAgent = errors.New("replica agent failed")

// holding is what the leader knows of the address on a replica's link.
type holding int

const (
	holdUnknown  holding = iota // no answer yet in this leadership
	holdHeld                    // the agent said it holds the address
	holdReleased                // the agent said it does not
)

// agentView is the leader's latest knowledge of one agent.
type agentView struct {
	hold holding
	// answering: the latest call got an answer; failedAt is when the
	// latest call failed (zero while answering).
	answering bool
	// linkUp: the agent's latest poll said its service link has a
	// carrier (the replica's NIC is connected).
	linkUp   bool
	failedAt time.Time
}

// agentConn is the leader's client of one agent.
type agentConn struct {
	service, replica, addr string
	c                      AddressAgent
	cancel                 context.CancelFunc
	done                   chan struct{}
}

// agentSet holds the leadership's agent clients and what they last said.
// The loop adds and removes clients; pollers and background jobs update
// views, so the views have a lock of their own.
type agentSet struct {
	conns map[string]*agentConn // replica key; loop only

	mu      sync.Mutex
	clients map[string]AddressAgent // replica key -> conns[key].c, for calls off the loop
	views   map[string]agentView
}

func newAgentSet() *agentSet {
	return &agentSet{conns: map[string]*agentConn{}, clients: map[string]AddressAgent{}, views: map[string]agentView{}}
}

func (s *agentSet) view(key string) agentView {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.views[key]
}

// learn records the outcome of one call on the agent of key: hold is
// what it said (ignored on error). It reports whether the view changed.
func (s *agentSet) learn(key string, hold holding, err error, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.views[key]
	old := v
	if err != nil {
		v.answering = false
		if old.answering || v.failedAt.IsZero() {
			v.failedAt = now
		}
	} else {
		v.answering, v.failedAt, v.hold = true, time.Time{}, hold
	}
	s.views[key] = v
	return v.answering != old.answering || v.hold != old.hold
}

// learnLink records whether the agent's service link has a carrier.
func (s *agentSet) learnLink(key string, up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.views[key]
	v.linkUp = up
	s.views[key] = v
}

// syncAgents makes one client per address-handover replica of the
// services, with a poller, and ends those no longer wanted. Without an
// AgentDialer no client is made: such replicas are never available.
func (r *run) syncAgents(ctx context.Context, services []fsm.Service) {
	want := map[string][3]string{}
	for _, s := range services {
		for _, sp := range s.Spec.Replicas {
			if sp.AddressHandover() {
				want[replicaKey(s.Spec.Name, sp.Name)] = [3]string{s.Spec.Name, sp.Name, sp.Agent}
			}
		}
	}
	for key, ac := range r.agents.conns {
		if w, ok := want[key]; !ok || w[2] != ac.addr {
			ac.stop()
			delete(r.agents.conns, key)
			r.agents.mu.Lock()
			delete(r.agents.views, key)
			delete(r.agents.clients, key)
			r.agents.mu.Unlock()
			r.c.m.agentForget(ac.service, ac.replica)
		}
	}
	if r.c.cfg.Agents == nil {
		return
	}
	for key, w := range want {
		if _, ok := r.agents.conns[key]; ok {
			continue
		}
		c, err := r.c.cfg.Agents(w[1], w[2])
		if err != nil {
			if !r.reported[key+"/agent"] {
				r.reported[key+"/agent"] = true
				r.c.log.Error("replica agent client not made", "service", w[0], "replica", w[1], "agent", w[2], "err", err)
			}
			continue
		}
		pctx, cancel := context.WithCancel(ctx)
		ac := &agentConn{service: w[0], replica: w[1], addr: w[2], c: c, cancel: cancel, done: make(chan struct{})}
		r.agents.conns[key] = ac
		r.agents.mu.Lock()
		r.agents.clients[key] = c
		r.agents.mu.Unlock()
		go r.pollAgent(pctx, key, ac)
	}
}

func (ac *agentConn) stop() {
	ac.cancel()
	<-ac.done
	ac.c.Close()
}

func (r *run) stopAgents() {
	for key, ac := range r.agents.conns {
		ac.stop()
		delete(r.agents.conns, key)
		r.c.m.agentForget(ac.service, ac.replica)
	}
	r.agents.mu.Lock()
	clear(r.agents.clients)
	clear(r.agents.views)
	r.agents.mu.Unlock()
}

// pollAgent asks the agent what it holds, at once and then every
// AgentPollInterval, and wakes the loop when the answer changes.
func (r *run) pollAgent(ctx context.Context, key string, ac *agentConn) {
	defer close(ac.done)
	t := time.NewTicker(r.c.cfg.AgentPollInterval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, r.c.cfg.HandoverTimeout)
		st, err := ac.c.State(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		hold := holdReleased
		if st.Held {
			hold = holdHeld
		}
		before := r.agents.view(key)
		if err == nil {
			r.agents.learnLink(key, st.LinkUp)
		}
		if r.agents.learn(key, hold, err, r.c.now()) {
			if err != nil {
				r.c.log.Warn("replica agent does not answer", "service", ac.service, "replica", ac.replica, "agent", ac.addr, "err", err)
			} else if !before.answering {
				r.c.log.Info("replica agent answers", "service", ac.service, "replica", ac.replica, "agent", ac.addr, "held", st.Held)
			}
			r.c.m.agentAnswering(ac.service, ac.replica, err == nil)
			select {
			case r.kick <- struct{}{}:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// agentFence is the fence of a command sent now for generation gen.
func (r *run) agentFence(gen uint64) replicaagent.Fence {
	return replicaagent.Fence{Term: r.c.cl.Term(), Generation: gen}
}

// agentCall claims (claim true) or releases the service address on the
// replica's link through its agent, bounded by HandoverTimeout. Any
// failure wraps errAgent. Safe off the loop.
func (r *run) agentCall(ctx context.Context, svc fsm.Service, spec fsm.ReplicaSpec, gen uint64, claim bool) (replicaagent.Result, error) {
	key := replicaKey(svc.Spec.Name, spec.Name)
	action := "release"
	if claim {
		action = "claim"
	}
	r.c.m.action(svc.Spec.Name, action)
	ac, ok := r.agentConn(key)
	if !ok {
		return replicaagent.Result{}, fmt.Errorf("%s %s: %w: no client for its agent %s", action, spec.Name, errAgent, spec.Agent)
	}
	ap, err := netip.ParseAddrPort(svc.Spec.Address)
	if err != nil {
		return replicaagent.Result{}, fmt.Errorf("%s %s: service address %q: %w", action, spec.Name, svc.Spec.Address, err)
	}
	cctx, cancel := context.WithTimeout(ctx, r.c.cfg.HandoverTimeout)
	defer cancel()
	var res replicaagent.Result
	if claim {
		res, err = ac.Claim(cctx, r.agentFence(gen), ap.Addr())
	} else {
		res, err = ac.Release(cctx, r.agentFence(gen), ap.Addr())
	}
	hold := holdReleased
	if res.Held {
		hold = holdHeld
	}
	if r.agents.learn(key, hold, err, r.c.now()) {
		r.c.m.agentAnswering(svc.Spec.Name, spec.Name, err == nil)
	}
	if err != nil {
		r.c.m.failed(svc.Spec.Name, action)
		r.c.log.Warn("replica agent call failed", "service", svc.Spec.Name, "replica", spec.Name, "action", action,
			"agent", spec.Agent, "err", err)
		return res, fmt.Errorf("%s %s: %w: %w", action, spec.Name, errAgent, err)
	}
	r.c.log.Debug("replica agent call", "service", svc.Spec.Name, "replica", spec.Name, "action", action,
		"changed", res.Changed, "took_us", res.TookMicros)
	return res, nil
}

// agentConn is the client of key's agent (nil, false without one). The
// loop owns the map, but the client itself is safe for any goroutine:
// callers off the loop get it from the loop before they start.
func (r *run) agentConn(key string) (AddressAgent, bool) {
	r.agents.mu.Lock()
	defer r.agents.mu.Unlock()
	c, ok := r.agents.clients[key]
	return c, ok
}

// onAddress reports whether a replica may be on the service address,
// given whether its service NIC is connected: a NIC replica is whenever
// its NIC is; an address-handover replica only if its agent has not said
// it released the address.
func (r *run) onAddress(service string, spec fsm.ReplicaSpec, nicConnected bool) bool {
	if !nicConnected || !spec.AddressHandover() {
		return nicConnected
	}
	return r.agents.view(replicaKey(service, spec.Name)).hold != holdReleased
}

// agentLinked reports whether an address-handover replica's agent
// answers and its latest poll found the service link connected: a new
// leader knows a standby is linked before its platform session opens.
func (r *run) agentLinked(service string, spec fsm.ReplicaSpec) bool {
	if !spec.AddressHandover() {
		return false
	}
	v := r.agents.view(replicaKey(service, spec.Name))
	return v.answering && v.linkUp
}

// holdsAddress reports whether the agent of an address-handover replica
// said it holds the address.
func (r *run) holdsAddress(service, replica string) bool {
	return r.agents.view(replicaKey(service, replica)).hold == holdHeld
}

// agentDown reports whether an address-handover replica's agent failed
// its latest call: such a replica cannot take the address now.
func (r *run) agentDown(service string, spec fsm.ReplicaSpec) bool {
	if !spec.AddressHandover() {
		return false
	}
	if r.c.cfg.Agents == nil {
		return true
	}
	v := r.agents.view(replicaKey(service, spec.Name))
	return !v.answering && !v.failedAt.IsZero()
}

// fenceInBackground disconnects the NIC of a replica whose agent
// released the address: the platform's fence, off the critical path. A
// replica that was exploited may say it released the address and keep
// it; only the NIC detach takes it off the service network for sure.
func (r *run) fenceInBackground(ctx context.Context, svc fsm.Service, replica string, spec fsm.ReplicaSpec, d driver.Driver) {
	name := svc.Spec.Name
	r.background(ctx, name, replica, job{detaches: true}, func(ctx context.Context) nicAfter {
		if r.do(name, "detach", spec, func() error { return d.Detach(ctx, spec) }) != nil {
			return nicUnknown
		}
		return nicDetached
	})
}

// convergeAddressStandby keeps an address-handover standby warm: running,
// its agent holding no address, and then its NIC connected, so that a
// switch to it is one claim. It says whether the replica is known off the
// address. An agent that does not release is fenced by the platform
// instead (its NIC detached): a standby that may hold the address is
// never left on the service network.
func (r *run) convergeAddressStandby(ctx context.Context, svc fsm.Service, rs fsm.ReplicaState, spec fsm.ReplicaSpec,
	d driver.Driver, o driver.Observation) detachState {
	name := svc.Spec.Name
	key := replicaKey(name, rs.Name)
	if o.Power != driver.PowerOn {
		// Its agent runs only while it does: start it (with its NIC as it
		// is set to start; the guest holds no address before a claim).
		r.background(ctx, name, rs.Name, job{}, func(ctx context.Context) nicAfter {
			_ = r.do(name, "power-on", spec, func() error { return d.PowerOn(ctx, spec, serviceAddr(svc)) })
			return nicUnknown
		})
		if o.NICConnected {
			return notDetached
		}
		return detached
	}
	v := r.agents.view(key)
	if v.hold != holdReleased {
		gen := svc.Generation
		connected := o.NICConnected
		r.background(ctx, name, rs.Name, job{detaches: connected}, func(ctx context.Context) nicAfter {
			if _, err := r.agentCall(ctx, svc, spec, gen, false); err == nil {
				return nicUnknown
			}
			if !connected {
				return nicDetached
			}
			if r.do(name, "detach", spec, func() error { return d.Detach(ctx, spec) }) != nil {
				return nicUnknown
			}
			return nicDetached
		})
		if o.NICConnected {
			return pending
		}
		return detached
	}
	if !o.NICConnected {
		r.background(ctx, name, rs.Name, job{attaches: true}, func(ctx context.Context) nicAfter {
			_ = r.do(name, "attach", spec, func() error { return d.Attach(ctx, spec, serviceAddr(svc)) })
			return nicUnknown // linked, but off the address: not "attached" in the loop's sense
		})
	}
	return detached
}

// claimForActive has the active's agent claim the address when the
// active's NIC is connected but its agent does not hold it (a new leader
// finding the agent restarted, or a claim lost with a leadership), in
// the background like the active's attach.
func (r *run) claimForActive(ctx context.Context, svc fsm.Service, act string, spec fsm.ReplicaSpec) {
	name := svc.Spec.Name
	gen := svc.Generation
	r.background(ctx, name, act, job{attaches: true}, func(ctx context.Context) nicAfter {
		if _, err := r.agentCall(ctx, svc, spec, gen, true); err != nil {
			return nicUnknown
		}
		return nicAttached
	})
}
