package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// monitorLeadership is the one leader loop: it starts leader work when
// Raft reports leadership and stops it, as a mirror image, when Raft
// reports its loss. Leader work never outlives leadership: stopping cancels
// its context and waits for every routine to return.
//
// It also stops leader work while the data directory is unhealthy, even
// though Raft may still call this node leader: a leader whose log write
// hangs on a stalled disk cannot tell Raft's loop anything until the
// write returns, while the others elect a new leader; its controller must
// not act beside theirs meanwhile. Leader work starts again once the disk
// recovers, if Raft then still says leader.
func (c *Cluster) monitorLeadership() {
	var (
		stop       func()
		done       chan struct{}
		raftLeader bool
	)
	stopLeader := func() {
		if stop == nil {
			return
		}
		stop()
		<-done
		stop, done = nil, nil
		c.setLeader(false)
		c.log.Info("leader work stopped")
	}
	startLeader := func() {
		if stop != nil {
			return
		}
		c.metrics.leaderChanges.Inc()
		ctx, cancel := context.WithCancel(c.ctx)
		stop, done = cancel, make(chan struct{})
		go func(done chan struct{}) {
			defer close(done)
			c.leaderLoop(ctx)
		}(done)
	}
	defer stopLeader()
	for {
		select {
		case <-c.ctx.Done():
			return
		case raftLeader = <-c.notifyCh:
		case <-c.diskHoldCh:
		}
		held := c.diskHold.Load()
		switch {
		case raftLeader && !held:
			startLeader()
		case raftLeader && stop != nil:
			c.log.Warn("data directory unhealthy: stopping leader work although raft still calls this node leader")
			stopLeader()
		default:
			stopLeader()
		}
	}
}

// holdLeaderWork stops (hold) or allows leader work by the disk's health.
func (c *Cluster) holdLeaderWork(hold bool) {
	c.diskHold.Store(hold)
	select {
	case c.diskHoldCh <- struct{}{}:
	default:
	}
}

func (c *Cluster) setLeader(v bool) {
	c.mu.Lock()
	c.isLeader = v
	if v {
		c.leaderSince = time.Now()
	}
	c.mu.Unlock()
}

// leaderLoop runs while this node is leader: a Barrier first (so the FSM
// holds every entry committed by earlier leaders), then the registered
// leader work and the membership reconciler.
func (c *Cluster) leaderLoop(ctx context.Context) {
	c.log.Info("became leader; waiting for barrier")
	for {
		err := c.raft.Barrier(2 * c.cfg.Raft.ElectionTimeout).Error()
		if err == nil {
			break
		}
		c.log.Warn("barrier failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	c.setLeader(true)
	c.markEstablished()
	c.log.Info("leader work started", "term", c.raft.CurrentTerm())

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.recordLeadership(ctx)
	}()
	for _, lf := range c.leaderFns {
		wg.Add(1)
		go func(lf namedLeaderFunc) {
			defer wg.Done()
			lf.fn(ctx)
			c.log.Debug("leader routine stopped", "routine", lf.name)
		}(lf)
	}
	c.reconcileLoop(ctx)
	wg.Wait()
}

// reconcileLoop brings the Raft configuration in line with gossip on every
// membership event and on a timer.
func (c *Cluster) reconcileLoop(ctx context.Context) {
	changed, unsubscribe := c.members.subscribe()
	defer unsubscribe()
	tick := time.NewTicker(c.cfg.Membership.ReconcileInterval)
	defer tick.Stop()
	// Servers in the Raft configuration that gossip does not know are
	// timed from the moment this leader first noticed.
	unknownSince := map[raft.ServerID]time.Time{}
	for {
		// Each pass makes at most one configuration change; repeat until
		// nothing is left to do (bounded, in case a change keeps failing).
		for i := 0; i < 16 && c.reconcileMembers(unknownSince); i++ {
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

// reconcileMembers makes at most one change to the Raft configuration and
// reports whether it made one.
func (c *Cluster) reconcileMembers(unknownSince map[raft.ServerID]time.Time) bool {
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		c.log.Warn("reconcile: read raft configuration", "err", err)
		return false
	}
	cfg := f.Configuration()
	inRaft := map[raft.ServerID]raft.Server{}
	voters, healthy := 0, 0
	for _, s := range cfg.Servers {
		inRaft[s.ID] = s
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if m, ok := c.members.get(string(s.ID)); ok && m.State == memberlist.StateAlive || s.ID == raft.ServerID(c.cfg.NodeName) {
			healthy++
		}
	}

	// Add alive members that are missing, or whose address changed.
	for _, m := range c.members.list() {
		if m.State != memberlist.StateAlive || !m.MetaOK || m.Meta.Raft == "" {
			continue
		}
		id := raft.ServerID(m.Name)
		if s, ok := inRaft[id]; ok && s.Address == raft.ServerAddress(m.Meta.Raft) {
			continue
		}
		c.log.Info("adding voter", "member", m.Name, "raft", m.Meta.Raft)
		if err := c.raft.AddVoter(id, raft.ServerAddress(m.Meta.Raft), 0, 5*time.Second).Error(); err != nil {
			c.log.Warn("add voter failed", "member", m.Name, "err", err)
			return false
		}
		c.members.touch()
		return true
	}

	// Remove members that left; reap failed ones only after the timeout and
	// only while a healthy majority of the smaller configuration remains.
	now := time.Now()
	for _, s := range cfg.Servers {
		if s.ID == raft.ServerID(c.cfg.NodeName) {
			continue
		}
		m, known := c.members.get(string(s.ID))
		switch {
		case known && m.State == memberlist.StateLeft:
			return c.removeServer(s.ID, "left the cluster")
		case known && m.State == memberlist.StateAlive, known && m.State == memberlist.StateSuspect:
			delete(unknownSince, s.ID)
			continue
		}
		failedSince := m.Changed
		if !known {
			if _, ok := unknownSince[s.ID]; !ok {
				unknownSince[s.ID] = now
			}
			failedSince = unknownSince[s.ID]
		}
		if now.Sub(failedSince) < c.cfg.Membership.ReapFailedAfter {
			continue
		}
		after := voters
		if s.Suffrage == raft.Voter {
			after--
		}
		if after < c.cfg.Membership.MinVoters || healthy < after/2+1 {
			c.log.Warn("failed member not reaped: removal would leave too few voters",
				"member", s.ID, "voters_after", after, "healthy", healthy, "min_voters", c.cfg.Membership.MinVoters)
			continue
		}
		return c.removeServer(s.ID, "failed for longer than reap_failed_after")
	}
	return false
}

func (c *Cluster) removeServer(id raft.ServerID, why string) bool {
	c.log.Info("removing server", "member", id, "reason", why)
	if err := c.raft.RemoveServer(id, 0, 5*time.Second).Error(); err != nil {
		c.log.Warn("remove server failed", "member", id, "err", err)
		return false
	}
	c.members.touch()
	return true
}
