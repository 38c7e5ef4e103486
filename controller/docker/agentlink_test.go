package docker

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/replicaagent"
)

// inspectPids is the replica agent's view of the engine
// (replicaagent.ContainerEngine), straight on the test's client.
type inspectPids struct{ cli *client.Client }

func (p inspectPids) Pid(ctx context.Context, name string) (int, error) {
	res, err := p.cli.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if err != nil {
		return 0, err
	}
	if !res.Container.State.Running {
		return 0, nil
	}
	return res.Container.State.Pid, nil
}

// A replica in address handover is attached by its service link alone:
// PowerOn makes no address helper, Attach is the one connect under an
// address the engine picks (the service address neither the endpoint's
// own nor recorded), a repeated Attach calls nothing, and a helper left
// from NIC handover is removed before the connect. The replica agent's
// container addresser, on this host, then claims the service address in
// the container's namespace (the replica answers on it), releases it
// (the replica keeps its link), and after the Detach the container has
// no carrier.
func TestAddressHandoverAttachesTheLinkOnly(t *testing.T) {
	e := testEnv(t)
	d, cnt := newDriver(t, e, "", nil)
	ctx := ctxT(t)
	addr := driver.ServiceAddr(e.svcAddr)
	r := e.replica(t, "192.0.2.17")

	// First in NIC handover, so that it has an armed helper...
	mustOp(t, cnt, "power-on (nic handover)", -1, func() error { return d.PowerOn(ctx, r, addr) })
	if e.inspect(t, HelperName(r)) == nil && helperMode(d) {
		t.Fatal("no address helper after a power-on in helper mode")
	}
	// ... then in address handover.
	r.Handover, r.Agent = fsm.HandoverAddress, "127.0.0.1:7444"
	mustOp(t, cnt, "power-on (address handover, running)", 0, func() error { return d.PowerOn(ctx, r, addr) })
	cnt.mutations()
	if err := d.Attach(ctx, r, addr); err != nil {
		t.Fatalf("attach: %v", err)
	}
	m := cnt.mutations()
	connect := "POST /networks/" + e.svcNet + "/connect"
	if len(m) == 0 || m[len(m)-1] != connect || len(m) > 2 {
		t.Fatalf("attach made %v; want the helper's removal (if any) and the connect", m)
	}
	if hc := e.inspect(t, HelperName(r)); hc != nil {
		t.Fatalf("the address helper %s survived the attach in address handover", hc.ID[:12])
	}
	c := e.inspect(t, ContainerName(r))
	ep := c.NetworkSettings.Networks[e.svcNet]
	if ep == nil || ep.EndpointID == "" || ep.IPAddress == e.svcAddr || recordedAddr(ep).IsValid() {
		t.Fatalf("service network endpoint %+v; want one of its own, without the service address", ep)
	}
	mustOp(t, cnt, "attach (repeat)", 0, func() error { return d.Attach(ctx, r, addr) })
	if obs, err := d.Observe(ctx, r); err != nil || !obs.NICConnected {
		t.Fatalf("observe after the attach: %+v %v", obs, err)
	}

	agent := &replicaagent.Container{Name: ContainerName(r), Subnet: e.subnet,
		Address: netip.PrefixFrom(e.svcAddr, 32), Engine: inspectPids{e.cli}}
	t.Cleanup(func() { agent.Close() })
	if up, err := agent.Carrier(); err != nil || !up {
		t.Fatalf("agent: carrier %v %v", up, err)
	}
	if held, err := agent.Held(); err != nil || held {
		t.Fatalf("agent: the service address is held before a claim (%v %v)", held, err)
	}
	if added, err := agent.Claim(); err != nil || !added {
		t.Fatalf("agent: claim %v %v", added, err)
	}
	if err := agent.Announce(1, 0); err != nil {
		t.Fatalf("agent: announce: %v", err)
	}
	waitAnswer(t, e.svcAddr, "192.0.2.17", 5*time.Second)
	if removed, err := agent.Release(); err != nil || !removed {
		t.Fatalf("agent: release %v %v", removed, err)
	}
	if up, err := agent.Carrier(); err != nil || !up {
		t.Fatalf("agent: after the release the link has no carrier (%v %v)", up, err)
	}
	if _, err := query(e.svcAddr); err == nil {
		t.Fatal("the service address still answers after the release")
	}
	mustOp(t, cnt, "detach", 1, func() error { return d.Detach(ctx, r) })
	if up, err := agent.Carrier(); err != nil || up {
		t.Fatalf("agent: carrier after the detach %v %v", up, err)
	}
	if _, err := agent.Claim(); err == nil {
		t.Fatal("agent: a claim after the detach succeeded")
	}
}
