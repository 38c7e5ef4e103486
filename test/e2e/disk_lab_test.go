package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/lab"
	"github.com/ars-project/ars/test/harness"
)

// diskLabPrefix names this test's lab, apart from the other lab tests'.
const diskLabPrefix = "arsdsk"

// The leader's disk fails under attack, in the lab with node disks of
// their own (ext4 on loop devices): first frozen (every write and fsync
// blocks; the leader's raft loop hangs in its log write while its
// replication still reaches the followers), then filled to the last
// byte. Each time an attack on the active replica is switched within the
// design's bound by another leader, the node with the bad disk reports it
// and leads no more; after the disk recovers the node takes part again,
// and after a crash (SIGKILL) it comes back from what that disk holds
// with the same state digest as the others.
func TestProcessLabLeaderDiskFailsUnderAttack(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the lab")
	}
	needLabHost(t)
	ctx := context.Background()
	nodes := []string{"n1", "n2", "n3"}
	tmp, logf := labTemp(t, diskLabPrefix)
	cfg := lab.Config{Prefix: diskLabPrefix, StateDir: filepath.Join(tmp, "lab"),
		Replicas: fourVMReplicas(),
		Nodes:    nodes, Agent: arsBinary(t), Service: "dns", NodeDisks: true,
		Probe:  fsm.ProbeSpec{Confirm: fsm.ConfirmQuorum},
		Policy: fsm.PolicySpec{MaxSwitches: 1000},
		// A killed leader cannot log out: its session must expire, as
		// on a real vCenter, before the lab counts as ready again.
		VCenterSessionTimeout: 5 * time.Second, VCenterKeepAlive: 1500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logf, nil))}
	upCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	l, err := lab.Up(upCtx, cfg)
	cancel()
	if err != nil {
		t.Fatalf("lab up: %v\nlab log:\n%s", err, labLogTail(logf.Name()))
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range l.Nodes() {
				t.Logf("--- %s (pid %d) log tail, without raft's repeated refusals:\n%s", n.Name, n.Pid, quietLogTail(n.Log))
			}
			t.Logf("--- lab log tail:\n%s", labLogTail(logf.Name()))
		}
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	ready := func(what string) {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		if err := l.ChaosReady(rctx); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	status := func(node string) (api.Status, error) {
		c, err := l.Client(node, "reader")
		if err != nil {
			return api.Status{}, err
		}
		defer c.Close()
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return c.StatusDigest(sctx)
	}

	// breakLeader fails the leader's disk, attacks the active replica,
	// and checks the switch and the bad node; it returns that node.
	breakLeader := func(fault, kind, want string, breakDisk, mend func(string) error) string {
		t.Helper()
		ready("before the " + fault)
		bad, err := l.Leader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := breakDisk(bad); err != nil {
			t.Fatalf("%s on %s: %v", fault, bad, err)
		}
		mended := false
		t.Cleanup(func() {
			if !mended {
				_ = mend(bad)
			}
		})
		start := time.Now()
		resp, err := l.Attack(ctx, lab.AttackRequest{Kind: kind, Active: true, Wait: true, Timeout: upgradeSwitchBound.String()})
		took := time.Since(start)
		if err != nil {
			t.Fatalf("%s with %s's disk %s: %v", kind, bad, fault, err)
		}
		if resp.Event == nil || resp.Event.Switch == nil || resp.Error != "" {
			t.Fatalf("%s on %s with leader %s's disk %s: no switch within %s: %+v (%s)", kind, resp.Target, bad, fault, upgradeSwitchBound, resp.Event, resp.Error)
		}
		sw := *resp.Event.Switch
		if sw.Reason != kind || sw.From != resp.Target || sw.To == sw.From {
			t.Fatalf("%s on %s: switch %+v; want a %s switch away from it", kind, resp.Target, sw, kind)
		}
		t.Logf("%s on %s with leader %s's disk %s: switched to %s (the attack call returned after %s)", kind, resp.Target, bad, fault, sw.To, took.Round(time.Millisecond))
		harness.WaitFor(t, 30*time.Second, bad+" reports its disk and leads no more", func() error {
			st, err := status(bad)
			if err != nil {
				return err
			}
			if st.Disk == nil || st.Disk.Healthy || !strings.Contains(st.Disk.Cause, want) {
				return fmt.Errorf("%s disk %+v; want unhealthy naming %q", bad, st.Disk, want)
			}
			if leader, err := l.Leader(ctx); err != nil || leader == bad {
				return fmt.Errorf("leader %q (%v)", leader, err)
			}
			return nil
		})
		if err := mend(bad); err != nil {
			t.Fatalf("mend %s's disk: %v", bad, err)
		}
		mended = true
		return bad
	}
	frozen := breakLeader("frozen", "dos", "stalled", l.FreezeNodeDisk, l.ThawNodeDisk)
	ready("after the thaw of " + frozen + "'s disk")
	full := breakLeader("full", "exploit", "free space", l.FillNodeDisk, l.FreeNodeDisk)
	ready("after freeing " + full + "'s disk")

	// A crash after the recovery: each node comes back from its disk.
	for _, n := range []string{frozen, full} {
		if err := l.KillNode(n); err != nil {
			t.Fatal(err)
		}
		if err := l.StartNode(n); err != nil {
			t.Fatal(err)
		}
		ready("after the restart of " + n)
	}
	harness.WaitFor(t, 30*time.Second, "every node at one index with one digest", func() error {
		return oneState(ctx, nodes, func(_ context.Context, n string) (api.Status, error) { return status(n) })
	})
}

// quietLogTail is a node log's tail without the lines raft repeats every
// few hundred milliseconds towards a node that refuses its RPCs, which
// would push everything else out of a tail.
func quietLogTail(path string) string {
	b, _ := os.ReadFile(path)
	var keep []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, "failed to heartbeat to") && !strings.Contains(line, "failed to appendEntries to") {
			keep = append(keep, line)
		}
	}
	return tailOf(strings.Join(keep, "\n"), 12000)
}

func tailOf(s string, n int) string {
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

// fourVMReplicas are the in-process lab tests' replicas: the four
// implementations on VMs, two on Windows and two on Linux.
func fourVMReplicas() []lab.Replica {
	return []lab.Replica{
		{Name: "bind9-win", Impl: "bind9", OS: fsm.OSWindows},
		{Name: "unbound-win", Impl: "unbound", OS: fsm.OSWindows},
		{Name: "knot-lin", Impl: "knot-resolver", OS: fsm.OSLinux},
		{Name: "pdns-lin", Impl: "pdns-recursor", OS: fsm.OSLinux},
	}
}
