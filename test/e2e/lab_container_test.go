package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/lab"
	"github.com/ars-project/ars/lab/netlab"
)

// needLabImages skips unless the local Docker engine answers and has the
// lab's images of impls (or fails, where ARS_REQUIRE_IMAGES says they
// must be there: CI builds them with make images).
func needLabImages(t *testing.T, impls ...string) {
	t.Helper()
	fail := func(format string, a ...any) {
		t.Helper()
		if os.Getenv("ARS_REQUIRE_IMAGES") != "" {
			t.Fatalf("ARS_REQUIRE_IMAGES is set but "+format, a...)
		}
		t.Skipf(format, a...)
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		fail("no Docker engine: %v: %s", err, out)
	}
	for _, impl := range impls {
		if err := exec.Command("docker", "image", "inspect", lab.ImageFor(impl)).Run(); err != nil {
			fail("image %s is missing (make images)", lab.ImageFor(impl))
		}
	}
}

// TestProcessLabContainers runs the lab with a container replica beside
// a VM: `ars-lab up` with a Windows-VM Knot Resolver and a BIND 9
// container of the machine's Docker engine, driven by the nodes through
// the production Docker driver on a macvlan network bridged into the lab.
// A DoS on the VM moves the service to the container, a DoS on the
// container moves it back (the container re-created), an exploit alert
// switches make-before-break; a container removed by hand while it waits
// as standby is re-created; the Docker engine restarted under the serving
// container costs one DoS switch and the container comes back as the
// standby; `ars-lab down` leaves no namespace, link,
// process, container or Docker network.
func TestProcessLabContainers(t *testing.T) {
	needLabHost(t)
	needLabImages(t, "bind9")
	bin := labBinary(t)
	dir := filepath.Join(t.TempDir(), "lab")
	const ctr = "bind9-e2ectr"
	nl, err := netlab.New(netlab.Topology{Prefix: labTestPrefix, StateDir: dir, Replicas: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command(bin, "down", "-prefix", labTestPrefix, "-state-dir", dir).Run()
		_ = exec.Command("docker", "rm", "-f", lab.ContainerName(ctr)).Run()
	})

	var st lab.Status
	labCLI(t, bin, dir, &st, "up", "-replicas", "knot-win:knot-resolver:windows,"+ctr+":bind9:linux:container")
	if len(st.Replicas) != 2 || st.Replicas[1].Platform != "container" {
		t.Fatalf("lab up: replicas %+v; want knot-win and a container", st.Replicas)
	}
	settle := func(what string) {
		t.Helper()
		labSettle(t, bin, dir, &st, what, 60*time.Second)
	}
	settle("up")
	time.Sleep(2500 * time.Millisecond) // past the first answers and the policy's min_dwell

	dos := func(wantTo string) {
		t.Helper()
		var r lab.AttackResponse
		labCLI(t, bin, dir, &r, "attack", "dos", "-active", "-wait")
		if r.Error != "" || r.Event == nil || r.Event.Switch == nil {
			t.Fatalf("DoS: no switch: %+v", r)
		}
		if sw := r.Event.Switch; sw.To != wantTo || sw.Reason != "dos" {
			t.Fatalf("DoS on %s: switch %+v; want a dos switch to %s", r.Target, sw, wantTo)
		}
		if r.Event.Longest > 3000 || !r.Event.Recovered {
			t.Errorf("DoS %s -> %s: downtime %.1f ms (recovered %v); want less than 3 s", r.Target, wantTo, r.Event.Longest, r.Event.Recovered)
		}
		t.Logf("DoS %s -> %s: %d lost, downtime %.1f ms", r.Target, wantTo, r.Event.Lost, r.Event.Longest)
	}
	containerID := func() string {
		out, err := exec.Command("docker", "inspect", "-f", "{{.Id}}", lab.ContainerName(ctr)).Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}

	dos(ctr) // VM -> container
	settle("after the switch to the container")
	time.Sleep(2500 * time.Millisecond)
	before := containerID()
	dos("knot-win") // container -> VM; the container is re-created
	settle("after the switch back to the VM")
	if after := containerID(); after == "" || after == before {
		t.Errorf("the attacked container was not re-created (id before %.12s, after %.12s)", before, after)
	}

	// Removed by hand while standby: reconcile creates it again.
	if out, err := exec.Command("docker", "rm", "-f", lab.ContainerName(ctr)).CombinedOutput(); err != nil {
		t.Fatalf("docker rm: %v: %s", err, out)
	}
	settle("after the standby container was removed by hand")
	if containerID() == "" {
		t.Fatal("the removed standby container was not re-created")
	}

	time.Sleep(2500 * time.Millisecond)
	var ex lab.AttackResponse
	labCLI(t, bin, dir, &ex, "attack", "exploit", "-active", "-wait")
	if ex.Error != "" || ex.Event == nil || ex.Event.Switch == nil {
		t.Fatalf("exploit: no switch: %+v", ex)
	}
	if sw := ex.Event.Switch; sw.To != ctr || sw.Mode != "make-before-break" {
		t.Errorf("exploit on %s: switch %+v; want make-before-break to %s", ex.Target, sw, ctr)
	}
	if ex.Event.Longest > 500 {
		t.Errorf("exploit VM -> container: downtime %.1f ms; make-before-break should lose next to nothing", ex.Event.Longest)
	}
	t.Logf("exploit knot-win -> %s: %d lost, downtime %.1f ms", ctr, ex.Event.Lost, ex.Event.Longest)

	// The Docker engine restarts under the serving container: the engine
	// stops every container; the nodes' Docker calls fail and are
	// retried; the cluster gets the service answering again — by a switch
	// to the VM or by starting and attaching the container again,
	// whichever comes first — and ends with one active and one running
	// standby, every role a known one.
	var er lab.EngineRestart
	labCLI(t, bin, dir, &er, "engine", "restart")
	settle("after the engine restart")
	roles := map[string]string{}
	for _, r := range st.Replicas {
		roles[r.Name] = r.Role
	}
	if !(roles["knot-win"] == "active" && roles[ctr] == "standby" || roles["knot-win"] == "standby" && roles[ctr] == "active") {
		t.Errorf("after the engine restart: roles %v; want one active and one standby", roles)
	}
	t.Logf("docker engine away %.0f ms; then %v, the client lost %d of %d queries in the last 10 s", er.AwayMS, roles, st.Last10s.Lost, st.Last10s.Sent)

	labCLI(t, bin, dir, nil, "down")
	left, err := nl.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	if !left.Empty() {
		t.Fatalf("lab down left %s", left)
	}
	if id := containerID(); id != "" {
		t.Errorf("lab down left container %s (%.12s)", lab.ContainerName(ctr), id)
	}
	if err := exec.Command("docker", "network", "inspect", labTestPrefix+"-svc").Run(); err == nil {
		t.Errorf("lab down left the Docker network %s-svc", labTestPrefix)
	}
}
