package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/lab/chaos"
	"github.com/ars-project/ars/lab/netlab"
	"github.com/ars-project/ars/pki"
)

// Address handover in the lab (Config.Handover "address"): every Linux
// replica takes the service address through its replica agent (`ars
// replica-agent`) instead of its NIC. netlab gives each such VM replica a
// management link the nodes reach whatever its service link does, and
// the service address hidden on lo, so that its server is bound to it
// all along; the agent runs in the replica's namespace beside the
// server, for the lab's whole life, and puts the address on the service
// link when the leader claims it. A container replica's agent runs on
// the host as in production (`-container`), in a netlab namespace of its
// own that has only a management link, and enters the container's
// namespace to act on its link in the service network.

// Handover modes of a lab (Config.Handover).
const (
	HandoverNIC     = "nic"
	HandoverAddress = "address"
)

// AgentPort is the port every replica agent of the lab listens on, at its
// replica's management address.
const AgentPort = 7444

// agentStartLimit bounds how long Up waits for an agent to serve.
const agentStartLimit = 10 * time.Second

// addressHandover reports whether r takes the service address through its
// replica agent: in an address-handover lab, every Linux replica, VM or
// container. Windows replicas (the agent has no tested implementation
// there) keep NIC handover.
func (c Config) addressHandover(r Replica) bool {
	return c.Handover == HandoverAddress && r.OS == fsm.OSLinux
}

// addressVMs and addressContainers split addressReplicas by platform.
func (c Config) addressVMs() []string { return c.addressOn(false) }

func (c Config) addressContainers() []string { return c.addressOn(true) }

func (c Config) addressOn(containers bool) []string {
	var out []string
	for _, r := range c.Replicas {
		if c.addressHandover(r) && r.isContainer() == containers {
			out = append(out, r.Name)
		}
	}
	return out
}

// isAddress reports whether the lab runs a replica agent for the replica.
func (l *Lab) isAddress(replica string) bool {
	return l.Net.AddressHandover(replica) || l.Net.ContainerAgent(replica)
}

// checkHandover validates Config.Handover and normalizes "" to "nic".
func (c *Config) checkHandover() error {
	switch c.Handover {
	case "", HandoverNIC:
		c.Handover = HandoverNIC
		return nil
	case HandoverAddress:
	default:
		return fmt.Errorf("lab: handover %q: want %s or %s", c.Handover, HandoverNIC, HandoverAddress)
	}
	if len(c.Nodes) == 0 {
		return fmt.Errorf("lab: handover %s needs nodes: only a node may call a replica agent", HandoverAddress)
	}
	return nil
}

// addressReplicas lists the address-handover replicas, in Config order.
func (c Config) addressReplicas() []string {
	var out []string
	for _, r := range c.Replicas {
		if c.addressHandover(r) {
			out = append(out, r.Name)
		}
	}
	return out
}

// AgentAddr is the replica agent's "IP:port" of an address-handover
// replica ("" for any other).
func (l *Lab) AgentAddr(replica string) string {
	a := l.Net.MgmtAddr(replica)
	if !a.IsValid() {
		return ""
	}
	return netip.AddrPortFrom(a, AgentPort).String()
}

// agentStatePath is the agent's state file (the highest fence it saw).
func (l *Lab) agentStatePath(replica string) string {
	return filepath.Join(l.Net.Topology().StateDir, "agents", replica+".json")
}

// pkiReplicas are the replica certificates the lab's PKI issues: one per
// address-handover replica, for its management address.
func (l *Lab) pkiReplicas() []pki.PKIReplica {
	var out []pki.PKIReplica
	for _, r := range l.cfg.addressReplicas() {
		out = append(out, pki.PKIReplica{Name: r, IPs: []string{l.Net.MgmtAddr(r).String()}})
	}
	return out
}

// startAgents runs one `ars replica-agent` per address-handover replica
// inside the replica's namespace (beside its server: the Mirror's kills,
// suspends, reverts and the attacks do not reach it), each with a fresh
// state file, and waits until each serves. The PKI must exist.
func (l *Lab) startAgents() error {
	names := l.cfg.addressReplicas()
	if len(names) == 0 {
		return nil
	}
	dir := filepath.Join(l.Net.Topology().StateDir, "agents")
	// A fence an earlier lab's agent kept would refuse this cluster's
	// commands (its terms start again at 1).
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	agents := map[string]*netlab.Proc{}
	defer func() {
		l.mu.Lock()
		l.agents = agents
		l.mu.Unlock()
	}()
	for _, n := range names {
		proc, err := l.runAgent(n)
		if err != nil {
			return err
		}
		agents[n] = proc
	}
	for _, n := range names {
		if err := waitServing(agents[n], agentStartLimit); err != nil {
			return fmt.Errorf("lab: replica agent of %s: %w", n, err)
		}
	}
	// The lab records when the address comes and goes on each of their
	// service links ("hold", "drop"): the chaos checker's view of who is
	// on the service address.
	for _, n := range names {
		record := func(held bool, err error) {
			what := "drop"
			if held {
				what = "hold"
			}
			_ = l.record(n, what, err)
		}
		if l.Net.ContainerAgent(n) {
			l.watchContainer(n, record)
			continue
		}
		if err := l.Net.WatchService(l.ctx, n, record); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	return nil
}

// runAgent starts the replica agent of n (its state file is kept).
func (l *Lab) runAgent(n string) (*netlab.Proc, error) {
	p := l.PKIDir()
	if l.Net.ContainerAgent(n) {
		proc, err := l.Net.RunAgent(n, l.cfg.Agent, "replica-agent", "-replica", n,
			"-listen", l.AgentAddr(n), "-container", ContainerName(n), "-subnet", l.Net.Topology().Subnet.String(),
			"-docker-host", DockerSocket,
			"-address", netip.PrefixFrom(l.Net.ReplicaAddr(n), 32).String(), "-state", l.agentStatePath(n),
			"-ca", filepath.Join(p, pki.CACertFile), "-cert", filepath.Join(p, pki.ReplicaCertFile(n)),
			"-key", filepath.Join(p, pki.ReplicaKeyFile(n)))
		if err != nil {
			return nil, fmt.Errorf("lab: replica agent of %s: %w", n, err)
		}
		return proc, nil
	}
	proc, err := l.Net.RunBeside(n, l.cfg.Agent, "replica-agent", "-replica", n,
		"-listen", l.AgentAddr(n), "-interface", l.Net.ServiceDev(),
		"-address", l.Net.ServicePrefix(n).String(), "-state", l.agentStatePath(n),
		"-ca", filepath.Join(p, pki.CACertFile), "-cert", filepath.Join(p, pki.ReplicaCertFile(n)),
		"-key", filepath.Join(p, pki.ReplicaKeyFile(n)))
	if err != nil {
		return nil, fmt.Errorf("lab: replica agent of %s: %w", n, err)
	}
	return proc, nil
}

// KillAgent kills the replica agent of an address-handover replica
// (SIGKILL); the replica and its address stay as they are.
func (l *Lab) KillAgent(replica string) error {
	l.mu.Lock()
	p := l.agents[replica]
	l.mu.Unlock()
	if p == nil {
		return fmt.Errorf("lab: %q has no replica agent", replica)
	}
	err := p.Signal(syscall.SIGKILL)
	select {
	case <-p.Done():
	case <-time.After(3 * time.Second):
	}
	return l.record(replica, "agent-kill", err)
}

// StartAgent starts a killed replica agent again, with its state file
// (the fence it kept), and waits until it serves.
func (l *Lab) StartAgent(replica string) error {
	l.mu.Lock()
	old := l.agents[replica]
	l.mu.Unlock()
	if old == nil {
		return fmt.Errorf("lab: %q has no replica agent", replica)
	}
	if !exited(old) {
		return nil
	}
	p, err := l.runAgent(replica)
	if err == nil {
		err = waitServing(p, agentStartLimit)
	}
	if p != nil {
		l.mu.Lock()
		l.agents[replica] = p
		l.mu.Unlock()
	}
	return l.record(replica, "agent-start", err)
}

// CutAgent cuts an address-handover replica's management link off (no
// node reaches its agent) or, with up, connects it again.
func (l *Lab) CutAgent(replica string, up bool) error {
	what := "agent-cut"
	if up {
		what = "agent-heal"
	}
	return l.record(replica, what, l.Net.SetAgentLink(replica, up))
}

// rogueTick is how often a rogue replica puts the address back and
// announces it.
const rogueTick = 100 * time.Millisecond

// Rogue makes an address-handover replica a compromised one until ctx
// ends or d has passed: it puts the service address on its service link
// and announces it every rogueTick, whatever its agent was told — after
// a release, the address comes back at once. The guest is replaced by
// a revert, and so is the rogue: it stops at the replica's next revert.
// Only the platform's fence (its NIC detach) takes it off the network.
func (l *Lab) Rogue(ctx context.Context, replica string, d time.Duration) error {
	if !l.isAddress(replica) {
		return fmt.Errorf("lab: %q is no address-handover replica", replica)
	}
	claim := func() { _ = l.Net.ClaimService(replica) }
	if v := l.ctrView(replica); v != nil {
		claim = func() {
			if _, err := v.Claim(); err == nil {
				_ = v.Announce(1, 0)
			}
		}
	}
	start := time.Now()
	_ = l.record(replica, "rogue-start", nil)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		rctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		t := time.NewTicker(rogueTick)
		defer t.Stop()
		for {
			reverted := slices.ContainsFunc(l.Events(start), func(e LabEvent) bool { return e.Replica == replica && e.What == "revert" })
			if reverted {
				_ = l.record(replica, "rogue-end", nil)
				return
			}
			claim()
			select {
			case <-rctx.Done():
				_ = l.record(replica, "rogue-end", nil)
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

// agentCommandRE matches an agent's log line of a command it carried out.
var agentCommandRE = regexp.MustCompile(`^time=(\S+) level=\w+ msg="command carried out" replica=(\S+) action=(\w+) caller=\S* term=(\d+) generation=(\d+)`)

// AgentCommands are the commands every replica agent carried out since
// since, as their logs say, in each agent's order.
func (l *Lab) AgentCommands(since time.Time) ([]chaos.AgentCommand, error) {
	var out []chaos.AgentCommand
	for _, n := range l.cfg.addressReplicas() {
		b, err := os.ReadFile(filepath.Join(l.Net.LogDir(), n+"-"+filepath.Base(l.cfg.Agent)+".log"))
		if err != nil {
			return nil, fmt.Errorf("lab: agent log of %s: %w", n, err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			m := agentCommandRE.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil || at.Before(since) {
				continue
			}
			term, _ := strconv.ParseUint(m[4], 10, 64)
			gen, _ := strconv.ParseUint(m[5], 10, 64)
			out = append(out, chaos.AgentCommand{At: at, Replica: m[2], Action: m[3], Term: term, Generation: gen})
		}
	}
	return out, nil
}

// waitServing waits until an agent's log says it serves, or it exits.
func waitServing(p *netlab.Proc, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		// The log is appended to; this start's lines follow its header.
		b, _ := os.ReadFile(p.LogPath())
		s := string(b)
		if i := strings.LastIndex(s, "--- "); i >= 0 {
			s = s[i:]
		}
		if strings.Contains(s, "replica agent serving") {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("exited (%v): %s", p.Err(), strings.TrimSpace(s))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not serving after %s: %s", limit, strings.TrimSpace(s))
		}
	}
}

// stopAgents asks every agent to stop (SIGTERM) and waits a moment; Down's
// netlab teardown kills whatever is left.
func (l *Lab) stopAgents() {
	l.mu.Lock()
	agents := l.agents
	l.agents = nil
	l.mu.Unlock()
	for _, p := range agents {
		_ = p.Signal(syscall.SIGTERM)
	}
	for _, p := range agents {
		select {
		case <-p.Done():
		case <-time.After(3 * time.Second):
		}
	}
}

// AgentStatus is what the lab measures of an address-handover replica's
// agent: its process, and whether its service link holds the service
// address now (read from the kernel in the replica's namespace, not asked
// of the agent).
type AgentStatus struct {
	Addr string `json:"addr"`
	// Pid is the agent's process, 0 once it has exited.
	Pid int `json:"pid"`
	// Held says whether the service link holds the address; nil when it
	// could not be read (HeldErr says why).
	Held    *bool  `json:"held,omitempty"`
	HeldErr string `json:"held_err,omitempty"`
}

// agentStatus measures an address-handover replica's agent (nil for any
// other replica).
func (l *Lab) agentStatus(replica string) *AgentStatus {
	if !l.isAddress(replica) {
		return nil
	}
	st := &AgentStatus{Addr: l.AgentAddr(replica)}
	l.mu.Lock()
	p := l.agents[replica]
	l.mu.Unlock()
	if p != nil && !exited(p) {
		st.Pid = p.Pid()
	}
	held, err := l.holds(replica)
	if err != nil {
		st.HeldErr = err.Error()
	} else {
		st.Held = &held
	}
	return st
}

// Reset takes the service address off an address-handover replica's
// service link (the Mirror's revert and power-off); nothing for the
// others, whose service link carries the address all the time.
func (p procs) Reset(name string) error {
	l := p.l
	if !l.Net.AddressHandover(name) {
		return nil
	}
	removed, err := l.Net.DropService(name)
	if removed || err != nil {
		return l.record(name, "drop-address", err)
	}
	return nil
}
