package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cmd/ars/agent"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/test/dockertest"
	"github.com/ars-project/ars/test/fabric"
	"github.com/ars-project/ars/test/harness"
)

// containerLab is a three-node cluster whose leader drives containers of
// the machine's Docker engine: three replicas of the test DNS responder
// (labelled as three implementations) on a private bridge network that
// carries the service address.
type containerLab struct {
	t      *testing.T
	cli    *client.Client
	run    string
	svcNet string
	addr   netip.AddrPort
	c      *harness.Cluster
	client *fabric.Client
}

func newContainerLab(t *testing.T) *containerLab {
	sock := dockertest.Socket()
	if _, err := os.Stat(sock); err != nil {
		if os.Getenv("ARS_REQUIRE_DOCKER") != "" {
			t.Fatalf("ARS_REQUIRE_DOCKER is set but there is no engine socket at %s", sock)
		}
		t.Skipf("no Docker engine socket at %s: skipping the container end-to-end test", sock)
	}
	cli, err := client.New(client.WithHost("unix://" + sock))
	if err != nil {
		t.Fatal(err)
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	l := &containerLab{t: t, cli: cli, run: "e2e" + hex.EncodeToString(b[:])}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		t.Fatalf("the engine at %s does not answer: %v", sock, err)
	}
	image, err := dockertest.DNSImage(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	helper, err := dockertest.HelperImage(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	l.svcNet = l.run + "-svc"
	subnet, err := dockertest.CreateNetwork(ctx, cli, l.svcNet, l.run)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.teardown)
	ip := subnet.Addr().As4()
	ip[3] = 53
	l.addr = netip.AddrPortFrom(netip.AddrFrom4(ip), 53)
	// A permanent endpoint keeps the bridge up: the engine takes the bridge
	// down with its last endpoint, and bringing it up again took up to
	// 0.86 s before the first packet passed (controller/docker/DESIGN.md).
	// A production service network (macvlan on a NIC) has no such gap.
	ip[3] = 2
	if err := l.keeper(ctx, image, netip.AddrFrom4(ip)); err != nil {
		t.Fatal(err)
	}

	l.c = harness.New(t, 3, harness.DefaultTimings, func(cfg *agent.Config) {
		cfg.Docker.Hosts = []agent.DockerHostConfig{{Name: "local", Endpoint: "unix://" + sock}}
		cfg.Docker.HelperImage = helper
	})
	l.c.Leader(15 * time.Second)
	var reps []string
	for _, k := range []struct{ name, impl string }{{"a", "bind9"}, {"b", "unbound"}, {"c", "knot-resolver"}} {
		reps = append(reps, fmt.Sprintf(`{"name":%q,"impl":%q,"os":"linux","platform":"container","host":"local","image":%q,
			"container":{"network":%q,"memory_mb":64,"pids_max":64}}`, l.replica(k.name), k.impl, image, l.svcNet))
	}
	harness.Apply(t, l.c.Client(l.c.Nodes[0], "operator"), []byte(fmt.Sprintf(`{"name":%q,"address":%q,"replicas":[%s],
		"probe":{"query":%q,"expect":%q,"confirm":"quorum","timeout":"500ms","window":"1s"},"policy":{"min_dwell":"500ms"}}`,
		labService, l.addr, strings.Join(reps, ","), fabric.QName, fabric.Answer)))
	l.c.SameState(10 * time.Second)

	cctx, stop := context.WithCancel(context.Background())
	l.client = fabric.NewClient(l.addr.String(), 5*time.Millisecond, 250*time.Millisecond)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); l.client.Run(cctx) }()
	t.Cleanup(func() { stop(); wg.Wait() })
	return l
}

// keeper starts a container (not managed by ars: no ars labels) that only
// holds an endpoint on the service network, at addr.
func (l *containerLab) keeper(ctx context.Context, image string, addr netip.Addr) error {
	res, err := l.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:       "ars-" + l.run + "-keeper",
		Config:     &container.Config{Image: image, Cmd: []string{"-a", "192.0.2.99"}},
		HostConfig: &container.HostConfig{},
		NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			l.svcNet: {IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: addr}}}},
	})
	if err != nil {
		return fmt.Errorf("create the bridge keeper: %w", err)
	}
	if _, err := l.cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("start the bridge keeper: %w", err)
	}
	return nil
}

// replica is the replica name for short name n: unique per run, because
// replica names are container names on the engine.
func (l *containerLab) replica(n string) string { return l.run + "-" + n }

func (l *containerLab) teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The cluster stops first (its cleanup was registered later, so it ran
	// earlier): nothing re-creates what is removed here.
	dockertest.RemoveAll(ctx, l.cli, "ars-"+l.run, l.svcNet)
	_ = l.cli.Close()
}

func (l *containerLab) service() fsm.Service {
	svc, ok := l.c.Nodes[0].Agent.Cluster.Service(labService)
	if !ok {
		l.t.Fatal("no service")
	}
	return svc
}

// state is the container's engine state ("running", "paused", "exited",
// "created") or "missing".
func (l *containerLab) state(replica string) (string, string) {
	res, err := l.cli.ContainerInspect(harness.Ctx(l.t), "ars-"+replica, client.ContainerInspectOptions{})
	if err != nil {
		return "missing", ""
	}
	return string(res.Container.State.Status), res.Container.ID
}

// settled waits for: no open intent, the service answering through its
// address since `since`, the standby running and every suspended replica
// not running.
func (l *containerLab) settled(what string, since time.Time) fsm.Service {
	l.t.Helper()
	var svc fsm.Service
	harness.WaitFor(l.t, 60*time.Second, what, func() error {
		svc = l.service()
		if svc.Intent != nil {
			return fmt.Errorf("intent open: %+v", *svc.Intent)
		}
		if !l.client.Answered(since) {
			return errors.New("service not answering")
		}
		for _, r := range svc.Replicas {
			st, _ := l.state(r.Name)
			switch r.Role {
			case fsm.RoleActive, fsm.RoleStandby:
				if st != "running" {
					return fmt.Errorf("%s %s is %s", r.Role, r.Name, st)
				}
			case fsm.RoleSuspended:
				if st == "running" {
					return fmt.Errorf("suspended %s is running", r.Name)
				}
			default:
				return fmt.Errorf("%s is %s", r.Name, r.Role)
			}
		}
		return nil
	})
	return svc
}

// TestContainerSwitchingEndToEnd drives container replicas of the real
// Docker engine through a three-node cluster: drift (a standby removed by
// hand) is repaired, a DoS on the active (its server wedged) moves the
// service to another implementation and the attacked container is
// re-created from its image, and an exploit alert switches again.
func TestContainerSwitchingEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: a three-node cluster and Docker containers")
	}
	l := newContainerLab(t)
	start := time.Now()
	svc := l.settled("initial convergence", start)
	first, _ := svc.Active()
	t.Logf("converged in %s: active %s", time.Since(start).Round(time.Millisecond), first.Name)

	// Drift: the standby's container removed by hand is re-created and
	// started; no switch.
	sb, _ := svc.Standby()
	_, oldID := l.state(sb.Name)
	if _, err := l.cli.ContainerRemove(harness.Ctx(t), "ars-"+sb.Name, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, 60*time.Second, "the standby re-created and running", func() error {
		st, id := l.state(sb.Name)
		if st != "running" || id == oldID {
			return fmt.Errorf("standby %s is %s", sb.Name, st)
		}
		return nil
	})
	if h := l.service().History; len(h) != 0 {
		t.Fatalf("drift repair switched: %+v", h)
	}

	// DoS: the active's server hangs (the process runs, the platform sees
	// nothing). A quorum of probes switches to another impl; the attacked
	// container is re-created from its image (a clean, unwedged process).
	_, attackedID := l.state(first.Name)
	dosAt := time.Now()
	if _, err := l.cli.ContainerKill(harness.Ctx(t), "ars-"+first.Name, client.ContainerKillOptions{Signal: "USR1"}); err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, 60*time.Second, "a switch after the DoS", func() error {
		if h := l.service().History; len(h) < 1 || !h[0].Done {
			return errors.New("no completed switch")
		}
		return nil
	})
	svc = l.settled("settled after the DoS", dosAt)
	h := svc.History[0]
	if h.Reason != fsm.ReasonDoS || h.From != first.Name || h.FromImpl == h.ToImpl {
		t.Fatalf("switch %+v", h)
	}
	if r, _ := svc.Replica(first.Name); !r.Clean || r.RestoredIndex == 0 {
		t.Fatalf("attacked replica %+v not restored", r)
	}
	if _, id := l.state(first.Name); id == attackedID {
		t.Fatalf("the attacked container %s was not re-created", first.Name)
	}
	dos := l.client.Outage(dosAt, time.Now())
	t.Logf("container DoS %s -> %s: outage %s (%d of %d queries lost); detection %.0f ms, switch %.0f ms",
		h.FromImpl, h.ToImpl, dos.Longest, dos.Lost, dos.Sent, h.DetectionMS, h.SwitchMS)
	if dos.Longest <= 0 || dos.Longest > 10*time.Second {
		t.Errorf("DoS outage %s: want some, and far less than 10 s", dos.Longest)
	}

	// Exploit alert on the new active: another switch, make-before-break.
	// The driver's address helper lets both containers hold the service
	// address during the overlap, so clients need lose nothing (what they
	// lost is logged; the lab's bench measures it, see
	// controller/docker/DESIGN.md).
	second, _ := svc.Active()
	exAt := time.Now()
	l.postAlertTo("exploit-c1", second.Name)
	harness.WaitFor(t, 60*time.Second, "a switch after the exploit alert", func() error {
		s := l.service()
		if h := s.History; len(h) < 2 || !h[1].Done {
			// Say what the cluster holds: a CI run under load once waited
			// here a minute with nothing else to go on.
			var states []string
			for _, r := range s.Replicas {
				st, _ := l.state(r.Name)
				states = append(states, fmt.Sprintf("%s=%s/%s", r.Name, r.Role, st))
			}
			return fmt.Errorf("no second completed switch: history %+v, intent %+v, replicas %v", h, s.Intent, states)
		}
		return nil
	})
	svc = l.settled("settled after the exploit", exAt)
	h = svc.History[1]
	if h.Reason != fsm.ReasonExploit || h.From != second.Name {
		t.Fatalf("switch %+v", h)
	}
	ex := l.client.Outage(exAt, time.Now())
	t.Logf("container exploit %s -> %s: %d of %d queries lost (longest gap %s); switch %.0f ms",
		h.FromImpl, h.ToImpl, ex.Lost, ex.Sent, ex.Longest, h.SwitchMS)
	if ex.Longest > 5*time.Second {
		t.Errorf("exploit switch gap %s", ex.Longest)
	}
	l.c.SameState(10 * time.Second)
}

func (l *containerLab) postAlertTo(id, replica string) {
	l.t.Helper()
	n := l.c.Leader(10 * time.Second)
	if _, err := l.c.Client(n, "detector").PostAlert(harness.Ctx(l.t), transportAlert(id, replica)); err != nil {
		l.t.Fatalf("alert %s: %v", id, err)
	}
}

func transportAlert(id, replica string) api.AlertRequest {
	return api.AlertRequest{ID: id, Service: labService, Replica: replica, Kind: fsm.KindExploit, Source: "e2e"}
}
