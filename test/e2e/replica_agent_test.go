package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ars-project/ars/pki"
	"github.com/ars-project/ars/replicaagent"
	"github.com/ars-project/ars/test/testpki"
	"github.com/ars-project/ars/transport"
)

// The replica agent's test network: a namespace with a management link
// (the agent listens there; the test dials it from the root namespace)
// and a service link whose other end stays in the root namespace, where
// the test listens for the agent's gratuitous ARPs.
const (
	raNS       = "arse2e-ra"
	raMgmtHost = "arse2e-ram" // root side of the management link
	raSvcHost  = "arse2e-ras" // root side of the service link
	raMgmtIP   = "10.231.0.2"
	raListen   = raMgmtIP + ":7444"
	raService  = "10.231.1.53"
)

func raIP(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// raNetwork makes the agent's namespace and links and removes them at
// the end.
func raNetwork(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the replica agent test needs root (a network namespace)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) not installed")
	}
	_ = exec.Command("ip", "netns", "del", raNS).Run() // a leftover of an interrupted run
	raIP(t, "netns", "add", raNS)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", raNS).Run() })
	raIP(t, "link", "add", raMgmtHost, "type", "veth", "peer", "name", "mgmt0", "netns", raNS)
	raIP(t, "link", "add", raSvcHost, "type", "veth", "peer", "name", "svc0", "netns", raNS)
	raIP(t, "addr", "add", "10.231.0.1/30", "dev", raMgmtHost)
	raIP(t, "link", "set", raMgmtHost, "up")
	raIP(t, "link", "set", raSvcHost, "up")
	raIP(t, "-n", raNS, "addr", "add", raMgmtIP+"/30", "dev", "mgmt0")
	raIP(t, "-n", raNS, "addr", "add", "10.231.1.11/24", "dev", "svc0")
	raIP(t, "-n", raNS, "link", "set", "mgmt0", "up")
	raIP(t, "-n", raNS, "link", "set", "svc0", "up")
	raIP(t, "-n", raNS, "link", "set", "lo", "up")
}

// raAgent runs `ars replica-agent` in the namespace until stopped.
type raAgent struct {
	t   *testing.T
	cmd *exec.Cmd
	log strings.Builder
}

func startReplicaAgent(t *testing.T, bin, dir string) *raAgent {
	t.Helper()
	a := &raAgent{t: t}
	a.cmd = exec.Command("ip", "netns", "exec", raNS, bin, "replica-agent",
		"-replica", "r1", "-listen", raListen, "-interface", "svc0", "-address", raService,
		"-state", filepath.Join(dir, "agent-state.json"),
		"-ca", filepath.Join(dir, pki.CACertFile), "-cert", filepath.Join(dir, pki.ReplicaCertFile("r1")),
		"-key", filepath.Join(dir, pki.ReplicaKeyFile("r1")))
	a.cmd.Stdout, a.cmd.Stderr = &a.log, &a.log
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.kill)
	return a
}

func (a *raAgent) kill() {
	if a.cmd.ProcessState == nil {
		_ = a.cmd.Process.Kill()
		_ = a.cmd.Wait()
	}
}

// inNSHas reports whether the service link in the namespace holds addr.
func inNSHas(t *testing.T, addr string) bool {
	t.Helper()
	out, err := exec.Command("ip", "-n", raNS, "-4", "addr", "show", "dev", "svc0").CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr show: %v: %s", err, out)
	}
	return strings.Contains(string(out), " "+addr+"/")
}

// arpListener reads ARP frames arriving at the root side of the service
// link.
func arpListener(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	ifi, err := net.InterfaceByName(raSvcHost)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index}); err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	return fd
}

// gratuitousARPs counts the gratuitous ARPs for addr read within d.
func gratuitousARPs(fd int, addr netip.Addr, d time.Duration) int {
	n := 0
	buf := make([]byte, 128)
	ip := addr.As4()
	for end := time.Now().Add(d); time.Now().Before(end); {
		m, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil || m < 28 {
			continue
		}
		f := buf[:m]
		if f[7] == 1 && string(f[14:18]) == string(ip[:]) && string(f[24:28]) == string(ip[:]) {
			n++
		}
	}
	return n
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestProcessReplicaAgent drives a real `ars replica-agent` in a network
// namespace over mutual TLS: a claim puts the service address on the
// service link and announces it; a command older than the highest fence
// is refused and changes nothing, also after the agent was killed and
// started again (the fence is on disk); a repeat is a no-op; bad input is
// refused; and only a node certificate may call it.
func TestProcessReplicaAgent(t *testing.T) {
	raNetwork(t)
	bin := arsBinary(t)
	dir := t.TempDir()
	if err := pki.GeneratePKI(pki.PKIRequest{Dir: dir, Nodes: []pki.PKINode{{Name: "n1"}}, Loopback: true,
		Replicas: []pki.PKIReplica{{Name: "r1", IPs: []string{raMgmtIP}}}}); err != nil {
		t.Fatal(err)
	}
	agent := startReplicaAgent(t, bin, dir)
	cfg, err := transport.AgentClientTLS(testpki.NodeFiles(dir, "n1"), "r1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := replicaagent.NewClient("r1", raListen, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	waitAgent := func() {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			cctx, ccancel := context.WithTimeout(ctx, time.Second)
			_, err := c.State(cctx)
			ccancel()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("agent does not answer: %v\n%s", err, agent.log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitAgent()
	svc := netip.MustParseAddr(raService)
	arp := arpListener(t)
	// The agent tells whether its service link has a carrier (its NIC is
	// connected): the leader knows a standby is linked without asking
	// the platform.
	for _, up := range []bool{false, true} {
		state := "down"
		if up {
			state = "up"
		}
		raIP(t, "link", "set", raSvcHost, state)
		deadline := time.Now().Add(10 * time.Second)
		for st, err := c.State(ctx); err != nil || st.LinkUp != up; st, err = c.State(ctx) {
			if time.Now().After(deadline) {
				t.Fatalf("link_up %v (%v) with the peer %s", st.LinkUp, err, state)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// Claim: the address is on the link and announced.
	res, err := c.Claim(ctx, replicaagent.Fence{Term: 2, Generation: 5}, svc)
	if err != nil || !res.Held || !res.Changed {
		t.Fatalf("claim: %+v, %v", res, err)
	}
	t.Logf("claim answered after %d µs in the agent", res.TookMicros)
	if !inNSHas(t, raService) {
		t.Fatal("the claim left no address on svc0")
	}
	if n := gratuitousARPs(arp, svc, 500*time.Millisecond); n < 2 {
		t.Errorf("%d gratuitous ARPs for %s reached the service network, want the agent's 3", n, svc)
	}
	// A repeat is a no-op; an older fence is refused and changes nothing.
	if res, err := c.Claim(ctx, replicaagent.Fence{Term: 2, Generation: 5}, svc); err != nil || res.Changed || !res.Held {
		t.Errorf("repeated claim: %+v, %v; want held, unchanged", res, err)
	}
	if _, err := c.Release(ctx, replicaagent.Fence{Term: 1, Generation: 9}, svc); !errors.Is(err, replicaagent.ErrStale) {
		t.Fatalf("release from an older term: %v, want a stale fence refusal", err)
	}
	if !inNSHas(t, raService) {
		t.Fatal("a refused release took the address")
	}
	// Bad input: another address.
	var ae *replicaagent.Error
	if _, err := c.Release(ctx, replicaagent.Fence{Term: 3, Generation: 1}, netip.MustParseAddr("10.231.1.54")); !errors.As(err, &ae) || ae.Code != replicaagent.CodeBadRequest {
		t.Fatalf("release of another address: %v, want bad_request", err)
	}
	// The fence survives a kill -9.
	agent.kill()
	agent = startReplicaAgent(t, bin, dir)
	c.Close()
	waitAgent()
	if _, err := c.Release(ctx, replicaagent.Fence{Term: 2, Generation: 4}, svc); !errors.Is(err, replicaagent.ErrStale) {
		t.Fatalf("release older than the fence after a restart: %v, want a stale fence refusal", err)
	}
	if !inNSHas(t, raService) {
		t.Fatal("the address went away with the agent's restart")
	}
	res, err = c.Release(ctx, replicaagent.Fence{Term: 3, Generation: 1}, svc)
	if err != nil || res.Held || !res.Changed || inNSHas(t, raService) {
		t.Fatalf("release from a newer term: %+v, %v; want the address gone", res, err)
	}

	// Only a node may call it: no client certificate, a certificate of
	// the CA without the node marker, and a replica certificate fail.
	for name, certs := range map[string][]tls.Certificate{
		"no certificate": nil,
		"not a node":     {testpki.NonNodeCert(t, dir, "operator")},
		"replica":        {testpki.ReplicaMarkedCert(t, dir, "r2", false)},
	} {
		cfg := testpki.CAOnly(t, dir)
		cfg.Certificates = certs
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}
		resp, err := hc.Get("https://" + raListen + replicaagent.PathState)
		if err == nil {
			resp.Body.Close()
			t.Errorf("%s: the agent answered %s", name, resp.Status)
		}
	}
	// SIGTERM stops it cleanly.
	if err := agent.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := agent.cmd.Wait(); err != nil {
		t.Errorf("agent exit after SIGTERM: %v\n%s", err, agent.log.String())
	}
}
