package cluster

import (
	"errors"
	"net"
	"slices"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// dialer is what the leader watch needs of the Raft stream layer.
type dialer interface {
	Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error)
}

// watchLeader starts an election at once when the leader's process is
// gone, instead of waiting for a follower's heartbeat timeout (0.5–1 s
// with the default timings, then the election): every heartbeat interval
// (a tenth of the heartbeat timeout, the leader's own heartbeat period) a
// follower checks how long it has not heard from the leader; after three
// heartbeat periods of silence the designated successor — the first voter
// of the configuration by ID, the leader left out — dials the leader's
// Raft address, and dials again every period while the silence lasts (a
// dial blocks for at most two periods, so they never pile up). A refused
// connection means no process listens there any more (a crash, kill -9,
// a stop; a stopping node closes its Raft listener as soon as Raft
// stops, see stopRaft): the successor sends itself a TimeoutNow,
// the RPC of a leadership transfer, and campaigns at once; the voters
// grant the transfer flag even though their own heartbeat timers have
// not run out. A leader that is alive but slow, or a host that is down
// or cut off, does not refuse: nothing happens and the timeouts decide as
// before. Elections are safe whenever they start; a spurious one only
// costs a new term, and only a listener that is really gone starts one.
func (c *Cluster) watchLeader(d dialer) {
	period := c.cfg.Raft.HeartbeatTimeout / 10
	if period <= 0 {
		return
	}
	silence := 3 * period
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
		if c.raft.State() != raft.Follower {
			continue
		}
		addr, id := c.raft.LeaderWithID()
		lc := c.raft.LastContact()
		if addr == "" || lc.IsZero() || time.Since(lc) < silence {
			continue
		}
		if !c.successor(id) {
			continue
		}
		conn, err := d.Dial(addr, 2*period)
		if err == nil {
			conn.Close()
			continue
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			continue
		}
		if a, i := c.raft.LeaderWithID(); a != addr || i != id || c.raft.State() != raft.Follower {
			continue // an election has begun meanwhile
		}
		c.log.Info("leader's raft address refuses connections: campaigning now", "leader", string(id),
			"silent_for", time.Since(lc).Round(time.Millisecond))
		self := raft.ServerID(c.cfg.NodeName)
		selfAddr := raft.ServerAddress(c.cfg.RaftAdvertise)
		req := &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax,
			ID: []byte(self), Addr: c.trans.EncodePeer(self, selfAddr)}}
		if err := c.trans.TimeoutNow(self, selfAddr, req, &raft.TimeoutNowResponse{}); err != nil {
			c.log.Warn("could not start the election", "err", err)
			continue
		}
		c.metrics.fastElections.Inc()
	}
}

// successor reports whether this node is the one to campaign when leader
// is gone: the first voter of the Raft configuration by ID, leader left
// out. One successor, so that the survivors do not split the vote.
func (c *Cluster) successor(leader raft.ServerID) bool {
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	var ids []string
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter && s.ID != leader {
			ids = append(ids, string(s.ID))
		}
	}
	slices.Sort(ids)
	return len(ids) > 0 && ids[0] == c.cfg.NodeName
}
