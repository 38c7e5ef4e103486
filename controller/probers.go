package controller

import (
	"context"
	"log/slog"

	"github.com/ars-project/ars/controller/probe"
	"github.com/ars-project/ars/fsm"
)

// activation identifies what a prober's verdict is about: the service
// address and probe as specified, and the replica serving it since a given
// log index. Both the leader and the followers key their probers by it, so
// a verdict (and a follower's vote) always names the replica it was reached
// on, and a new active starts with a fresh verdict: a DoS on the replica
// that took over is detected on its own, not hidden behind the previous
// outage's DOWN.
type activation struct {
	addr    string
	spec    fsm.ProbeSpec
	replica string
	epoch   uint64 // the active replica's ReplicaState.Since
}

// activationOf returns the service's current activation; false when no
// replica is active (nothing to probe for).
func activationOf(s fsm.Service) (activation, bool) {
	act, ok := s.Active()
	if !ok {
		return activation{}, false
	}
	return activation{addr: s.Spec.Address, spec: s.Spec.Probe, replica: act.Name, epoch: act.Since}, true
}

// proberRun is one running prober.
type proberRun struct {
	act    activation
	p      *probe.Prober
	cancel context.CancelFunc
	done   chan struct{}
}

func (pr *proberRun) stop() {
	pr.cancel()
	<-pr.done
}

// startProber starts a prober for one activation of a service; base holds
// the clock, query function and metrics. It runs until ctx ends or stop.
func startProber(ctx context.Context, log *slog.Logger, service string, a activation, base probe.Config, onTransition func(probe.Transition)) (*proberRun, error) {
	cfg := base
	cfg.Service, cfg.Addr, cfg.Spec, cfg.OnTransition = service, a.addr, a.spec, onTransition
	p, err := probe.New(cfg)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	pr := &proberRun{act: a, p: p, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(pr.done)
		if err := p.Run(pctx); err != nil && pctx.Err() == nil {
			log.Error("prober stopped", "service", service, "err", err)
		}
	}()
	return pr, nil
}
