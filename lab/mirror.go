// Package lab runs ars against real DNS servers on one machine: replicas
// are processes in network namespaces, VM replicas are VMs of an embedded
// vCenter simulator, and the lab applies what the controller does to those
// VMs (through the production govmomi code path) to the processes.
//
// This file is that last step, the Mirror: it takes the simulated VMs'
// state, as the simulator changes it (vmhook.go, before the change's task
// completes) and as lab/vcwatch reads it (the retry path), and makes the
// replica processes and their links follow (docs/design.md §7: powered on ↔ running, suspended ↔
// stopped (SIGSTOP), powered off ↔ killed, NIC connected ↔ linked to the
// service network, with a gratuitous ARP; a snapshot revert ↔ a fresh
// process). An address-handover replica's service address is its replica
// agent's business, not the Mirror's: the Mirror links it without an
// announcement and only takes the address off when the guest starts
// afresh (a revert, a power-off).
package lab

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/ars-project/ars/lab/vcwatch"
)

// Replicas is what the Mirror drives: the replica processes and their
// links to the service network. Every method is called for a replica the
// Mirror was given, and only when its state must change.
type Replicas interface {
	// Start starts the replica's server (a fresh process: its clean state).
	Start(name string) error
	// Kill stops it hard.
	Kill(name string) error
	// Suspend and Resume stop and continue the process (SIGSTOP/SIGCONT).
	Suspend(name string) error
	Resume(name string) error
	// Link connects the replica to the service network and announces its
	// address (gratuitous ARP; an address-handover replica's agent
	// announces instead, on a claim); Unlink disconnects it.
	Link(name string) error
	Unlink(name string) error
	// Reset gives the guest's network what it boots with: for an
	// address-handover replica, no service address on its service link
	// (its agent's next claim puts it back); nothing for the others. The
	// Mirror calls it before a kill for a revert or a power-off.
	Reset(name string) error
}

// procState is what the Mirror last made of a replica.
type procState struct {
	power  types.VirtualMachinePowerState
	linked bool
}

// Mirror applies simulated VM state to replicas. Safe for concurrent use.
type Mirror struct {
	r        Replicas
	names    []string
	mu       sync.Mutex
	applied  map[string]procState
	reverted map[string]bool
	// seq counts ApplyLive calls; live is the seq of each replica's last
	// one. A read marked before it is older than what ApplyLive applied.
	seq  uint64
	live map[string]uint64
}

// NewMirror returns a Mirror for the named replicas, all of which start
// powered off and unlinked (nothing running).
func NewMirror(r Replicas, names ...string) *Mirror {
	m := &Mirror{r: r, names: slices.Clone(names), applied: map[string]procState{}, reverted: map[string]bool{}, live: map[string]uint64{}}
	for _, n := range names {
		m.applied[n] = procState{power: types.VirtualMachinePowerStatePoweredOff}
	}
	return m
}

// Reverted records that the replica's VM was reverted to its snapshot: its
// process is replaced by a fresh one at the next Apply if it runs (the
// attack it carried is gone with the revert). Call it from the
// simulator's method hook on RevertToSnapshot_Task.
func (m *Mirror) Reverted(name string) {
	m.mu.Lock()
	m.reverted[name] = true
	m.mu.Unlock()
}

// Apply makes every replica follow states (by replica name; replicas not
// in states are left as they are), in three phases: power changes of the
// replicas that stay unlinked; then links; then unlinks, with the power
// changes of the unlinked replicas after them. Links come before unlinks
// because one watch update can carry both halves of a switch (the
// simulator attached the new replica and detached the old one between two
// reads): unlinking first would turn the controller's make-before-break
// into break-before-make and lose queries the real network would not. The
// newest link's gratuitous ARP moves the clients, and the old link goes
// microseconds later. It returns every error, joined; the state of a
// replica whose action failed is retried at the next Apply.
func (m *Mirror) Apply(states map[string]vcwatch.State) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.apply(states)
}

// ApplyLive applies the state of one replica as the simulator changes its
// VM (from the simulator's update hook, see followVMs): the newest state
// there is, so a read marked before it no longer applies to that replica
// (ApplyRead).
func (m *Mirror) ApplyLive(name string, state vcwatch.State) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	m.live[name] = m.seq
	return m.apply(map[string]vcwatch.State{name: state})
}

// Mark is the token to take just before reading the VMs' states that
// will go to ApplyRead.
func (m *Mirror) Mark() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seq
}

// ApplyRead is Apply for states read after Mark returned mark: a replica
// that ApplyLive changed since then is left out, as the read may predate
// the change (applying it would undo a link the simulator just made, until
// the next read).
func (m *Mirror) ApplyRead(states map[string]vcwatch.State, mark uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	fresh := make(map[string]vcwatch.State, len(states))
	for n, s := range states {
		if m.live[n] <= mark {
			fresh[n] = s
		}
	}
	return m.apply(fresh)
}

func (m *Mirror) apply(states map[string]vcwatch.State) error {
	var errs []error
	try := func(name, what string, f func(string) error) bool {
		if err := f(name); err != nil {
			errs = append(errs, fmt.Errorf("replica %s: %s: %w", name, what, err))
			return false
		}
		return true
	}
	unlinking := func(n string) bool {
		want, ok := states[n]
		return ok && m.applied[n].linked && !want.Attached()
	}
	// Power (and reverts) of the replicas that are not to be unlinked.
	for _, n := range m.names {
		if _, ok := states[n]; ok && !unlinking(n) {
			m.power(n, states[n], try)
		}
	}
	// Then links.
	var unlink []string
	for _, n := range m.names {
		if unlinking(n) {
			unlink = append(unlink, n)
			continue
		}
		want, ok := states[n]
		cur := m.applied[n]
		if !ok || cur.linked || !want.Attached() || cur.power != types.VirtualMachinePowerStatePoweredOn {
			continue
		}
		if try(n, "link", m.r.Link) {
			cur.linked = true
			m.applied[n] = cur
		}
	}
	// Then unlinks, each followed by the replica's power change.
	for _, n := range unlink {
		if !try(n, "unlink", m.r.Unlink) {
			continue
		}
		cur := m.applied[n]
		cur.linked = false
		m.applied[n] = cur
		m.power(n, states[n], try)
	}
	return errors.Join(errs...)
}

// power applies a revert (a fresh process) and the wanted power state to an
// unlinked replica.
func (m *Mirror) power(n string, want vcwatch.State, try func(string, string, func(string) error) bool) {
	cur := m.applied[n]
	if m.reverted[n] {
		// The snapshot's guest: no claimed address, a fresh process.
		if !try(n, "reset (revert)", m.r.Reset) {
			return
		}
		if cur.power != types.VirtualMachinePowerStatePoweredOff {
			if !try(n, "kill (revert)", m.r.Kill) {
				return
			}
			cur.power = types.VirtualMachinePowerStatePoweredOff
		}
	}
	delete(m.reverted, n)
	if cur.power != want.Power {
		cur.power = m.setPower(n, cur.power, want.Power, try)
	}
	m.applied[n] = cur
}

// setPower moves a replica's process from one power state to another and
// returns the state it reached.
func (m *Mirror) setPower(n string, from, to types.VirtualMachinePowerState, try func(string, string, func(string) error) bool) types.VirtualMachinePowerState {
	const (
		on   = types.VirtualMachinePowerStatePoweredOn
		off  = types.VirtualMachinePowerStatePoweredOff
		susp = types.VirtualMachinePowerStateSuspended
	)
	if to == off {
		// A guest powered off boots without the address it claimed.
		if try(n, "reset", m.r.Reset) && try(n, "kill", m.r.Kill) {
			return off
		}
		return from
	}
	if from == off {
		// Suspended while the lab was not looking, or powered on: run it
		// first (a fresh process).
		if !try(n, "start", m.r.Start) {
			return from
		}
		from = on
	}
	switch {
	case to == on && from == susp:
		if try(n, "resume", m.r.Resume) {
			return on
		}
	case to == susp && from == on:
		if try(n, "suspend", m.r.Suspend) {
			return susp
		}
	}
	return from
}

// Linked reports which replicas the Mirror has linked, in its order.
func (m *Mirror) Linked() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, n := range m.names {
		if m.applied[n].linked {
			out = append(out, n)
		}
	}
	return out
}

// Applied is what the Mirror last made of the replica: its power state
// and whether it is linked to the service network.
func (m *Mirror) Applied(name string) (power types.VirtualMachinePowerState, linked bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.applied[name]
	return s.power, s.linked
}
