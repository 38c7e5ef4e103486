package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/vcsim"
)

// devVCenter is the vCenter simulator (govmomi's vcsim) embedded in
// `ars agent -dev`: one datacenter, a cluster of three hosts and a
// standalone host, with two powered-on VMs each. It is the dev node's
// vCenter: the node logs in to it when it leads (verifying its certificate
// by thumbprint) and holds that session. The sample service's VM replicas
// are two of its VMs, each with a "clean" snapshot.
type devVCenter struct {
	sim *vcsim.Sim
}

// Sample replicas of the dev service: VM replicas name simulator VMs.
const (
	devVMBind9   = "DC0_C0_RP0_VM0"
	devVMUnbound = "DC0_C0_RP0_VM1"
	devSnapshot  = "clean"
	// The simulator accepts any non-empty credentials; these are the dev
	// node's.
	devVCenterUser     = "dev"
	devVCenterPassword = "dev"
)

func startDevVCenter() (*devVCenter, error) {
	sim, err := vcsim.Start(vcsim.Options{})
	if err != nil {
		return nil, fmt.Errorf("vcenter simulator: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, vm := range []string{devVMBind9, devVMUnbound} {
		if err := sim.Snapshot(ctx, vm, devSnapshot); err != nil {
			sim.Close()
			return nil, fmt.Errorf("vcenter simulator: snapshot of %s: %w", vm, err)
		}
	}
	return &devVCenter{sim: sim}, nil
}

// URL is the simulator's SDK endpoint without credentials.
func (d *devVCenter) URL() string { return d.sim.URL() }

// Thumbprint is the SHA-256 thumbprint of its certificate.
func (d *devVCenter) Thumbprint() string { return d.sim.Thumbprint() }

func (d *devVCenter) Close() { d.sim.Close() }

// devService is the sample service a -dev node starts with: the paper's
// testbed (BIND 9 and Unbound on Windows VMs, both in Linux containers)
// plus Knot Resolver and PowerDNS Recursor containers.
func devService() fsm.ServiceSpec {
	vm := func(name, impl, vmName string) fsm.ReplicaSpec {
		return fsm.ReplicaSpec{Name: name, Impl: impl, OS: "windows", Platform: "vm", VM: vmName, NIC: "ethernet-0", Snapshot: devSnapshot}
	}
	ct := func(name, impl string) fsm.ReplicaSpec {
		return fsm.ReplicaSpec{Name: name, Impl: impl, OS: "linux", Platform: "container", Host: "local", Image: "ars-lab/" + impl}
	}
	s := fsm.ServiceSpec{
		Name:    "dns",
		Address: "127.0.0.1:53", // never probed: -dev sends no probe
		Replicas: []fsm.ReplicaSpec{
			vm("bind9-win", "bind9", devVMBind9),
			vm("unbound-win", "unbound", devVMUnbound),
			ct("bind9-ct", "bind9"),
			ct("unbound-ct", "unbound"),
			ct("knot-ct", "knot-resolver"),
			ct("pdns-ct", "pdns-recursor"),
		},
		Probe: fsm.ProbeSpec{Query: "www.lab.internal.", Type: "A", Expect: "192.0.2.10"},
	}
	s.Normalize()
	return s
}

// applyDevService commits the sample service once this dev node leads.
func (a *Agent) applyDevService(ctx context.Context) error {
	if _, ok := a.Cluster.Service("dns"); ok {
		return nil
	}
	cmd, err := fsm.Encode(0, fsm.ServiceApply{Spec: devService()})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for !a.Cluster.IsLeader() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no leadership to apply the sample service: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	_, err = a.Cluster.Apply(ctx, cmd)
	return err
}
