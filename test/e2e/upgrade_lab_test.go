package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/lab"
	"github.com/ars-project/ars/test/harness"
)

// upgradeLabPrefix names this test's lab: apart from the other lab tests'
// (arse2e) and any lab an operator runs.
const upgradeLabPrefix = "arsupg"

// upgradeSwitchBound is how long an attack may go unanswered: the
// design's bound for an attack while one node is lost (docs/design.md
// §4.5, the chaos checker's attack-unanswered).
const upgradeSwitchBound = 10 * time.Second

// A rolling upgrade from the previous release under attack, in the lab:
// three agents of that release drive real DNS servers through the vCenter
// simulator and are upgraded one at a time to this build (followers
// first, then the last node after a leadership transfer), the active
// replica attacked during each upgrade, DoS and exploit in turn. Every
// attack is switched to another replica within upgradeSwitchBound; no
// node halts; the level-2 entry (dos_mode parallel) is refused while a
// node of the old release is in the cluster, and so are a switch's
// measurements (a switch under an upgraded leader with an old follower
// completes without them); once every node runs this build both are
// written, and every node ends with the same state.
func TestProcessLabRollingUpgradeUnderAttack(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the previous release and runs the lab")
	}
	needLabHost(t)
	oldBin := buildPreviousRelease(t)
	newBin := arsBinary(t)
	ctx := context.Background()
	nodes := []string{"n1", "n2", "n3"}
	tmp, logf := labTemp(t, upgradeLabPrefix)
	cfg := lab.Config{Prefix: upgradeLabPrefix, StateDir: filepath.Join(tmp, "lab"),
		Replicas: fourVMReplicas(),
		Nodes:    nodes, Agent: newBin, NodeAgents: map[string]string{}, Service: "dns",
		Probe: fsm.ProbeSpec{Confirm: fsm.ConfirmQuorum},
		// The damping's rate would hold back the test's attacks, not
		// what it is about; the mode is spelled out because 0.1.0's
		// default differs from this build's.
		Policy: fsm.PolicySpec{DoSMode: fsm.ModeMakeBeforeBreak, MaxSwitches: 1000},
		Logger: slog.New(slog.NewTextHandler(logf, nil))}
	for _, n := range nodes {
		cfg.NodeAgents[n] = oldBin
	}
	upCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	l, err := lab.Up(upCtx, cfg)
	cancel()
	if err != nil {
		t.Fatalf("lab up with three agents of %s: %v\nlab log:\n%s", previousRelease, err, labLogTail(logf.Name()))
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range l.Nodes() {
				t.Logf("--- %s (pid %d, %s) log tail:\n%s", n.Name, n.Pid, n.Agent, labLogTail(n.Log))
			}
			t.Logf("--- lab log tail:\n%s", labLogTail(logf.Name()))
			logs, _ := filepath.Glob(filepath.Join(l.Net.LogDir(), "*.log"))
			for _, p := range logs {
				if !strings.HasPrefix(filepath.Base(p), "node-") {
					t.Logf("--- %s tail:\n%s", filepath.Base(p), labLogTail(p))
				}
			}
		}
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	clients := map[string]*api.Client{}
	for _, n := range nodes {
		c, err := l.Client(n, "operator")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		clients[n] = c
	}
	upgraded := map[string]bool{}

	// running fails the test if an agent has exited: a node that halts on
	// an entry it cannot read exits.
	running := func() {
		t.Helper()
		for _, n := range l.Nodes() {
			if n.Pid == 0 {
				t.Fatalf("node %s (%s) is not running: it halted or exited", n.Name, n.Agent)
			}
		}
	}
	// settled waits for three alive voters that agree on a leader and have
	// applied its commit index, and returns the leader.
	settled := func(what string) string {
		t.Helper()
		var leader string
		harness.WaitFor(t, 60*time.Second, what, func() error {
			running()
			sts := map[string]api.Status{}
			for _, n := range nodes {
				st, err := clients[n].Status(ctx)
				if err != nil {
					return fmt.Errorf("%s: %w", n, err)
				}
				if st.Leader == "" || st.Voters != len(nodes) {
					return fmt.Errorf("%s: leader %q, %d voters", n, st.Leader, st.Voters)
				}
				sts[n] = st
			}
			l := sts[nodes[0]].Leader
			lst, ok := sts[l]
			if !ok {
				return fmt.Errorf("leader %q is not a node", l)
			}
			for n, st := range sts {
				if st.Leader != l {
					return fmt.Errorf("%s names leader %s, %s names %s", n, st.Leader, nodes[0], l)
				}
				if st.AppliedIndex < lst.CommitIndex {
					return fmt.Errorf("%s applied %d of %d", n, st.AppliedIndex, lst.CommitIndex)
				}
			}
			members, err := clients[l].Members(ctx)
			if err != nil {
				return err
			}
			alive := 0
			for _, m := range members {
				if m.Status == "alive" && m.Voter {
					alive++
				}
			}
			if alive != len(nodes) {
				return fmt.Errorf("%d alive voters: %+v", alive, members)
			}
			leader = l
			return nil
		})
		return leader
	}
	leader := settled("three agents of " + previousRelease)
	for _, n := range nodes {
		if st, _ := clients[n].Status(ctx); st.FormatLevel != 0 {
			t.Fatalf("%s advertises format level %d: not an agent of %s, which has no levels", n, st.FormatLevel, previousRelease)
		}
	}

	dosMode := func(n string) string {
		t.Helper()
		svc, err := clients[n].Service(ctx, cfg.Service)
		if err != nil {
			t.Fatalf("service on %s: %v", n, err)
		}
		return svc.Spec.Policy.DoSMode
	}
	parallel := l.ServiceSpec(cfg.Service)
	parallel.Policy.DoSMode = fsm.ModeParallel
	parallelSpec, err := json.Marshal(parallel)
	if err != nil {
		t.Fatal(err)
	}
	if fsm.Level(fsm.ServiceApply{Spec: parallel}) <= fsm.BaseLevel {
		t.Fatal("dos_mode parallel is a base-level entry; the test needs one of a newer level")
	}
	// askParallel: an operator sets the new mode while an old node
	// remains. An old leader refuses the value as invalid; an upgraded
	// one answers needs_upgrade naming the old nodes; no node holds it.
	askParallel := func(step string) {
		t.Helper()
		leader := settled(step)
		_, err := clients[leader].ApplyService(ctx, parallelSpec)
		var old []string
		for _, n := range nodes {
			if !upgraded[n] {
				old = append(old, n)
			}
		}
		switch {
		case err == nil:
			t.Fatalf("%s: dos_mode parallel accepted by leader %s with %v on %s", step, leader, old, previousRelease)
		case upgraded[leader] && !errors.Is(err, fsm.ErrNeedsUpgrade):
			t.Fatalf("%s: upgraded leader %s refused dos_mode parallel with %v; want needs_upgrade", step, leader, err)
		case upgraded[leader] && slices.ContainsFunc(old, func(n string) bool { return !strings.Contains(err.Error(), n) }):
			t.Fatalf("%s: needs_upgrade from %s does not name every old node %v: %v", step, leader, old, err)
		case !upgraded[leader] && !errors.Is(err, api.ErrBadRequest):
			t.Fatalf("%s: leader %s of %s refused dos_mode parallel with %v; want it refused as invalid", step, leader, previousRelease, err)
		}
		t.Logf("%s: leader %s (upgraded %v) refused dos_mode parallel: %v", step, leader, upgraded[leader], err)
		for _, n := range nodes {
			if m := dosMode(n); m != fsm.ModeMakeBeforeBreak {
				t.Fatalf("%s: %s has dos_mode %q while %v run %s", step, n, m, old, previousRelease)
			}
		}
	}
	// attack attacks the active replica once the service is steady, while
	// node (if any) is upgraded, and returns the switch that answered it.
	attack := func(kind, node string) fsm.SwitchRecord {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		_, err := l.Steady(sctx, time.Duration(fsm.DefaultMinDwell))
		cancel()
		if err != nil {
			st := l.Status(ctx)
			t.Fatalf("before the %s: %v\nreplicas: %+v", kind, err, st.Replicas)
		}
		upgradeDone := make(chan error, 1)
		if node != "" {
			t.Logf("upgrading %s to this build during the %s", node, kind)
			go func() { upgradeDone <- l.UpgradeNode(node, newBin) }()
		} else {
			upgradeDone <- nil
		}
		resp, err := l.Attack(ctx, lab.AttackRequest{Kind: kind, Active: true, Wait: true, Timeout: upgradeSwitchBound.String()})
		if uerr := <-upgradeDone; uerr != nil {
			t.Fatalf("upgrade of %s: %v", node, uerr)
		}
		if node != "" {
			upgraded[node] = true
		}
		if err != nil {
			t.Fatalf("%s on the active replica: %v", kind, err)
		}
		if resp.Event == nil || resp.Event.Switch == nil || resp.Error != "" {
			t.Fatalf("%s on %s (upgrading %q): no switch within %s: %+v (%s)", kind, resp.Target, node, upgradeSwitchBound, resp.Event, resp.Error)
		}
		sw := *resp.Event.Switch
		if sw.Reason != kind || sw.From != resp.Target || sw.To == sw.From {
			t.Fatalf("%s on %s: switch %+v; want a %s switch away from it", kind, resp.Target, sw, kind)
		}
		if kind == "dos" && sw.FromImpl == sw.ToImpl {
			t.Fatalf("DoS on %s: switched to %s of the same implementation %s", sw.From, sw.To, sw.ToImpl)
		}
		t.Logf("%s on %s (upgrading %q): switched to %s, %d queries lost, downtime %.1f ms", kind, sw.From, node, sw.To, resp.Event.Lost, resp.Event.Longest)
		return sw
	}
	measured := func(sw fsm.SwitchRecord) bool {
		return sw.OutageMS != nil || sw.ProbesSent != nil || sw.ProbesLost != nil || sw.ExposureMS != nil
	}

	askParallel("before the upgrade")
	var followers []string
	for _, n := range nodes {
		if n != leader {
			followers = append(followers, n)
		}
	}
	kinds := []string{"dos", "exploit"}
	for i, n := range followers {
		attack(kinds[i%2], n)
		askParallel(n + " upgraded")
		if st, err := clients[n].Status(ctx); err != nil || st.FormatLevel != fsm.FormatLevel {
			t.Fatalf("%s after its upgrade: level %d (%v); want this build's %d", n, st.FormatLevel, err, fsm.FormatLevel)
		}
	}

	// Leadership to an upgraded node (docs/operations.md, "Upgrades").
	last := nodes[slices.IndexFunc(nodes, func(n string) bool { return !upgraded[n] })]
	if leader = settled("before the leadership transfer"); leader == last {
		if err := clients[leader].TransferLeader(ctx, followers[0]); err != nil {
			t.Fatalf("transfer leadership from %s: %v", leader, err)
		}
		harness.WaitFor(t, 20*time.Second, "an upgraded leader", func() error {
			st, err := clients[followers[0]].Status(ctx)
			if err != nil {
				return err
			}
			if !upgraded[st.Leader] {
				return fmt.Errorf("leader %q", st.Leader)
			}
			return nil
		})
	}
	askParallel("leadership on an upgraded node")
	// An upgraded leader with a follower of the old release: the switch
	// is made and completed without the measurements it cannot read.
	if sw := attack("dos", ""); measured(sw) {
		t.Fatalf("a switch completed with %s's measurements while %s runs %s: %+v", leader, last, previousRelease, sw)
	}
	// ... because the level gate refused them, not for want of probes.
	leader = settled("after the switch under an upgraded leader")
	for _, n := range l.Nodes() {
		if b, err := os.ReadFile(n.Log); n.Name == leader && !strings.Contains(string(b), "switch done without its measurements: a node does not read them yet") {
			t.Fatalf("leader %s did not log that the level gate held its measurements back (%v)", leader, err)
		}
	}
	attack("exploit", last)

	leader = settled("every node upgraded")
	harness.WaitFor(t, 20*time.Second, "every node reads and writes this build's level", func() error {
		return atCurrentLevel(ctx, nodes, clients)
	})
	if _, err := clients[leader].ApplyService(ctx, parallelSpec); err != nil {
		t.Fatalf("dos_mode parallel after every node was upgraded: %v", err)
	}
	if sw := attack("dos", ""); !measured(sw) {
		t.Fatalf("every node upgraded, the switch completed without the leader's measurements: %+v", sw)
	}
	harness.WaitFor(t, 20*time.Second, "the new mode on every node, one state everywhere", func() error {
		running()
		for _, n := range nodes {
			if m := dosMode(n); m != fsm.ModeParallel {
				return fmt.Errorf("%s has dos_mode %q", n, m)
			}
		}
		return oneState(ctx, nodes, func(ctx context.Context, n string) (api.Status, error) { return clients[n].StatusDigest(ctx) })
	})
}
