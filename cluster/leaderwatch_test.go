package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A leader whose process is gone (its Raft listener closed) is replaced
// at once: with heartbeat and election timeouts of 20 s, no follower's
// timer can fire within the test, so a new leader can only come from the
// successor's watch, which finds the leader's address refusing
// connections and campaigns.
func TestDeadLeaderReplacedBeforeTheHeartbeatTimeout(t *testing.T) {
	h := newHarness(t, "n1", "n2", "n3")
	var nodes []*testNode
	first := h.config("n1", 3, nil)
	first.Raft.HeartbeatTimeout, first.Raft.ElectionTimeout = 300*time.Millisecond, 300*time.Millisecond
	nodes = append(nodes, h.start(first))
	for _, name := range []string{"n2", "n3"} {
		cfg := h.config(name, 3, []string{first.GossipBind})
		// Long timeouts on the followers; the first leader comes from n1.
		cfg.Raft.HeartbeatTimeout, cfg.Raft.ElectionTimeout = 20*time.Second, 20*time.Second
		nodes = append(nodes, h.start(cfg))
	}
	leader := h.waitLeader(30 * time.Second)
	if leader.name != "n1" {
		// n1, the only node with short timeouts, normally wins the first
		// election; if not, hand it the leadership.
		waitFor(t, 20*time.Second, "n1 leading", func() error {
			if l, err := h.agreedLeader(); err == nil && l.name == "n1" {
				return nil
			} else if err == nil {
				_ = l.c.TransferLeadership(context.Background(), "n1")
			}
			return fmt.Errorf("n1 does not lead yet")
		})
		leader = nodes[0]
	}
	waitFor(t, 10*time.Second, "both followers hear from the leader", func() error {
		for _, n := range nodes[1:] {
			if name, _, _ := n.c.LeaderAPI(); name != "n1" {
				return fmt.Errorf("%s sees leader %q", n.name, name)
			}
		}
		return nil
	})
	killed := time.Now()
	h.stop(leader) // closes its Raft listener: connections are refused
	next := h.waitLeader(19 * time.Second)
	if waited := time.Since(killed); waited >= 20*time.Second {
		t.Fatalf("new leader %s after %v: not before the heartbeat timeout", next.name, waited)
	}
	if next.name != "n2" {
		t.Errorf("new leader %s; the successor is n2 (first voter by ID)", next.name)
	}
	if n := testutil.ToFloat64(nodes[1].c.metrics.fastElections); n != 1 {
		t.Errorf("n2 started %v fast elections, want 1", n)
	}
	if n := testutil.ToFloat64(nodes[2].c.metrics.fastElections); n != 0 {
		t.Errorf("n3 (not the successor) started %v fast elections", n)
	}
}
