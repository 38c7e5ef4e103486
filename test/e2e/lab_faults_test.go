package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/lab"
)

// waitLabSteady waits until the lab is settled (labSettle) and returns
// its status.
func waitLabSteady(t *testing.T, bin, dir string) lab.Status {
	t.Helper()
	var st lab.Status
	labSettle(t, bin, dir, &st, "faults", 30*time.Second)
	return st
}

// waitSessions polls the lab's vCenter sessions until ok accepts them.
func waitSessions(t *testing.T, c *lab.Control, what string, ok func([]lab.VCSession) bool) []lab.VCSession {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ss, err := c.VCSessions(context.Background())
		if err == nil && ok(ss) {
			return ss
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: sessions %+v (%v)", what, ss, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestProcessLabFaults drives the chaos suite's faults through the CLI and
// the control socket on a lab of agent processes: SIGSTOP of the leader
// (another leads; resumed, the old one logs out of vCenter), termination
// of the leader's vCenter session (it logs in again by itself), a failing
// vCenter method during an exploit (the switch completes once the rule
// ends), and a partition of the leader (another leads; healed, three
// voters again).
func TestProcessLabFaults(t *testing.T) {
	needLabHost(t)
	bin := labBinary(t)
	dir := filepath.Join(t.TempDir(), "lab")
	t.Cleanup(func() { _ = exec.Command(bin, "down", "-prefix", labTestPrefix, "-state-dir", dir).Run() })
	labCLI(t, bin, dir, nil, "up")
	st := waitLabSteady(t, bin, dir)
	c := lab.NewControl(dir)
	leaderOnly := func(leader string) func([]lab.VCSession) bool {
		return func(ss []lab.VCSession) bool { return len(ss) == 1 && ss[0].Node == leader }
	}
	waitSessions(t, c, "one session, the leader's", leaderOnly(st.Leader))

	// SIGSTOP of the leader: another node leads; SIGCONT: the old leader
	// finds itself deposed and logs out.
	var out struct {
		Node      string `json:"node"`
		NewLeader string `json:"new_leader"`
	}
	labCLI(t, bin, dir, &out, "node", "stop", "-leader", "-wait")
	if out.Node != st.Leader || out.NewLeader == "" || out.NewLeader == st.Leader {
		t.Fatalf("stop of leader %s: %+v", st.Leader, out)
	}
	labCLI(t, bin, dir, nil, "node", "cont", out.Node)
	st = waitLabSteady(t, bin, dir)
	ss := waitSessions(t, c, "after the stopped leader resumed", leaderOnly(st.Leader))

	// An administrator terminates the session: the leader logs in again.
	if err := c.TerminateVCSessions(context.Background()); err != nil {
		t.Fatal(err)
	}
	old := ss[0].Key
	waitSessions(t, c, "a new session after termination", func(s []lab.VCSession) bool {
		return len(s) == 1 && s[0].Key != old && s[0].Node == st.Leader
	})

	// Reconfigure fails for 2 s: the exploit's switch completes after.
	if _, err := c.VCFault(context.Background(), lab.VCFaultRequest{Method: "ReconfigVM_Task", Fail: true, Duration: "2s"}); err != nil {
		t.Fatal(err)
	}
	var ex lab.AttackResponse
	labCLI(t, bin, dir, &ex, "attack", "exploit", "-active", "-wait", "-wait-timeout", "30s")
	if ex.Error != "" || ex.Event == nil || ex.Event.Switch == nil {
		t.Fatalf("exploit under a failing ReconfigVM_Task: %+v", ex)
	}
	t.Logf("exploit with reconfigure failing for 2 s: switched %s -> %s, %d lost", ex.Event.Switch.From, ex.Event.Switch.To, ex.Event.Lost)

	// A delayed link on a follower (node degrade): a call to its API
	// waits at least a round trip of the delay, and a DoS still switches
	// (the leader and the other follower confirm it); node clear ends it.
	st = waitLabSteady(t, bin, dir)
	slow := ""
	for _, n := range st.Nodes {
		if !n.Leader {
			slow = n.Name
			break
		}
	}
	labCLI(t, bin, dir, nil, "node", "degrade", slow, "-delay", "150ms", "-jitter", "20ms")
	start := time.Now()
	if b, err := exec.Command(bin, "exec", "-prefix", labTestPrefix, "-state-dir", dir, "-node", slow, "--", "ars", "status", "-o", "json").CombinedOutput(); err != nil {
		t.Fatalf("ars status on %s under a delayed link: %v: %s", slow, err, b)
	}
	if took := time.Since(start); took < 260*time.Millisecond {
		t.Fatalf("ars status on %s took %s under 150±20 ms both ways; want at least one delayed round trip (260 ms)", slow, took)
	}
	var dos lab.AttackResponse
	labCLI(t, bin, dir, &dos, "attack", "dos", "-active", "-wait", "-wait-timeout", "30s")
	if dos.Error != "" || dos.Event == nil || dos.Event.Switch == nil {
		t.Fatalf("DoS beside a delayed follower link: %+v", dos)
	}
	labCLI(t, bin, dir, nil, "node", "clear", slow)
	t.Logf("DoS with %s's link delayed 150±20 ms: switched %s -> %s, downtime %.1f ms", slow, dos.Event.Switch.From, dos.Event.Switch.To, dos.Event.Longest)

	// A partition of the leader: another leads; healed, all three vote.
	st = waitLabSteady(t, bin, dir)
	labCLI(t, bin, dir, &out, "node", "partition", "-leader", "-wait")
	if out.Node != st.Leader || out.NewLeader == "" || out.NewLeader == st.Leader {
		t.Fatalf("partition of leader %s: %+v", st.Leader, out)
	}
	labCLI(t, bin, dir, nil, "node", "heal", out.Node)
	if err := c.Heal(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitLabSteady(t, bin, dir)
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := exec.Command(bin, "exec", "-prefix", labTestPrefix, "-state-dir", dir, "-node", out.Node, "--", "ars", "status", "-o", "json").Output()
		var ns api.Status
		if err == nil && json.Unmarshal(b, &ns) == nil && ns.Voters == 3 && ns.Leader != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the healed node %s: %s (%v); want a leader and three voters", out.Node, b, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	labCLI(t, bin, dir, nil, "down")
}
