//go:build linux

package replicaagent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ars-project/ars/test/testutil"
)

// fakeEngine answers Pid with what the test set, counting the calls.
type fakeEngine struct {
	mu    sync.Mutex
	pid   int
	calls int
}

func (f *fakeEngine) Pid(context.Context, string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.pid, nil
}

func (f *fakeEngine) set(pid int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pid = pid
}

func (f *fakeEngine) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// testNS is a network namespace with one process in it, standing for a
// container started once.
type testNS struct {
	name string
	proc *exec.Cmd
}

// newTestNS makes a namespace with a process sleeping in it and a dummy
// link svc0 (a veth, its peer in the namespace too) holding addr; Cleanup removes both.
func newTestNS(t *testing.T, name, addr string) *testNS {
	t.Helper()
	_ = exec.Command("ip", "netns", "del", name).Run()
	testutil.IP(t, "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	testutil.IP(t, "-n", name, "link", "add", "svc0", "type", "veth", "peer", "name", "svc0p")
	testutil.IP(t, "-n", name, "addr", "add", addr, "dev", "svc0")
	testutil.IP(t, "-n", name, "link", "set", "svc0p", "up")
	testutil.IP(t, "-n", name, "link", "set", "svc0", "up")
	p := exec.Command("ip", "netns", "exec", name, "sleep", "60")
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Process.Kill(); _ = p.Wait() })
	// Wait until the process runs in the namespace (ip netns exec has
	// entered it and exec'd sleep).
	deadline := time.Now().Add(10 * time.Second)
	for {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.Process.Pid))
		if strings.TrimSpace(string(comm)) == "sleep" || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &testNS{name: name, proc: p}
}

func (n *testNS) holds(t *testing.T, a string) bool {
	t.Helper()
	return strings.Contains(testutil.IP(t, "-n", n.name, "-4", "addr", "show", "dev", "svc0"), " "+a+"/")
}

// A container replica's agent acts in the namespace of the container's
// current process, on the link in the service subnet; it keeps that
// namespace while the process lives in it (no engine call per command),
// follows the container to a new namespace when it is started again, and
// holds nothing, with no carrier, when the container has no service link
// or does not run.
func TestContainerFollowsItsNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("ARS_REQUIRE_LAB") != "" {
			t.Fatal("ARS_REQUIRE_LAB is set but the test does not run as root")
		}
		t.Skip("needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2)")
	}
	prefix := fmt.Sprintf("arsra%d", os.Getpid()%100000)
	first := newTestNS(t, prefix+"a", "10.77.0.2/24")
	eng := &fakeEngine{pid: first.proc.Process.Pid}
	c := &Container{Name: "ars-x", Subnet: netip.MustParsePrefix("10.77.0.0/24"),
		Address: netip.MustParsePrefix("10.77.0.53/32"), Engine: eng}
	t.Cleanup(func() { c.Close() })

	if up, err := c.Carrier(); err != nil || !up {
		t.Fatalf("carrier: %v %v", up, err)
	}
	if held, err := c.Held(); err != nil || held {
		t.Fatalf("held before a claim: %v %v", held, err)
	}
	if added, err := c.Claim(); err != nil || !added {
		t.Fatalf("claim: %v %v", added, err)
	}
	if err := c.Announce(2, time.Millisecond); err != nil {
		t.Fatalf("announce: %v", err)
	}
	if !first.holds(t, "10.77.0.53") {
		t.Fatal("the namespace does not hold the address after the claim")
	}
	if r := testutil.IP(t, "-n", first.name, "-4", "route", "show", "10.77.0.0/24"); !strings.Contains(r, "src 10.77.0.53") {
		t.Fatalf("the subnet route's source is not the service address after the claim: %q", r)
	}
	if added, err := c.Claim(); err != nil || added {
		t.Fatalf("second claim: %v %v, want a no-op", added, err)
	}
	if held, err := c.Held(); err != nil || !held {
		t.Fatalf("held after the claim: %v %v", held, err)
	}
	if n := eng.count(); n != 1 {
		t.Fatalf("%d engine calls for one namespace, want 1", n)
	}
	if removed, err := c.Release(); err != nil || !removed {
		t.Fatalf("release: %v %v", removed, err)
	}
	if first.holds(t, "10.77.0.53") {
		t.Fatal("the namespace still holds the address after the release")
	}
	if r := testutil.IP(t, "-n", first.name, "-4", "route", "show", "10.77.0.0/24"); !strings.Contains(r, "10.77.0.0/24") || strings.Contains(r, "10.77.0.53") {
		t.Fatalf("after the release the subnet route is %q; want it kept, with its own source", r)
	}

	// Disconnected from the service network: no link in the subnet.
	testutil.IP(t, "-n", first.name, "link", "del", "svc0")
	if up, err := c.Carrier(); err != nil || up {
		t.Fatalf("carrier without a service link: %v %v", up, err)
	}
	if removed, err := c.Release(); err != nil || removed {
		t.Fatalf("release without a service link: %v %v", removed, err)
	}
	if _, err := c.Claim(); err == nil || !strings.Contains(err.Error(), "no link in 10.77.0.0/24") {
		t.Fatalf("claim without a service link: %v", err)
	}

	// Started again: a new process in a new namespace.
	_ = first.proc.Process.Kill()
	_ = first.proc.Wait()
	second := newTestNS(t, prefix+"b", "10.77.0.3/24")
	eng.set(second.proc.Process.Pid)
	before := eng.count()
	if added, err := c.Claim(); err != nil || !added {
		t.Fatalf("claim in the new namespace: %v %v", added, err)
	}
	if !second.holds(t, "10.77.0.53") {
		t.Fatal("the new namespace does not hold the address after the claim")
	}
	if n := eng.count() - before; n != 1 {
		t.Fatalf("%d engine calls to find the new namespace, want 1", n)
	}

	// Not running: nothing held, no carrier, a claim refused.
	_ = second.proc.Process.Kill()
	_ = second.proc.Wait()
	eng.set(0)
	if held, err := c.Held(); err != nil || held {
		t.Fatalf("held while not running: %v %v", held, err)
	}
	if up, err := c.Carrier(); err != nil || up {
		t.Fatalf("carrier while not running: %v %v", up, err)
	}
	if _, err := c.Claim(); err == nil {
		t.Fatal("a claim while not running succeeded")
	}
}
