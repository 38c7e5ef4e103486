package chaos

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// Kind is what a step does.
type Kind string

// Attacks and faults a schedule interleaves.
const (
	// AttackDoS wedges the replica active when the step runs; AttackExploit
	// writes an AppArmor denial into its audit log.
	AttackDoS     Kind = "attack-dos"
	AttackExploit Kind = "attack-exploit"
	// NodeKill kills a node with SIGKILL and starts it again after
	// Duration; NodeStop suspends it (SIGSTOP) for Duration; NodePartition
	// cuts it off the lab network for Duration.
	NodeKill      Kind = "node-kill"
	NodeStop      Kind = "node-stop"
	NodePartition Kind = "node-partition"
	// VCDelay delays the nodes' calls of Method by Delay for Duration;
	// VCFail fails them for Duration; VCTerminate terminates every node's
	// vCenter session (the driver must log in again by itself).
	VCDelay     Kind = "vc-delay"
	VCFail      Kind = "vc-fail"
	VCTerminate Kind = "vc-terminate"
	// DockerRestart restarts the Docker engine that runs container
	// replicas. The lab has none yet: the runner skips it unless the lab
	// has container replicas (Options.Containers), and Generate emits it
	// only then.
	DockerRestart Kind = "docker-restart"
	// LinkLoss drops Loss percent of the frames on one node's link, both
	// ways, for Duration; LinkOneway drops every frame in Direction only
	// (to or from the node): a one-way partition. The link stays up.
	LinkLoss   Kind = "link-loss"
	LinkOneway Kind = "link-oneway"
	// LinkDelay holds every frame on one node's link, both ways, for
	// Delay give or take a uniform Jitter, for Duration (a slow, jittery
	// path: a WAN link, a congested switch). The link stays up.
	LinkDelay Kind = "link-delay"
	// DiskFull fills one node's data directory's file system to the last
	// byte for Duration; DiskStall freezes it (every write and fsync, the
	// node's Raft log writes included, blocks) for Duration. The lab's
	// nodes need disks of their own (lab Config.NodeDisks).
	DiskFull  Kind = "disk-full"
	DiskStall Kind = "disk-stall"
	// NodeRestart is no step of a schedule: the runner records it when,
	// after the heal, it kills and restarts each node that had a disk
	// fault, so that the node reads its log and snapshots back from the
	// disk that failed (Target says whether it led then).
	NodeRestart Kind = "node-restart"
	// AgentKill kills the replica agent of the Target replica (active or
	// standby when the step runs) with SIGKILL and starts it again after
	// Duration; AgentCut cuts the agent's management link off for
	// Duration (the nodes cannot reach it; the replica serves on). Only
	// labs with address handover (Options.Agents).
	AgentKill Kind = "agent-kill"
	AgentCut  Kind = "agent-cut"
	// AgentRogue makes the active replica a compromised one for
	// Duration: once its agent has released the service address, the
	// replica puts it back and announces it every 100 ms, until the
	// fault ends or the platform cuts its link. Placed around an attack.
	AgentRogue Kind = "agent-rogue"
)

// Directions of a one-way link fault.
const (
	DirToNode   = "to"   // frames to the node are dropped
	DirFromNode = "from" // frames from the node are dropped
)

// Kinds lists every kind, attacks first.
var Kinds = []Kind{AttackDoS, AttackExploit, NodeKill, NodeStop, NodePartition, VCDelay, VCFail, VCTerminate, DockerRestart, LinkLoss, LinkOneway, LinkDelay, DiskFull, DiskStall, NodeRestart,
	AgentKill, AgentCut, AgentRogue}

// IsAttack reports whether k is an attack (not a fault).
func (k Kind) IsAttack() bool { return k == AttackDoS || k == AttackExploit }

// IsNodeFault reports whether k takes a node out for a while.
func (k Kind) IsNodeFault() bool {
	return k == NodeKill || k == NodeStop || k == NodePartition || k == NodeRestart
}

// IsDiskFault reports whether k fails a node's disk for a while.
func (k Kind) IsDiskFault() bool { return k == DiskFull || k == DiskStall }

// IsAgentFault reports whether k is a fault of a replica agent.
func (k Kind) IsAgentFault() bool { return k == AgentKill || k == AgentCut || k == AgentRogue }

// IsLinkFault reports whether k degrades a node's link for a while.
func (k Kind) IsLinkFault() bool { return k == LinkLoss || k == LinkOneway || k == LinkDelay }

// Targets of node faults.
const (
	TargetLeader   = "leader"   // the node that leads when the step runs
	TargetFollower = "follower" // a node that does not
	TargetActive   = "active"   // attacks: the replica active when the step runs
	TargetStandby  = "standby"  // agent faults: the replica standby when the step runs
)

// Step is one attack or fault, At after the schedule's start.
type Step struct {
	At       time.Duration `json:"at"`
	Kind     Kind          `json:"kind"`
	Target   string        `json:"target,omitempty"`
	Method   string        `json:"method,omitempty"`
	Delay    time.Duration `json:"delay,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	// Loss (percent) and Direction (DirToNode, DirFromNode; "" both ways)
	// shape a link fault.
	Loss      int    `json:"loss,omitempty"`
	Direction string `json:"direction,omitempty"`
	// Jitter widens a link-delay step's Delay: each frame waits Delay ±
	// up to Jitter.
	Jitter time.Duration `json:"jitter,omitempty"`
}

func (s Step) String() string {
	out := fmt.Sprintf("%6.2fs %s", s.At.Seconds(), s.Kind)
	if s.Target != "" {
		out += " " + s.Target
	}
	if s.Method != "" {
		out += " " + s.Method
	}
	if s.Delay > 0 {
		out += " +" + s.Delay.String()
	}
	if s.Jitter > 0 {
		out += " ±" + s.Jitter.String()
	}
	if s.Loss > 0 && s.Direction == "" {
		out += fmt.Sprintf(" loss %d%%", s.Loss)
	}
	if s.Direction != "" {
		out += " " + s.Direction + " node"
	}
	if s.Duration > 0 {
		out += " for " + s.Duration.String()
	}
	return out
}

// End is when the step's fault is undone (At for an instant step).
func (s Step) End() time.Duration { return s.At + s.Duration }

// Schedule is what one run does, in step order (by At).
type Schedule struct {
	Seed   int64         `json:"seed"`
	Length time.Duration `json:"length"`
	Steps  []Step        `json:"steps"`
}

// Options shape Generate.
type Options struct {
	// Length is a schedule's length (default 20s, at least 10s): steps
	// start in its first part and every fault ends 3 s before it.
	Length time.Duration
	// Containers says the lab has container replicas: only then may a
	// schedule restart the Docker engine.
	Containers bool
	// Disks says the lab's nodes have disks of their own: only then may a
	// schedule fill or freeze one.
	Disks bool
	// Agents says the lab's replicas take the address through replica
	// agents (address handover): only then may a schedule kill, cut off
	// or turn one.
	Agents bool
}

// vcMethods are the methods a vCenter fault picks from: the critical path's
// reconfigure, the background power and revert tasks, the session check
// and the property collector's reads.
var vcMethods = []string{"ReconfigVM_Task", "PowerOnVM_Task", "SuspendVM_Task", "RevertToSnapshot_Task", "RetrieveProperties", "RetrievePropertiesEx"}

// Gaps between attacks: an attack needs detection, a switch and the
// policy's min dwell before the next one is a fair test.
const (
	minAttackGap = 4 * time.Second
	tailQuiet    = 3 * time.Second
	// maxLinkLoss bounds a link-loss step's loss (percent).
	maxLinkLoss = 30
	// A link-delay step's delay is drawn from [minLinkDelay,
	// maxLinkDelay], its jitter from [0, delay/2].
	minLinkDelay = 10 * time.Millisecond
	maxLinkDelay = 300 * time.Millisecond
	// A disk-stall step lasts up to maxDiskStall: some end before the
	// product's disk.probe_timeout (2 s) finds them, some after.
	maxDiskStall = 5 * time.Second
	// diskRecovery keeps other node and link faults this long after a
	// disk fault ends: the node takes part in Raft again only once its
	// disk check passes (within 0.5 s while unhealthy) and it has caught
	// up (chaos seed 21: a node killed 1.5 s after another's disk was
	// freed took the leader's quorum).
	diskRecovery = 2 * time.Second
)

// Generate makes the schedule of seed: 2–3 attacks on the active replica
// (DoS or exploit), spaced at least 4 s apart; 1–3 node faults (kill,
// stop, partition; the leader half of the time), never two at once, so a
// quorum always remains (docs/design.md §4.5 is about a single node's loss);
// 0–2 vCenter faults (delays, failing methods, session termination),
// which may overlap anything; and 0–2 degraded links (loss of 1–30 % both
// ways, or a one-way partition, on one node's link; the leader half of the
// time), never during a node fault or another link fault; and 0–1
// delayed links (10–300 ms, with a jitter of up to half of it, both ways
// on one node's link), placed by the same rule; and, with Options.Disks,
// 0–1 disk faults (a node's file system full, or frozen for up to 5 s;
// the leader half of the time), placed by the same rule. Every other
// fault lasts 1–4 s; every fault ends 3 s before the schedule does. The
// same seed and options give the same schedule.
func Generate(seed int64, o Options) Schedule {
	if o.Length == 0 {
		o.Length = 20 * time.Second
	}
	o.Length = max(o.Length, 10*time.Second)
	r := rand.New(rand.NewPCG(uint64(seed), 0x6172732d6368616f)) // "ars-chao"
	last := o.Length - tailQuiet                                 // every fault ends by then
	ms := func(lo, hi time.Duration) time.Duration {             // uniform in [lo, hi), whole ms
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(r.Int64N(int64((hi-lo)/time.Millisecond)))*time.Millisecond
	}
	s := Schedule{Seed: seed, Length: o.Length}

	// Attacks.
	nAtt := 2 + r.IntN(2)
	at := ms(500*time.Millisecond, 2*time.Second)
	for i := 0; i < nAtt && at < last; i++ {
		k := AttackDoS
		if r.IntN(2) == 0 {
			k = AttackExploit
		}
		s.Steps = append(s.Steps, Step{At: at, Kind: k, Target: TargetActive})
		at += ms(minAttackGap, minAttackGap+3*time.Second)
	}

	// Node faults, one at a time.
	nodeKinds := []Kind{NodeKill, NodeStop, NodePartition}
	nNode := 1 + r.IntN(3)
	free := time.Duration(0)
	var busy [][2]time.Duration // node and link faults, with their margin
	for i := 0; i < nNode; i++ {
		d := ms(time.Second, 4*time.Second)
		start := ms(max(free, 300*time.Millisecond), last-d)
		if start+d > last || start < free {
			break
		}
		tgt := TargetLeader
		if r.IntN(2) == 0 {
			tgt = TargetFollower
		}
		s.Steps = append(s.Steps, Step{At: start, Kind: nodeKinds[r.IntN(len(nodeKinds))], Target: tgt, Duration: d})
		free = start + d + 500*time.Millisecond
		busy = append(busy, [2]time.Duration{start - 500*time.Millisecond, free})
	}

	// vCenter faults (and, with containers, an engine restart).
	nVC := r.IntN(3)
	for i := 0; i < nVC; i++ {
		kinds := []Kind{VCDelay, VCFail, VCTerminate}
		if o.Containers {
			kinds = append(kinds, DockerRestart)
		}
		k := kinds[r.IntN(len(kinds))]
		st := Step{Kind: k}
		switch k {
		case VCDelay:
			st.Method = vcMethods[r.IntN(len(vcMethods))]
			st.Delay = ms(100*time.Millisecond, 900*time.Millisecond)
			st.Duration = ms(time.Second, 4*time.Second)
		case VCFail:
			st.Method = vcMethods[r.IntN(len(vcMethods))]
			st.Duration = ms(time.Second, 3*time.Second)
		}
		st.At = ms(300*time.Millisecond, last-st.Duration)
		s.Steps = append(s.Steps, st)
	}
	// Degraded links, drawn last so that a seed keeps the attacks, node
	// and vCenter faults it drew before they existed. Never during a node
	// fault or another link fault (a lossy link beside a dead node is
	// close to a lost quorum): a draw that would overlap one is tried
	// again, up to four times, then dropped.
	place := func(st Step) {
		// A disk fault outlasts its step: the node is out of Raft until
		// its next disk check passes, and then catches up.
		tail := 500 * time.Millisecond
		if st.Kind.IsDiskFault() {
			tail = diskRecovery
		}
		for try := 0; try < 4; try++ {
			at := ms(300*time.Millisecond, last-st.Duration)
			if !slices.ContainsFunc(busy, func(b [2]time.Duration) bool { return at < b[1] && at+st.Duration+tail > b[0]+500*time.Millisecond }) {
				st.At = at
				s.Steps = append(s.Steps, st)
				busy = append(busy, [2]time.Duration{at - 500*time.Millisecond, at + st.Duration + tail})
				return
			}
		}
	}
	nLink := r.IntN(3)
	for i := 0; i < nLink; i++ {
		st := Step{Kind: LinkLoss, Target: TargetLeader}
		if r.IntN(2) == 0 {
			st.Kind = LinkOneway
		}
		if r.IntN(2) == 0 {
			st.Target = TargetFollower
		}
		if st.Kind == LinkLoss {
			st.Loss = 1 + r.IntN(maxLinkLoss)
		} else {
			st.Loss = 100
			st.Direction = DirToNode
			if r.IntN(2) == 0 {
				st.Direction = DirFromNode
			}
		}
		st.Duration = ms(time.Second, 4*time.Second)
		place(st)
	}
	// Delayed links, drawn after everything else for the same reason,
	// and placed by the same rule.
	nDelay := r.IntN(2)
	for i := 0; i < nDelay; i++ {
		st := Step{Kind: LinkDelay, Target: TargetLeader}
		if r.IntN(2) == 0 {
			st.Target = TargetFollower
		}
		st.Delay = ms(minLinkDelay, maxLinkDelay)
		st.Jitter = ms(0, st.Delay/2)
		st.Duration = ms(time.Second, 4*time.Second)
		place(st)
	}
	// Disk faults, drawn last of all (older seeds keep their steps), and
	// only for a lab with node disks, so a seed drawn without them is
	// the schedule it always was.
	if o.Disks {
		for i, n := 0, r.IntN(2); i < n; i++ {
			st := Step{Kind: DiskFull, Target: TargetLeader, Duration: ms(time.Second, 4*time.Second)}
			if r.IntN(2) == 0 {
				st.Kind, st.Duration = DiskStall, ms(time.Second, maxDiskStall)
			}
			if r.IntN(2) == 0 {
				st.Target = TargetFollower
			}
			place(st)
		}
	}
	// Agent faults, drawn after everything else (older seeds keep their
	// steps), only for a lab with agents. They may overlap anything: an
	// agent is no part of the cluster's quorum. A kill or a cut strikes
	// the standby (the next switch's target) or the active; a rogue
	// replica is the active, from shortly before an attack on it to
	// well after, so that it is released while rogue.
	if o.Agents {
		var attacks []Step
		for _, st := range s.Steps {
			if st.Kind.IsAttack() {
				attacks = append(attacks, st)
			}
		}
		for i, n := 0, r.IntN(3); i < n; i++ {
			st := Step{Kind: AgentKill, Target: TargetStandby, Duration: ms(time.Second, 4*time.Second)}
			switch r.IntN(3) {
			case 1:
				st.Kind = AgentCut
			case 2:
				st.Kind, st.Target = AgentRogue, TargetActive
			}
			if st.Kind != AgentRogue && r.IntN(2) == 0 {
				st.Target = TargetActive
			}
			if st.Kind == AgentRogue {
				if len(attacks) == 0 {
					continue
				}
				a := attacks[r.IntN(len(attacks))]
				st.At = max(a.At-500*time.Millisecond, 0)
				st.Duration = min(ms(2*time.Second, 4*time.Second), last-st.At)
				if st.Duration <= 0 {
					continue
				}
			} else {
				st.At = ms(300*time.Millisecond, last-st.Duration)
			}
			s.Steps = append(s.Steps, st)
		}
	}
	slices.SortStableFunc(s.Steps, func(a, b Step) int { return cmp.Compare(a.At, b.At) })
	return s
}
