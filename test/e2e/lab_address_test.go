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

// addrLabPrefix is the address-handover lab's own prefix: it never meets
// the other lab tests' labs.
const addrLabPrefix = "arsaddre"

// TestProcessLabAddressHandover runs `ars-lab up -handover address` with
// the default replicas, the two Linux VMs first under round-robin
// rotation, so that the active (knot-lin) and its standby (pdns-lin) both
// take the service address through their replica agents. A DoS on the
// active is switched by one claim on the standby's agent: the history
// record says handover "address", the new active holds the address and
// answers on it (the client's ARP entry is its service link's MAC), and
// the old active's NIC ends disconnected. An exploit on the new active
// switches too (to the next in rotation, a Windows VM: NIC handover).
// After `ars-lab down` nothing is left: no namespace, link, agent or
// other process.
func TestProcessLabAddressHandover(t *testing.T) {
	needLabHost(t)
	bin, dir, cli, nl := addrLabSetup(t, addrLabPrefix)

	start := time.Now()
	var st lab.Status
	cli(&st, "up", "-handover", "address", "-rotation", "round-robin",
		"-replicas", "knot-lin:knot-resolver:linux,pdns-lin:pdns-recursor:linux,bind9-win:bind9:windows,unbound-win:unbound:windows")
	t.Logf("up in %s", time.Since(start).Round(time.Millisecond))
	if st.Handover != lab.HandoverAddress {
		t.Fatalf("status handover %q, want address", st.Handover)
	}
	for _, r := range st.Replicas {
		linux := r.OS == "linux"
		if want := map[bool]string{true: lab.HandoverAddress, false: lab.HandoverNIC}[linux]; r.Handover != want || (r.Agent != nil) != linux {
			t.Errorf("replica %s (%s): handover %q, agent %+v; want %s, an agent only on Linux", r.Name, r.OS, r.Handover, r.Agent, want)
		}
		if linux && (r.Agent.Pid <= 0 || !strings.HasPrefix(r.Agent.Addr, "10.254.53.")) {
			t.Errorf("replica %s: agent %+v, want a running agent on the management network", r.Name, r.Agent)
		}
	}

	// Settled: knot-lin active, linked and holding the address; pdns-lin
	// standby, linked (address handover keeps its NIC connected) and
	// holding nothing; the client answered.
	byName := func(st lab.Status, name string) lab.ReplicaStatus { return replicaIn(t, st, name) }
	waitFor := func(what string, limit time.Duration, ok func(lab.Status) bool) {
		t.Helper()
		waitStatus(t, cli, dir, &st, what, limit, ok)
	}
	waitFor("settled", 30*time.Second, func(st lab.Status) bool {
		a, s := byName(st, "knot-lin"), byName(st, "pdns-lin")
		return st.Leader != "" && st.Last10s.Sent > 0 && a.Role == "active" && a.Linked && held(a) &&
			s.Role == "standby" && s.Linked && s.Power == "poweredOn" && !held(s) && s.Agent.Pid > 0
	})
	agentPid := byName(st, "knot-lin").Agent.Pid
	time.Sleep(time.Second) // past the first answers' startup losses

	dos := attackActive(t, cli, "dos")
	sw := dos.Event.Switch
	if dos.Target != "knot-lin" || sw.Reason != "dos" || sw.From != "knot-lin" || sw.To != "pdns-lin" {
		t.Fatalf("DoS on %s: switch %+v; want a DoS switch from knot-lin to pdns-lin", dos.Target, sw)
	}
	if sw.Handover != "address" {
		t.Errorf("DoS switch record: handover %q, want address", sw.Handover)
	}
	if !dos.Event.Recovered || dos.Event.Longest > 3000 {
		t.Errorf("DoS downtime %.1f ms (recovered %v): want less than 3 s", dos.Event.Longest, dos.Event.Recovered)
	}
	t.Logf("DoS %s -> %s by %s: switch %.1f ms, %d lost, downtime %.1f ms, old held %s ms", sw.From, sw.To, sw.Handover,
		sw.SwitchMS, dos.Event.Lost, dos.Event.Longest, ptrMS(sw.OldHeldMS))
	// The API's history says the same, in its own JSON.
	out, err := exec.Command(bin, "exec", "-prefix", addrLabPrefix, "-state-dir", dir, "--", "ars", "history", "-o", "json").CombinedOutput()
	if err != nil {
		t.Fatalf("ars history: %v: %s", err, out)
	}
	var hist struct {
		Switches []map[string]any `json:"switches"`
	}
	if err := json.Unmarshal(out, &hist); err != nil {
		t.Fatalf("ars history -o json: %v: %s", err, out)
	}
	found := false
	for _, r := range hist.Switches {
		if r["generation"] == float64(sw.Generation) {
			found = true
			if r["handover"] != "address" || r["from"] != "knot-lin" || r["to"] != "pdns-lin" {
				t.Errorf("history record of generation %d: %v; want handover address from knot-lin to pdns-lin", sw.Generation, r)
			}
		}
	}
	if !found {
		t.Errorf("ars history has no record of generation %d: %s", sw.Generation, out)
	}

	// The new active holds the address and answers on it; the old one
	// holds nothing and its NIC ends disconnected (the platform's fence
	// after the release).
	waitFor("the old active fenced", 10*time.Second, func(st lab.Status) bool {
		o := byName(st, "knot-lin")
		return held(byName(st, "pdns-lin")) && !o.Linked && o.Agent != nil && o.Agent.Held != nil && !*o.Agent.Held
	})
	answeredBy(t, bin, dir, "pdns-lin")
	// The attacked replica was restored (its VM reverted: a fresh DNS
	// server) and put back as a suspended spare; its agent is the one
	// that ran before — the revert and the DoS reach the server only.
	waitFor("the attacked replica restored", 20*time.Second, func(st lab.Status) bool {
		return byName(st, "knot-lin").Role == "suspended"
	})
	if a := byName(st, "knot-lin").Agent; a == nil || a.Pid != agentPid {
		t.Errorf("knot-lin's agent after the DoS and the revert: %+v; want the same process, pid %d", a, agentPid)
	}

	time.Sleep(2500 * time.Millisecond) // the policy's min_dwell
	ex := attackActive(t, cli, "exploit")
	esw := ex.Event.Switch
	if ex.Target != "pdns-lin" || esw.Reason != "exploit" || esw.From != "pdns-lin" || esw.To == "pdns-lin" {
		t.Errorf("exploit on %s: switch %+v; want an exploit switch away from pdns-lin", ex.Target, esw)
	}
	t.Logf("exploit %s -> %s by %s: switch %.1f ms, %d lost, downtime %.1f ms, old held %s ms", esw.From, esw.To, esw.Handover,
		esw.SwitchMS, ex.Event.Lost, ex.Event.Longest, ptrMS(esw.OldHeldMS))
	waitFor("the exploited replica released and fenced", 10*time.Second, func(st lab.Status) bool {
		o := byName(st, "pdns-lin")
		return !o.Linked && o.Agent != nil && o.Agent.Held != nil && !*o.Agent.Held && byName(st, esw.To).Linked
	})

	start = time.Now()
	cli(nil, "down")
	t.Logf("down in %s", time.Since(start).Round(time.Millisecond))
	checkDownLeftNothing(t, nl, dir, addrLabPrefix)
}

// checkDownLeftNothing: after an address-handover lab's down, no link,
// namespace or agent process of it is left.
func checkDownLeftNothing(t *testing.T, nl *netlab.Lab, dir, prefix string) {
	t.Helper()
	left, err := nl.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	if !left.Empty() {
		t.Fatalf("lab down left %s", left)
	}
	if pids := agentProcs(t, dir); len(pids) > 0 {
		t.Errorf("replica agents still running after down: %v", pids)
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil || strings.Contains(string(out), prefix+"-") {
		t.Errorf("namespaces after down (%v): %s", err, out)
	}
}

// addrLabSetup prepares an address-handover lab test of prefix: the lab
// binary, the lab's state directory, its CLI (output decoded into out
// unless nil), and a netlab handle to look for leftovers with; the lab is
// taken down when the test ends.
func addrLabSetup(t *testing.T, prefix string) (bin, dir string, cli func(out any, args ...string), nl *netlab.Lab) {
	t.Helper()
	bin = labBinary(t)
	dir = filepath.Join(t.TempDir(), "lab")
	cli = func(out any, args ...string) {
		t.Helper()
		labCLIAt(t, bin, prefix, dir, out, args...)
	}
	nl, err := netlab.New(netlab.Topology{Prefix: prefix, StateDir: dir, Replicas: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command(bin, "down", "-prefix", prefix, "-state-dir", dir).Run() })
	return bin, dir, cli, nl
}

// attackActive attacks the active replica (kind dos or exploit) and
// waits for the switch; the test fails without one.
func attackActive(t *testing.T, cli func(out any, args ...string), kind string) lab.AttackResponse {
	t.Helper()
	var res lab.AttackResponse
	cli(&res, "attack", kind, "-active", "-wait")
	if res.Error != "" || res.Event == nil || res.Event.Switch == nil {
		t.Fatalf("%s: no switch: %+v", kind, res)
	}
	return res
}

// replicaIn is the named replica of a lab status (the test fails without
// one).
func replicaIn(t *testing.T, st lab.Status, name string) lab.ReplicaStatus {
	t.Helper()
	for _, r := range st.Replicas {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no replica %s in %+v", name, st.Replicas)
	return lab.ReplicaStatus{}
}

// held says whether the lab measured the replica's link holding the
// service address.
func held(r lab.ReplicaStatus) bool { return r.Agent != nil && r.Agent.Held != nil && *r.Agent.Held }

// waitStatus reads the lab's status into st until ok holds, or fails the
// test after limit with the status and the daemon log's tail.
func waitStatus(t *testing.T, cli func(any, ...string), dir string, st *lab.Status, what string, limit time.Duration, ok func(lab.Status) bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for cli(st, "status"); !ok(*st); cli(st, "status") {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %+v\ndaemon log:\n%s", what, limit, *st, labLogTail(filepath.Join(dir, "labd.log")))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// answeredBy checks that the service address answers the client and
// that the client's neighbour entry for it is replica's service link: the
// answer came from that replica.
func answeredBy(t *testing.T, bin, dir, replica string) {
	t.Helper()
	out, err := exec.Command(bin, "exec", "-prefix", addrLabPrefix, "-state-dir", dir, "--",
		"dig", "+short", "+time=1", "+tries=2", "@"+netlab.DefaultService.String(), lab.RecordName, "A").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != lab.RecordA {
		t.Fatalf("dig @%s from the client: %v: %q", netlab.DefaultService, err, out)
	}
	var links []struct {
		Address string `json:"address"`
	}
	ns, dev := addrLabPrefix+"-r-"+replica, addrLabPrefix+"-svc"
	b, err := exec.Command("ip", "-n", ns, "-j", "link", "show", "dev", dev).Output()
	if err != nil || json.Unmarshal(b, &links) != nil || len(links) != 1 {
		t.Fatalf("MAC of %s in %s: %v: %s", dev, ns, err, b)
	}
	neigh, err := exec.Command("ip", "-n", addrLabPrefix+"-client", "neigh", "show", "to", netlab.DefaultService.String()).CombinedOutput()
	if err != nil || !strings.Contains(string(neigh), "lladdr "+links[0].Address+" ") {
		t.Errorf("the client reaches %s at %q (%v); want %s's service link %s", netlab.DefaultService, strings.TrimSpace(string(neigh)), err, replica, links[0].Address)
	}
}

// agentProcs lists the processes running `ars replica-agent` for the lab
// in dir (their state files are under it).
func agentProcs(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, "replica-agent") && strings.Contains(cmd, dir) {
			out = append(out, e.Name()+": "+cmd)
		}
	}
	return out
}

func ptrMS(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", *v)
}
