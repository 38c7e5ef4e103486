package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/lab"
)

const ctrAddrLabPrefix = "arsaddrc"

// TestProcessLabContainerAddressHandover runs `ars-lab up -handover
// address` with a container replica between two VMs under round-robin:
// the container's agent runs on the host (-container, in a namespace of
// its own with a management link), the container is linked without the
// address while standby, a DoS on the Linux VM active moves the address
// to the container by its agent, and an exploit on the container moves
// the service on (make-before-break, nothing lost) with the container
// released and then disconnected from the service network — the fence.
// The agent survives the container's re-creation; down leaves nothing.
func TestProcessLabContainerAddressHandover(t *testing.T) {
	needLabHost(t)
	needLabImages(t, "unbound")
	_, dir, cli, nl := addrLabSetup(t, ctrAddrLabPrefix)

	var st lab.Status
	cli(&st, "up", "-handover", "address", "-rotation", "round-robin",
		"-replicas", "knot-lin:knot-resolver:linux,unbound-ctr:unbound:linux:container,bind9-win:bind9:windows")
	byName := func(st lab.Status, name string) lab.ReplicaStatus { return replicaIn(t, st, name) }
	c := byName(st, "unbound-ctr")
	if c.Handover != lab.HandoverAddress || c.Agent == nil || c.Agent.Pid <= 0 || !strings.HasPrefix(c.Agent.Addr, "10.254.53.") {
		t.Fatalf("container replica: handover %q, agent %+v; want address, a running agent on the management network", c.Handover, c.Agent)
	}
	agentPid := c.Agent.Pid
	waitFor := func(what string, limit time.Duration, ok func(lab.Status) bool) {
		t.Helper()
		waitStatus(t, cli, dir, &st, what, limit, ok)
	}
	waitFor("settled", 60*time.Second, func(st lab.Status) bool {
		a, s := byName(st, "knot-lin"), byName(st, "unbound-ctr")
		return st.Leader != "" && st.Last10s.Sent > 0 && a.Role == "active" && a.Linked && held(a) &&
			s.Role == "standby" && s.Linked && s.Power == "poweredOn" && !held(s)
	})
	time.Sleep(time.Second) // past the first answers' startup losses

	dos := attackActive(t, cli, "dos")
	sw := dos.Event.Switch
	if sw.From != "knot-lin" || sw.To != "unbound-ctr" || sw.Handover != "address" {
		t.Fatalf("DoS switch %+v; want knot-lin to unbound-ctr by address", sw)
	}
	if !dos.Event.Recovered {
		t.Errorf("DoS: the service did not recover: %+v", dos.Event)
	}
	t.Logf("DoS %s -> %s by %s: switch %.1f ms, %d lost, downtime %.1f ms", sw.From, sw.To, sw.Handover,
		sw.SwitchMS, dos.Event.Lost, dos.Event.Longest)
	waitFor("the container holds the address, the old active fenced", 10*time.Second, func(st lab.Status) bool {
		return held(byName(st, "unbound-ctr")) && !byName(st, "knot-lin").Linked
	})

	time.Sleep(2500 * time.Millisecond) // the policy's min_dwell
	ex := attackActive(t, cli, "exploit")
	esw := ex.Event.Switch
	if ex.Target != "unbound-ctr" || esw.From != "unbound-ctr" || esw.Reason != "exploit" {
		t.Fatalf("exploit on %s: switch %+v; want an exploit switch away from unbound-ctr", ex.Target, esw)
	}
	if ex.Event.Lost != 0 {
		t.Errorf("exploit switch lost %d queries; want none (make-before-break)", ex.Event.Lost)
	}
	t.Logf("exploit %s -> %s by %s: switch %.1f ms, %d lost, exposure %s ms", esw.From, esw.To, esw.Handover,
		esw.SwitchMS, ex.Event.Lost, ptrMS(esw.ExposureMS))
	waitFor("the container released and fenced", 10*time.Second, func(st lab.Status) bool {
		o := byName(st, "unbound-ctr")
		return !o.Linked && o.Agent != nil && o.Agent.Held != nil && !*o.Agent.Held && byName(st, esw.To).Linked
	})
	waitFor("the container re-created as a spare", 30*time.Second, func(st lab.Status) bool {
		return byName(st, "unbound-ctr").Role == "suspended"
	})
	if a := byName(st, "unbound-ctr").Agent; a == nil || a.Pid != agentPid {
		t.Errorf("the container's agent after the re-creation: %+v; want the same process, pid %d", a, agentPid)
	}

	cli(nil, "down")
	checkDownLeftNothing(t, nl, dir, ctrAddrLabPrefix)
}
