package fsm

import (
	"fmt"
	"slices"
)

// Format levels. Decoding is strict, so a node meets an entry written by a
// newer version as an unknown command or an unknown field and halts
// (Fatal). A rolling upgrade runs old and new nodes side by side; to keep
// the old ones applying, every entry has a format level — the lowest level
// a node must read to apply it — and a leader writes an entry only when
// every voter reads its level (cluster.Cluster.Apply; each node advertises
// FormatLevel in gossip). A node that advertises none reads BaseLevel.
//
// Levels only grow, and each names what it added; raising FormatLevel
// is part of any change that adds a command type, a field a node
// built before it would refuse, or a value it would refuse (the old node
// would refuse the entry while the new ones apply it, and their states
// would differ).
//
//	1  what ars 0.1.0 reads (the base)
//	2  the switch.request command (and the ledger's "manual" records it
//	   creates); the mode "parallel" in a service's policy or a switch;
//	   a switch.done with the leader's measurements (outage, probes,
//	   exposure); a VM replica naming its vCenter
//	3  the notify.cursor command (how far each notification sink got),
//	   and the "notify" cursors it adds to a snapshot
//	4  the leader, member and verdict records (the event stream's
//	   leader changes, membership changes and DoS verdicts that switched
//	   nothing)
//	5  a replica's health_addr and the probe's standby_interval and
//	   standby_failures (the leader's standby health probes)
//	6  a replica's handover and agent (address handover), and a
//	   switch.done's handover and old_held_ms
//
// Everything a release adds shares one level: a level says what a
// version reads, and nodes of one version read the same.
const (
	BaseLevel   = 1
	FormatLevel = 6
)

// Level is the lowest format level a node must read to apply c.
func Level(c Command) int {
	switch c := c.(type) {
	case Leader, Member, Verdict:
		return 4
	case NotifyCursor:
		return 3
	case SwitchRequest:
		return 2
	case ServiceApply:
		if c.Spec.HasAddressHandover() {
			return 6
		}
		if c.Spec.HasHealthAddr() || c.Spec.Probe.StandbyInterval != 0 || c.Spec.Probe.StandbyFailures != 0 {
			return 5
		}
		if c.Spec.Policy.ExploitMode == ModeParallel || c.Spec.Policy.DoSMode == ModeParallel ||
			slices.ContainsFunc(c.Spec.Replicas, func(r ReplicaSpec) bool { return r.VCenter != "" }) {
			return 2
		}
	case Switch:
		if c.Mode == ModeParallel {
			return 2
		}
	case SwitchDone:
		if c.Handover != "" || c.OldHeldMS != nil {
			return 6
		}
		if c.OutageMS != nil || c.ProbesSent != nil || c.ProbesLost != nil || c.ExposureMS != nil {
			return 2
		}
	}
	return BaseLevel
}

// NeedsUpgrade returns the error a leader answers an entry of level lvl
// with while behind (the voters that read less, as "name (level N)") do
// not read it.
func NeedsUpgrade(t CommandType, lvl int, behind []string) error {
	return fmt.Errorf("%w: a %s entry of this form needs log format level %d, and %s: upgrade every node first",
		ErrNeedsUpgrade, t, lvl, behindText(behind))
}

func behindText(behind []string) string {
	switch len(behind) {
	case 0:
		return "a voter does not read it"
	case 1:
		return "voter " + behind[0] + " does not read it"
	}
	s := "voters "
	for i, b := range behind {
		if i > 0 {
			s += ", "
		}
		s += b
	}
	return s + " do not read it"
}
