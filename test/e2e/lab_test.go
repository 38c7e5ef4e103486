package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/lab"
	"github.com/ars-project/ars/lab/netlab"
)

const labTestPrefix = "arse2e"

// needLabHost skips unless this is root on a machine with the lab's
// servers (or fails, where ARS_REQUIRE_LAB says they must be there).
func needLabHost(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the lab needs root (network namespaces); CI runs this as root")
	}
	for _, bin := range []string{"ip", "named", "unbound", "kresd", "pdns_recursor"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("ARS_REQUIRE_LAB") != "" {
				t.Fatalf("ARS_REQUIRE_LAB is set but %s is not installed (make lab-deps)", bin)
			}
			t.Skipf("%s not installed (make lab-deps)", bin)
		}
	}
}

// labCLI runs `ars-lab ARGS -prefix arse2e -state-dir DIR` and decodes its
// -o json output into out (when not nil).
func labCLI(t *testing.T, bin, dir string, out any, args ...string) {
	t.Helper()
	labCLIAt(t, bin, labTestPrefix, dir, out, args...)
}

// labCLIAt is labCLI for a lab of another prefix.
func labCLIAt(t *testing.T, bin, prefix, dir string, out any, args ...string) {
	t.Helper()
	args = append(args, "-prefix", prefix, "-state-dir", dir, "-o", "json")
	cmd := exec.Command(bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("ars-lab %s: %v\nstdout: %s\nstderr: %s\ndaemon log:\n%s", strings.Join(args, " "), err, b, stderr.String(), labLogTail(filepath.Join(dir, "labd.log")))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("ars-lab %s: decoding %q: %v", args[0], b, err)
		}
	}
}

// labSettle polls `ars-lab status` into st until the service is settled
// — one replica linked, a standby running, a leader, the client sending —
// and fails the test after limit.
func labSettle(t *testing.T, bin, dir string, st *lab.Status, what string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		labCLI(t, bin, dir, st, "status")
		linked, standby := 0, false
		for _, r := range st.Replicas {
			if r.Linked {
				linked++
			}
			standby = standby || r.Role == "standby" && r.Power == "poweredOn"
		}
		if linked == 1 && standby && st.Last10s.Sent > 0 && st.Leader != "" {
			return
		}
		if time.Now().After(deadline) {
			var logs strings.Builder
			for _, n := range st.Nodes {
				fmt.Fprintf(&logs, "\n--- %s (leader %v) log tail:\n%s", n.Node.Name, n.Leader, labLogTail(n.Node.Log))
			}
			t.Fatalf("%s: the lab did not settle: %+v%s", what, *st, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// labTemp makes a temporary directory for an in-process lab and its log
// file, both gone when the test ends. Not t.TempDir: a lab test's long
// name makes that too long for the replicas' Unix sockets
// (pdns_recursor's control socket).
func labTemp(t *testing.T, prefix string) (string, *os.File) {
	t.Helper()
	tmp, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	logf, err := os.Create(filepath.Join(tmp, "lab.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	return tmp, logf
}

func labLogTail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// TestProcessLab runs the lab as an operator does: `ars-lab up` (daemon,
// simulator, BIND 9 / Unbound / Knot Resolver / PowerDNS Recursor in
// namespaces, three agent processes), a DoS and an exploit through
// `ars-lab attack … -wait`, `ars-lab down`; then nothing of it is left.
// Every node notifies a webhook that never answers (-dead-webhook): the
// switches happen all the same, and the nodes did try to deliver them.
func TestProcessLab(t *testing.T) {
	needLabHost(t)
	bin := labBinary(t)
	dir := filepath.Join(t.TempDir(), "lab")
	nl, err := netlab.New(netlab.Topology{Prefix: labTestPrefix, StateDir: dir, Replicas: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Whatever the test did, leave nothing behind.
		_ = exec.Command(bin, "down", "-prefix", labTestPrefix, "-state-dir", dir).Run()
	})

	var st lab.Status
	labCLI(t, bin, dir, &st, "up", "-dead-webhook")
	if len(st.Nodes) != 3 || len(st.Replicas) != 4 {
		t.Fatalf("lab up: %d nodes, %d replicas; want 3 and 4", len(st.Nodes), len(st.Replicas))
	}
	// Wait for the service to settle: one replica linked and active, a
	// standby running, the client answered.
	labSettle(t, bin, dir, &st, "up", 30*time.Second)
	time.Sleep(time.Second) // past the first answers' startup losses

	var dos lab.AttackResponse
	labCLI(t, bin, dir, &dos, "attack", "dos", "-active", "-wait")
	if dos.Error != "" || dos.Event == nil || dos.Event.Switch == nil {
		t.Fatalf("DoS: no switch: %+v", dos)
	}
	sw := dos.Event.Switch
	if sw.Reason != "dos" || sw.From != dos.Target || sw.FromImpl == sw.ToImpl {
		t.Errorf("DoS switch %+v: want reason dos from %s to another implementation", sw, dos.Target)
	}
	// Far from the edge: the ars profile decides within ~275 ms.
	if dos.Event.Longest <= 0 || dos.Event.Longest > 3000 || !dos.Event.Recovered {
		t.Errorf("DoS downtime %.1f ms (recovered %v): want some loss, and less than 3 s", dos.Event.Longest, dos.Event.Recovered)
	}
	t.Logf("DoS %s -> %s: %d lost, downtime %.1f ms", sw.From, sw.To, dos.Event.Lost, dos.Event.Longest)

	time.Sleep(2500 * time.Millisecond) // the policy's min_dwell
	var ex lab.AttackResponse
	labCLI(t, bin, dir, &ex, "attack", "exploit", "-active", "-wait")
	if ex.Error != "" || ex.Event == nil || ex.Event.Switch == nil {
		t.Fatalf("exploit: no switch: %+v", ex)
	}
	if ex.Target != sw.To || ex.Event.Switch.Reason != "exploit" || ex.Event.Switch.Mode != "make-before-break" {
		t.Errorf("exploit on %s: switch %+v; want a make-before-break exploit switch away from %s", ex.Target, ex.Event.Switch, sw.To)
	}
	if ex.Event.Longest > 500 {
		t.Errorf("exploit switch downtime %.1f ms: make-before-break should lose next to nothing", ex.Event.Longest)
	}
	t.Logf("exploit %s -> %s: %d lost, downtime %.1f ms", ex.Event.Switch.From, ex.Event.Switch.To, ex.Event.Lost, ex.Event.Longest)

	// The leader offered the switches to the dead webhook: each attempt
	// waits for its timeout, beside the switches, not in front of them.
	deadline := time.Now().Add(10 * time.Second)
	for labCLI(t, bin, dir, &st, "status"); st.DeadWebhook == nil || st.DeadWebhook.Attempts == 0; labCLI(t, bin, dir, &st, "status") {
		if time.Now().After(deadline) {
			t.Fatalf("the dead webhook saw no delivery attempt: %+v", st.DeadWebhook)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Bad input changes nothing and says so (exit 2).
	out, err := exec.Command(bin, "attack", "dos", "no-such-replica", "-prefix", labTestPrefix, "-state-dir", dir).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "no replica") {
		t.Errorf("attack on an unknown replica: %v, %s; want exit 2 naming it", err, out)
	}

	labCLI(t, bin, dir, nil, "down")
	left, err := nl.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	if !left.Empty() {
		t.Fatalf("lab down left %s", left)
	}
}
