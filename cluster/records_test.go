package cluster

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/ars-project/ars/fsm"
)

// records returns the leader and member records a node applied.
func records(c *Cluster) ([]fsm.Leader, []Event, []fsm.Member, error) {
	evs, _, err := c.Events(0, EventLogSize)
	if err != nil {
		return nil, nil, nil, err
	}
	var leaders []fsm.Leader
	var leaderEvs []Event
	var members []fsm.Member
	for _, e := range evs {
		switch e.Type {
		case fsm.CmdLeader:
			var l fsm.Leader
			if err := json.Unmarshal(e.Body, &l); err != nil {
				return nil, nil, nil, err
			}
			leaders, leaderEvs = append(leaders, l), append(leaderEvs, e)
		case fsm.CmdMember:
			var m fsm.Member
			if err := json.Unmarshal(e.Body, &m); err != nil {
				return nil, nil, nil, err
			}
			members = append(members, m)
		}
	}
	return leaders, leaderEvs, members, nil
}

// A leader records its leadership, in its own term, and then the changes
// of members it sees: a follower that stops is recorded as no longer
// alive, and as alive again when it comes back. Every node applies the
// same records.
func TestLeaderAndMemberRecords(t *testing.T) {
	h := newHarness(t, "n1", "n2", "n3")
	h.startCluster("n1", "n2", "n3")
	l := h.waitLeader(20 * time.Second)
	waitFor(t, 10*time.Second, "the leader's record", func() error {
		leaders, evs, _, err := records(l.c)
		if err != nil {
			return err
		}
		for i, r := range leaders {
			if r.Node == l.name && evs[i].Term == l.c.Term() {
				return nil
			}
		}
		return fmt.Errorf("records %+v", leaders)
	})

	f := h.follower()
	h.stop(f)
	waitFor(t, 30*time.Second, "a record of "+f.name+" gone", func() error {
		_, _, ms, err := records(l.c)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.Node == f.name && m.Status != "alive" {
				return nil
			}
		}
		return fmt.Errorf("member records %+v", ms)
	})
	f = h.restart(f)
	waitFor(t, 30*time.Second, "a record of "+f.name+" alive again", func() error {
		_, _, ms, err := records(l.c)
		if err != nil {
			return err
		}
		if n := len(ms); n > 0 && ms[n-1].Node == f.name && ms[n-1].Status == "alive" {
			return nil
		}
		return fmt.Errorf("member records %+v", ms)
	})
	h.sameState(20 * time.Second)
}

// Leader work subscribes to membership changes once per leadership; an
// ended subscription is dropped, so elections do not pile them up.
func TestMemberSubscriptionsEnd(t *testing.T) {
	tbl := newMemberTable()
	a, endA := tbl.subscribe()
	_, endB := tbl.subscribe()
	endB()
	tbl.touch()
	select {
	case <-a:
	default:
		t.Fatal("a live subscription was not signalled")
	}
	endA()
	tbl.mu.Lock()
	n := len(tbl.subs)
	tbl.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d subscriptions left after both ended", n)
	}
}

// Subscriptions end while gossip signals them (a leadership ending as a
// member changes): under the race detector, touch must not read the list
// that an ending subscription rewrites.
func TestMemberSubscriptionsEndWhileSignalled(t *testing.T) {
	tbl := newMemberTable()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2000 {
			tbl.touch()
		}
	}()
	for range 500 {
		_, endA := tbl.subscribe()
		_, endB := tbl.subscribe()
		endA()
		endB()
	}
	<-done
	tbl.mu.Lock()
	defer tbl.mu.Unlock()
	if len(tbl.subs) != 0 {
		t.Fatalf("%d subscriptions left after all ended", len(tbl.subs))
	}
}
