package lab

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/lab/netlab"
	"github.com/ars-project/ars/pki"
)

// Address handover in the lab (Config.Handover "address"): every Linux VM
// replica takes the service address through its replica agent (`ars
// replica-agent`) instead of its NIC. netlab gives each such replica a
// management link the nodes reach whatever its service link does, and
// the service address hidden on lo, so that its server is bound to it
// all along; the agent runs in the replica's namespace beside the
// server, for the lab's whole life, and puts the address on the service
// link when the leader claims it.

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
// replica agent: in an address-handover lab, every Linux VM replica.
// Windows replicas (the agent has no tested implementation there) and
// containers (their endpoint carries the address) keep NIC handover.
func (c Config) addressHandover(r Replica) bool {
	return c.Handover == HandoverAddress && !r.isContainer() && r.OS == fsm.OSLinux
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
	p := l.PKIDir()
	agents := map[string]*netlab.Proc{}
	defer func() {
		l.mu.Lock()
		l.agents = agents
		l.mu.Unlock()
	}()
	for _, n := range names {
		proc, err := l.Net.RunBeside(n, l.cfg.Agent, "replica-agent", "-replica", n,
			"-listen", l.AgentAddr(n), "-interface", l.Net.ServiceDev(),
			"-address", l.Net.ServicePrefix(n).String(), "-state", l.agentStatePath(n),
			"-ca", filepath.Join(p, pki.CACertFile), "-cert", filepath.Join(p, pki.ReplicaCertFile(n)),
			"-key", filepath.Join(p, pki.ReplicaKeyFile(n)))
		if err != nil {
			return fmt.Errorf("lab: replica agent of %s: %w", n, err)
		}
		agents[n] = proc
	}
	for _, n := range names {
		if err := waitServing(agents[n], agentStartLimit); err != nil {
			return fmt.Errorf("lab: replica agent of %s: %w", n, err)
		}
	}
	return nil
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
	if !l.Net.AddressHandover(replica) {
		return nil
	}
	st := &AgentStatus{Addr: l.AgentAddr(replica)}
	l.mu.Lock()
	p := l.agents[replica]
	l.mu.Unlock()
	if p != nil && !exited(p) {
		st.Pid = p.Pid()
	}
	held, err := l.Net.HoldsService(replica)
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
