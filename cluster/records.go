package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/ars-project/ars/fsm"
)

// recordLeadership is leader work: it commits a leader record for this
// leadership, then a member record for every change of a member's gossip
// status or vote that it sees while it leads, so that the event stream
// and the notifications tell of leader and membership changes (readers
// resume them by index like any event). Members as they were when it
// took over are not recorded again: only changes. It never delays other
// leader work, which runs beside it, and a cluster that does not read the
// records yet (a voter below format level 4) gets none.
func (c *Cluster) recordLeadership(ctx context.Context) {
	c.record(ctx, fsm.Leader{Node: c.cfg.NodeName, At: time.Now().UnixNano()})
	changed, unsubscribe := c.members.subscribe()
	defer unsubscribe()
	tick := time.NewTicker(c.cfg.Membership.ReconcileInterval)
	defer tick.Stop()
	seen := memberStates(c.Members())
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed: // gossip, or a voter added or removed
		case <-tick.C:
		}
		now := memberStates(c.Members())
		for name, st := range now {
			if old, ok := seen[name]; ok && old == st {
				continue
			}
			c.record(ctx, fsm.Member{Node: name, Status: st.status, Voter: st.voter, At: time.Now().UnixNano()})
		}
		seen = now
	}
}

type memberState struct {
	status string
	voter  bool
}

func memberStates(ms []Member) map[string]memberState {
	out := make(map[string]memberState, len(ms))
	for _, m := range ms {
		out[m.Name] = memberState{status: m.Status, voter: m.Voter}
	}
	return out
}

// record commits one record. It is best effort: a record that the
// cluster's format level does not allow yet is skipped, and one that
// fails is logged and not tried again (what it tells is also in the logs
// and metrics).
func (c *Cluster) record(ctx context.Context, cmd fsm.Command) {
	data, err := fsm.Encode(c.raft.CurrentTerm(), cmd)
	if err == nil {
		_, err = c.Apply(ctx, data)
	}
	switch {
	case err == nil, ctx.Err() != nil:
	case errors.Is(err, fsm.ErrNeedsUpgrade):
		c.log.Debug("record skipped: a voter does not read it yet", "type", cmd.Type(), "err", err)
	default:
		c.log.Warn("record not committed", "type", cmd.Type(), "err", err)
	}
}
