package lab

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/lab/chaos"
	"github.com/ars-project/ars/lab/netlab"
)

// The chaos runner: one schedule of lab/chaos on a running lab with
// nodes, recorded as a chaos.History for the checker (lab/DESIGN.md,
// "Chaos").

// ChaosSampleEvery is how often a run polls every node's status (with its
// state digest) and the vCenter's sessions.
const ChaosSampleEvery = 250 * time.Millisecond

// ChaosReady waits (until ctx ends) for a healthy lab: every node running,
// linked and answering, all naming one leader with every node a voter and
// every member alive in its gossip, each having applied what the leader
// had committed when it was asked; the
// service steady (Steady, no dwell); every committed alert answered; and at
// most one node's vCenter session, the leader's. It returns why not when
// ctx ends first. This is the check before and after each schedule.
func (l *Lab) ChaosReady(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	why := ""
	for {
		w := l.chaosUnready(ctx)
		if w == "" {
			return nil
		}
		if ctx.Err() == nil || why == "" {
			// A check cut short by ctx's end says only that (chaos seed
			// 90 reported a status call's deadline): keep the one before.
			why = w
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: not healthy: %s: %w", why, ctx.Err())
		case <-tick.C:
		}
	}
}

func (l *Lab) chaosUnready(ctx context.Context) string {
	nodes := l.Net.Topology().Nodes
	leader := ""
	applied := map[string]uint64{}
	var leaderCommit uint64
	for _, n := range l.nodes.list() {
		if n.Pid == 0 {
			return "node " + n.Name + " is not running"
		}
		if up, err := l.Net.NodeLinked(n.Name); err != nil || !up {
			return "node " + n.Name + " is cut off"
		}
		if bad, err := l.Net.NodeLinkFaulty(n.Name); err != nil || bad {
			return "node " + n.Name + "'s link is degraded"
		}
		if l.cfg.NodeDisks {
			if fs, err := mountsBelow("/proc/self/mountinfo", l.nodes.dir); err != nil || !slices.Contains(fs, l.nodes.dataDir(n.Name)) {
				return "node " + n.Name + " has no disk of its own mounted"
			}
		}
		c, err := l.Client(n.Name, "reader")
		if err != nil {
			return err.Error()
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := c.Status(cctx)
		cancel()
		defer c.Close()
		switch {
		case err != nil:
			return fmt.Sprintf("node %s: %v", n.Name, err)
		case st.Leader == "":
			return "node " + n.Name + " knows no leader"
		case leader != "" && st.Leader != leader:
			return fmt.Sprintf("nodes disagree on the leader (%s, %s)", leader, st.Leader)
		case st.Voters != len(nodes):
			return fmt.Sprintf("node %s counts %d voters, want %d", n.Name, st.Voters, len(nodes))
		case st.Disk != nil && !st.Disk.Healthy:
			return fmt.Sprintf("node %s: data directory unhealthy: %s", n.Name, st.Disk.Cause)
		}
		leader = st.Leader
		applied[n.Name] = st.AppliedIndex
		if n.Name == st.Leader {
			leaderCommit = st.CommitIndex
		}
		cctx, cancel = context.WithTimeout(ctx, time.Second)
		ms, err := c.Members(cctx)
		cancel()
		if err != nil {
			return fmt.Sprintf("node %s: members: %v", n.Name, err)
		}
		alive := 0
		for _, m := range ms {
			if m.Status == "alive" {
				alive++
			}
		}
		if alive != len(nodes) {
			return fmt.Sprintf("node %s sees %d of %d members alive in gossip", n.Name, alive, len(nodes))
		}
	}
	// Every node caught up: a node just restarted holds its last
	// snapshot's state until it has applied what the leader committed.
	for _, n := range nodes {
		if applied[n] < leaderCommit {
			return fmt.Sprintf("node %s has applied %d of the leader's %d", n, applied[n], leaderCommit)
		}
	}
	s, err := l.service(ctx)
	if why := l.unsteady(s, err, 0); why != "" {
		return why
	}
	var alerts []fsmAlert
	err = l.leaderFirst(ctx, time.Second, func(ctx context.Context, c *api.Client) error {
		as, err := c.Alerts(ctx, l.cfg.Service, api.MaxAlertListLimit)
		for _, a := range as {
			alerts = append(alerts, fsmAlert{a.ID, a.Outcome})
		}
		return err
	})
	if err != nil {
		return "alerts: " + err.Error()
	}
	for _, a := range alerts {
		if a.outcome == "" {
			return "alert " + a.id + " is not answered yet"
		}
	}
	ss, err := l.VCSessions(ctx)
	if err != nil {
		return err.Error()
	}
	for _, s := range ss {
		if s.Node != leader {
			return fmt.Sprintf("a vCenter session of %q (not the leader) is alive", s.Node)
		}
	}
	if len(ss) > 1 {
		return fmt.Sprintf("%d vCenter sessions of the leader", len(ss))
	}
	if f := l.VCFaults(); len(f) > 0 {
		return "vCenter faults in force"
	}
	return ""
}

type fsmAlert struct{ id, outcome string }

// RunSchedule runs s from a healthy lab: it carries out each step at its
// time (attacks on the replica active then, node faults on the leader or a
// follower then, vCenter faults), undoes each fault after its duration,
// heals everything at the schedule's end and waits up to readyLimit for
// a healthy lab, polling every node and the vCenter's sessions
// throughout. The history is returned even with an error (which says the
// run could not start or record).
func (l *Lab) RunSchedule(ctx context.Context, s chaos.Schedule, readyLimit time.Duration) (chaos.History, error) {
	h := chaos.History{Seed: s.Seed, Schedule: s}
	if l.nodes == nil {
		return h, errors.New("lab: chaos needs a lab with nodes")
	}
	h.Start = time.Now()
	h.Linked = l.linked()
	h.Address = l.cfg.addressReplicas()
	for _, n := range h.Address {
		if held, err := l.Net.HoldsService(n); err == nil && held {
			h.Holding = append(h.Holding, n)
		}
	}

	smp := newSampler(l)
	sctx, stopSampling := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { smp.run(sctx) })

	type action struct {
		at   time.Duration
		step int
		undo bool
	}
	var acts []action
	for i, st := range s.Steps {
		acts = append(acts, action{at: st.At, step: i})
		if st.Duration > 0 && (st.Kind.IsNodeFault() || st.Kind.IsLinkFault() || st.Kind.IsDiskFault() ||
			st.Kind == chaos.AgentKill || st.Kind == chaos.AgentCut) {
			acts = append(acts, action{at: st.End(), step: i, undo: true})
		}
	}
	sort.SliceStable(acts, func(i, j int) bool { return acts[i].at < acts[j].at })
	h.Injections = make([]chaos.Injection, len(s.Steps))
	for i, st := range s.Steps {
		h.Injections[i].Step = st
	}
	var runErr error
	for _, a := range acts {
		if err := sleepUntil(ctx, h.Start.Add(a.at)); err != nil {
			runErr = err
			break
		}
		in := &h.Injections[a.step]
		if a.undo {
			l.undo(in)
		} else {
			l.inject(ctx, in, s.Seed)
		}
	}
	if runErr == nil {
		runErr = sleepUntil(ctx, h.Start.Add(s.Length))
	}
	if err := l.Heal(); err != nil {
		runErr = errors.Join(runErr, err)
	}
	h.Healed = time.Now()
	for i := range h.Injections {
		if in := &h.Injections[i]; (in.Step.Kind.IsNodeFault() || in.Step.Kind.IsLinkFault() || in.Step.Kind.IsDiskFault() ||
			in.Step.Kind == chaos.AgentKill || in.Step.Kind == chaos.AgentCut) && in.Done() && in.Until.IsZero() {
			in.Until = h.Healed
		}
	}
	if runErr == nil {
		h.Injections = append(h.Injections, l.restartAfterDiskFaults(ctx, h.Injections, s.Seed)...)
	}
	if runErr == nil {
		rctx, cancel := context.WithTimeout(ctx, readyLimit)
		err := l.ChaosReady(rctx)
		cancel()
		h.Ready = err == nil
		if err != nil {
			h.NotReady = err.Error()
		}
	} else {
		h.NotReady = "the run stopped: " + runErr.Error()
	}
	stopSampling()
	wg.Wait()
	h.Samples = smp.take()
	smp.close()

	// What the cluster recorded and what the data path saw.
	if sv, err := l.service(ctx); err == nil {
		h.Switches = sv.History
	} else {
		runErr = errors.Join(runErr, err)
	}
	err := l.leaderFirst(ctx, 2*time.Second, func(ctx context.Context, c *api.Client) error {
		var err error
		h.Alerts, err = c.Alerts(ctx, l.cfg.Service, api.MaxAlertListLimit)
		return err
	})
	runErr = errors.Join(runErr, err)
	h.End = time.Now()
	h.AgentCommands, err = l.AgentCommands(h.Start)
	runErr = errors.Join(runErr, err)
	for _, e := range l.Events(h.Start) {
		h.Events = append(h.Events, chaos.Event{At: e.At, Replica: e.Replica, Node: e.Node, What: e.What, Detail: e.Detail, Err: e.Err})
	}
	if o, err := l.Outage(h.Start, h.End.Add(-ClientTimeout)); err == nil {
		for _, g := range o.Spans {
			h.Gaps = append(h.Gaps, chaos.Gap{Start: g.Start, End: g.End, Lost: g.Lost, Open: g.Open})
		}
	}
	return h, runErr
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// inject carries out one step, resolving its target now.
func (l *Lab) inject(ctx context.Context, in *chaos.Injection, seed int64) {
	st := in.Step
	in.At = time.Now()
	fail := func(err error) {
		if err != nil {
			in.Err = err.Error()
		}
	}
	switch {
	case st.Kind.IsAttack():
		s, err := l.service(ctx)
		if err != nil {
			fail(err)
			return
		}
		a, ok := s.Active()
		if !ok {
			in.Skipped = "no active replica"
			return
		}
		in.Replica = a.Name
		in.At = time.Now()
		if st.Kind == chaos.AttackDoS {
			fail(l.DoS(a.Name))
		} else {
			_, err := l.Exploit(a.Name)
			fail(err)
		}
	case st.Kind.IsNodeFault():
		node, ok := l.chaosTarget(ctx, in, seed)
		if !ok {
			return
		}
		switch st.Kind {
		case chaos.NodeKill:
			fail(l.KillNode(node))
		case chaos.NodeStop:
			fail(l.StopNode(node))
		case chaos.NodePartition:
			fail(l.PartitionNode(node))
		}
	case st.Kind.IsLinkFault():
		f, err := linkFault(st)
		if err != nil {
			fail(err)
			return
		}
		node, ok := l.chaosTarget(ctx, in, seed)
		if !ok {
			return
		}
		fail(l.DegradeNodeLink(node, f))
	case st.Kind.IsDiskFault():
		node, ok := l.chaosTarget(ctx, in, seed)
		if !ok {
			return
		}
		if st.Kind == chaos.DiskFull {
			fail(l.FillNodeDisk(node))
		} else {
			fail(l.FreezeNodeDisk(node))
		}
	case st.Kind == chaos.VCDelay || st.Kind == chaos.VCFail:
		f := VCFault{Method: st.Method, Delay: st.Delay, Fail: st.Kind == chaos.VCFail, Until: in.At.Add(st.Duration)}
		l.AddVCFault(f)
		in.Until = f.Until
	case st.Kind == chaos.VCTerminate:
		_, err := l.TerminateVCSessions(ctx)
		fail(err)
	case st.Kind.IsAgentFault():
		s, err := l.service(ctx)
		if err != nil {
			fail(err)
			return
		}
		var rs fsm.ReplicaState
		var ok bool
		if st.Target == chaos.TargetStandby {
			rs, ok = s.Standby()
		} else {
			rs, ok = s.Active()
		}
		if !ok {
			in.Skipped = "no " + st.Target + " replica"
			return
		}
		in.Replica = rs.Name
		if !l.isAddress(rs.Name) {
			in.Skipped = "the " + st.Target + " replica " + rs.Name + " takes the address by its NIC (no agent)"
			return
		}
		in.At = time.Now()
		switch st.Kind {
		case chaos.AgentKill:
			fail(l.KillAgent(rs.Name))
		case chaos.AgentCut:
			fail(l.CutAgent(rs.Name, false))
		case chaos.AgentRogue:
			fail(l.Rogue(ctx, rs.Name, st.Duration))
			in.Until = in.At.Add(st.Duration)
		}
	case st.Kind == chaos.DockerRestart:
		if !l.HasContainers() {
			in.Skipped = "the lab has no container replicas"
			return
		}
		// Synchronous: the steps after it wait for the engine (3-5 s).
		_, err := l.RestartEngine(ctx)
		in.Until = time.Now()
		fail(err)
	default:
		in.Skipped = "unknown step kind " + string(st.Kind)
	}
}

// linkFault is the netlab fault of a link step: loss both ways, or every
// frame in one direction.
func linkFault(st chaos.Step) (netlab.LinkFault, error) {
	f := netlab.LinkFault{Loss: st.Loss}
	if st.Kind == chaos.LinkDelay {
		f.DelayMS, f.JitterMS = int(st.Delay.Milliseconds()), int(st.Jitter.Milliseconds())
	}
	switch st.Direction {
	case "":
		f.ToNode, f.FromNode = true, true
	case chaos.DirToNode:
		f.ToNode = true
	case chaos.DirFromNode:
		f.FromNode = true
	default:
		return f, fmt.Errorf("lab: link fault direction %q: want %q, %q or none", st.Direction, chaos.DirToNode, chaos.DirFromNode)
	}
	return f, f.Validate()
}

// undo ends a node or link fault.
func (l *Lab) undo(in *chaos.Injection) {
	if !in.Done() {
		return
	}
	var err error
	switch in.Step.Kind {
	case chaos.NodeKill:
		err = l.StartNode(in.Node)
	case chaos.NodeStop:
		err = l.ContNode(in.Node)
	case chaos.NodePartition:
		err = l.HealNode(in.Node)
	case chaos.LinkLoss, chaos.LinkOneway, chaos.LinkDelay:
		err = l.ClearNodeLink(in.Node)
	case chaos.DiskFull:
		err = l.FreeNodeDisk(in.Node)
	case chaos.DiskStall:
		err = l.ThawNodeDisk(in.Node)
	case chaos.AgentKill:
		err = l.StartAgent(in.Replica)
	case chaos.AgentCut:
		err = l.CutAgent(in.Replica, true)
	}
	in.Until = time.Now()
	if err != nil {
		in.Err = "undo: " + err.Error()
	}
}

// chaosTarget resolves the node a node, link or disk step strikes and
// records it (and the time) in the injection; false, with the error
// recorded, if there is none.
func (l *Lab) chaosTarget(ctx context.Context, in *chaos.Injection, seed int64) (string, bool) {
	node, err := l.chaosNode(ctx, in.Step.Target, seed)
	if err != nil {
		in.Err = err.Error()
		return "", false
	}
	in.Node = node
	in.At = time.Now()
	return node, true
}

// restartAfterDiskFaults kills and starts again, one at a time, each node
// whose disk a schedule failed, once the disks are healed: the node must
// come back from what that disk holds (its log, stable store and
// snapshots), and the samples that follow compare its state digest with
// the others'. Each restart is returned as an injection of kind
// NodeRestart (Target: whether the node led then), which the checker
// counts like a node fault.
func (l *Lab) restartAfterDiskFaults(ctx context.Context, ins []chaos.Injection, seed int64) []chaos.Injection {
	var out []chaos.Injection
	done := map[string]bool{}
	for _, fault := range ins {
		if !fault.Step.Kind.IsDiskFault() || !fault.Done() || done[fault.Node] {
			continue
		}
		done[fault.Node] = true
		in := chaos.Injection{Step: chaos.Step{Kind: chaos.NodeRestart, Target: chaos.TargetFollower}, Node: fault.Node}
		if leader, _ := l.Leader(ctx); leader == fault.Node {
			in.Step.Target = chaos.TargetLeader
		}
		in.At = time.Now()
		err := l.KillNode(fault.Node)
		if err == nil {
			err = l.StartNode(fault.Node)
		}
		in.Until = time.Now()
		if err != nil {
			in.Err = err.Error()
		}
		out = append(out, in)
	}
	return out
}

// chaosNode resolves a node fault's target: the leader now, or a follower
// (which one follows from the seed), or a node by name.
func (l *Lab) chaosNode(ctx context.Context, target string, seed int64) (string, error) {
	nodes := l.Net.Topology().Nodes
	if slices.Contains(nodes, target) {
		return target, nil
	}
	leader, err := l.Leader(ctx)
	if leader == "" {
		return "", fmt.Errorf("lab: no leader to pick a %s from: %w", target, err)
	}
	switch target {
	case chaos.TargetLeader:
		return leader, nil
	case chaos.TargetFollower:
		var fs []string
		for _, n := range nodes {
			if n != leader {
				fs = append(fs, n)
			}
		}
		if len(fs) == 0 {
			return "", errors.New("lab: no follower")
		}
		return fs[int(uint64(seed)%uint64(len(fs)))], nil
	}
	return "", fmt.Errorf("lab: unknown node target %q", target)
}

// sampler polls every node's status (with its state digest) and the
// vCenter's sessions, keeping one API client per node.
type sampler struct {
	l       *Lab
	mu      sync.Mutex
	samples []chaos.Sample
	clients map[string]*api.Client
}

func newSampler(l *Lab) *sampler {
	return &sampler{l: l, clients: map[string]*api.Client{}}
}

func (s *sampler) run(ctx context.Context) {
	tick := time.NewTicker(ChaosSampleEvery)
	defer tick.Stop()
	for {
		s.sample(ctx)
		select {
		case <-ctx.Done():
			s.sample(context.Background())
			return
		case <-tick.C:
		}
	}
}

func (s *sampler) client(node string) (*api.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.clients[node]; c != nil {
		return c, nil
	}
	c, err := s.l.Client(node, "reader")
	if err != nil {
		return nil, err
	}
	s.clients[node] = c
	return c, nil
}

func (s *sampler) sample(ctx context.Context) {
	nodes := s.l.Net.Topology().Nodes
	smp := chaos.Sample{At: time.Now(), Nodes: make([]chaos.NodeSample, len(nodes))}
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			ns := chaos.NodeSample{Node: n}
			defer func() { smp.Nodes[i] = ns }()
			c, err := s.client(n)
			if err != nil {
				ns.Err = err.Error()
				return
			}
			cctx, cancel := context.WithTimeout(ctx, 400*time.Millisecond)
			defer cancel()
			st, err := c.StatusDigest(cctx)
			if err != nil {
				ns.Err = err.Error()
				return
			}
			ns.State, ns.Leader, ns.Term, ns.Voters, ns.Index, ns.Digest = st.State, st.Leader, st.Term, st.Voters, st.StateIndex, st.StateDigest
		})
	}
	vctx, cancel := context.WithTimeout(ctx, time.Second)
	ss, err := s.l.VCSessions(vctx)
	cancel()
	if err != nil {
		smp.SessionsErr = err.Error()
	}
	for _, v := range ss {
		smp.Sessions = append(smp.Sessions, chaos.Session{Key: v.Key, Node: v.Node})
	}
	wg.Wait()
	s.mu.Lock()
	s.samples = append(s.samples, smp)
	s.mu.Unlock()
}

func (s *sampler) take() []chaos.Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.samples)
}

func (s *sampler) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.clients {
		c.Close()
	}
	s.clients = nil
}
