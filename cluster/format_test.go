package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ars-project/ars/fsm"
)

// A rolling upgrade: while one server reads only the base format level
// (as a node of 0.1.0, which advertises none), the leader refuses an entry
// of a newer level with ErrNeedsUpgrade naming that server, writes
// nothing, and keeps taking base-level entries; the node's status says
// which server holds the level back. Once the server runs the new version
// (restarted with the current level), the same entry is written.
func TestRollingUpgradeGatesNewEntries(t *testing.T) {
	h := newHarness(t, "n1", "n2", "n3")
	cfgs := []Config{h.config("n1", 3, nil), h.config("n2", 3, nil), h.config("n3", 3, nil)}
	cfgs[2].formatLevel = fsm.BaseLevel
	n1 := h.start(cfgs[0])
	for _, cfg := range cfgs[1:] {
		cfg.Join = []string{n1.cfg.GossipBind}
		h.start(cfg)
	}
	leader := h.waitLeader(20 * time.Second)
	ctx := context.Background()
	applyOK(t, leader, serviceCmd(t, "dns", "a", "b")) // retried if leadership moves meanwhile
	leader = h.waitLeader(20 * time.Second)
	request, err := fsm.Encode(0, fsm.SwitchRequest{ID: "r-1", Service: "dns", Source: "ops", At: 1})
	if err != nil {
		t.Fatal(err)
	}
	if fsm.Level(fsm.SwitchRequest{}) <= fsm.BaseLevel {
		t.Fatal("switch.request is a base-level entry; the test needs one of a newer level")
	}
	var status Status
	waitFor(t, 10*time.Second, "n3's level known to the leader", func() error {
		leader = h.waitLeader(10 * time.Second)
		if status = leader.c.Status(); !slices.Equal(status.Format.Behind, []string{"n3 (level 1)"}) && leader.name != "n3" {
			return fmt.Errorf("format status %+v", status.Format)
		}
		return nil
	})
	if leader.name != "n3" && (status.Format.Cluster != fsm.BaseLevel || status.Format.Node != fsm.FormatLevel) {
		t.Fatalf("format status %+v", status.Format)
	}
	before := leader.c.Status().AppliedIndex
	_, err = leader.c.Apply(ctx, request)
	if !errors.Is(err, fsm.ErrNeedsUpgrade) || fsm.Code(err) != fsm.CodeNeedsUpgrade {
		t.Fatalf("switch.request with n3 at level 1: %v", err)
	}
	if after := leader.c.Status().AppliedIndex; after != before {
		t.Fatalf("a refused entry moved the log %d -> %d", before, after)
	}
	if _, err := leader.c.Apply(ctx, serviceCmd(t, "dns2", "a", "b")); err != nil {
		t.Fatalf("a base-level entry while n3 is behind: %v", err)
	}

	// Upgrade n3: restart it at the current level.
	old := h.nodes["n3"]
	h.stop(old)
	cfg := old.cfg
	cfg.formatLevel = 0
	h.start(cfg)
	waitFor(t, 20*time.Second, "switch.request written once n3 is upgraded", func() error {
		l := h.waitLeader(10 * time.Second)
		if st := l.c.Status().Format; st.Cluster != fsm.FormatLevel || len(st.Behind) != 0 {
			return fmt.Errorf("format status %+v", st)
		}
		_, err := l.c.Apply(ctx, request)
		return err
	})
	h.sameState(20 * time.Second)
}
