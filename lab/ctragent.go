package lab

import (
	"context"
	"net/netip"
	"time"

	"github.com/ars-project/ars/replicaagent"
)

// The lab's own view of a container replica in address handover: what
// its service link holds, read in the container's namespace (the lab
// never asks the agent what it holds), and the rogue's claims. It uses
// the agent's own container addresser, fed with the container's process
// as the lab's event follower last saw it.

// containerWatchTick is how often the lab reads a container replica's
// service link for the hold and drop events (no address notifications
// reach it from a namespace that changes with every start).
const containerWatchTick = 5 * time.Millisecond

// labPids is replicaagent.ContainerEngine on what the lab followed of
// one container replica (a view asks only for its own container).
type labPids struct {
	l       *Lab
	replica string
}

func (p labPids) Pid(context.Context, string) (int, error) { return p.l.ctrs.pid(p.replica), nil }

// ctrView is the lab's addresser of a container replica with an agent
// (nil for any other replica).
func (l *Lab) ctrView(replica string) *replicaagent.Container {
	if !l.Net.ContainerAgent(replica) {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctrViews == nil {
		l.ctrViews = map[string]*replicaagent.Container{}
	}
	v := l.ctrViews[replica]
	if v == nil {
		v = &replicaagent.Container{Name: ContainerName(replica), Subnet: l.Net.Topology().Subnet,
			Address: netip.PrefixFrom(l.Net.ReplicaAddr(replica), 32), Engine: labPids{l, replica}}
		l.ctrViews[replica] = v
	}
	return v
}

// holds reads whether an address-handover replica's service link holds
// the service address now.
func (l *Lab) holds(replica string) (bool, error) {
	if v := l.ctrView(replica); v != nil {
		return v.Held()
	}
	return l.Net.HoldsService(replica)
}

// watchContainer calls fn with whether the container replica's service
// link holds the service address, once at the start and whenever that
// changes, until the lab ends; it reads every containerWatchTick, so an
// event is at most that late. A read that fails is passed as err once
// (held false) until one succeeds.
func (l *Lab) watchContainer(replica string, fn func(held bool, err error)) {
	v := l.ctrView(replica)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(containerWatchTick)
		defer t.Stop()
		var last *bool
		failed := false
		for {
			held, err := v.Held()
			switch {
			case err != nil && !failed:
				fn(false, err)
				failed, last = true, nil
			case err == nil && (last == nil || *last != held):
				fn(held, nil)
				failed, last = false, &held
			}
			select {
			case <-l.ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// closeCtrViews closes the namespaces the lab's views hold.
func (l *Lab) closeCtrViews() {
	l.mu.Lock()
	views := l.ctrViews
	l.ctrViews = nil
	l.mu.Unlock()
	for _, v := range views {
		v.Close()
	}
}
