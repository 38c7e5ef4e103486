package cluster

import (
	"fmt"
	"testing"
	"time"
)

func peerIDs(n *testNode) (map[string]bool, error) {
	peers, err := n.c.Peers()
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, p := range peers {
		ids[p.ID] = true
	}
	return ids, nil
}

func TestFailedVoterIsReapedOnlyWhenQuorumStaysSafe(t *testing.T) {
	h := newHarness(t, "n1", "n2", "n3", "n4")
	names := []string{"n1", "n2", "n3", "n4"}
	cfgs := make([]Config, len(names))
	for i, name := range names {
		cfgs[i] = h.config(name, 4, nil)
		cfgs[i].Membership = MembershipPolicy{ReapFailedAfter: 300 * time.Millisecond, MinVoters: 3, ReconcileInterval: 100 * time.Millisecond}
		if i > 0 {
			cfgs[i].Join = []string{h.nodes["n1"].cfg.GossipBind}
		}
		h.start(cfgs[i])
	}
	h.waitLeader(10 * time.Second)

	// Four voters, one dies: three remain, which is MinVoters and a healthy
	// majority, so the dead one is reaped.
	victim := h.follower()
	h.stop(victim)
	waitFor(t, 10*time.Second, victim.name+" reaped", func() error {
		ids, err := peerIDs(h.waitLeader(5 * time.Second))
		if err != nil {
			return err
		}
		if ids[victim.name] || len(ids) != 3 {
			return fmt.Errorf("peers %v", ids)
		}
		return nil
	})

	// Three voters, one more dies: removing it would leave two, below
	// MinVoters: it stays in the configuration.
	leader := h.waitLeader(10 * time.Second)
	second := h.follower()
	h.stop(second)
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		ids, err := peerIDs(leader)
		if err != nil {
			t.Fatal(err)
		}
		if !ids[second.name] {
			t.Fatalf("%s reaped although only %d voters would remain", second.name, len(ids))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
