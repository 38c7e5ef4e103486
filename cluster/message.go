package cluster

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/hashicorp/memberlist"
)

// MaxMessageSize bounds a message sent with SendToLeader: it must fit one
// gossip UDP packet with memberlist's framing and encryption overhead.
const MaxMessageSize = 1024

// MessageHandler receives a message sent to this node with SendToLeader. It
// runs on memberlist's packet goroutine (or the sender's, for a message a
// leader sends itself) and must not block; msg is the handler's to keep.
type MessageHandler func(msg []byte)

// SetMessageHandler installs the receiver of leader-bound messages (nil:
// drop them). It may be called at any time.
func (c *Cluster) SetMessageHandler(h MessageHandler) {
	if h == nil {
		c.msgHandler.Store(nil)
		return
	}
	c.msgHandler.Store(&h)
}

func (c *Cluster) deliver(msg []byte) {
	if h := c.msgHandler.Load(); h != nil {
		(*h)(slices.Clone(msg))
	}
}

// SendToLeader sends msg to the current leader as one best-effort gossip
// packet (UDP, encrypted and authenticated with the gossip key): no
// delivery guarantee, no order, no reply. It is for small, frequently
// repeated reports (followers' probe verdicts) where the next report
// replaces a lost one; anything that must not be lost goes through Apply.
// A leader sending to itself delivers in-process.
func (c *Cluster) SendToLeader(msg []byte) error {
	if len(msg) == 0 || len(msg) > MaxMessageSize {
		return fmt.Errorf("message of %d bytes: must be 1..%d", len(msg), MaxMessageSize)
	}
	_, id := c.raft.LeaderWithID()
	if id == "" {
		return ErrNoLeader
	}
	if string(id) == c.cfg.NodeName {
		c.deliver(msg)
		return nil
	}
	// The address comes from this node's own member table: the nodes
	// memberlist.Members returns are its live state, which its packet
	// handler rewrites concurrently. Raft, not gossip, says who leads: the
	// message goes out even if gossip here still calls the leader dead or
	// suspect. After a partition heals, a node's gossip can keep the
	// leader dead until its next push/pull sync (30 s); the chaos suite
	// saw both followers do so for 20 s, and a DoS verdict that needed
	// their votes waited 10 s for a quorum. Only a member that left is
	// not written to.
	m, ok := c.members.get(string(id))
	if !ok || m.State == memberlist.StateLeft {
		return fmt.Errorf("leader %s not in gossip: %w", id, ErrNoLeader)
	}
	ap, err := netip.ParseAddrPort(m.Addr)
	if err != nil {
		return fmt.Errorf("leader %s gossip address %q: %w", id, m.Addr, err)
	}
	to := &memberlist.Node{Name: m.Name, Addr: ap.Addr().AsSlice(), Port: ap.Port()}
	if err := c.ml.SendBestEffort(to, msg); err != nil {
		return fmt.Errorf("send to leader %s: %w", id, err)
	}
	return nil
}

// VoterCount is the number of voters in the Raft configuration (0 if it
// cannot be read); a majority of it is a quorum.
func (c *Cluster) VoterCount() int { return c.voterCount() }
