package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/lab/bench"
	"github.com/ars-project/ars/lab/netlab"
)

// Benchmark trials on a running lab with nodes. Each trial starts from a
// steady service (Steady), attacks, measures what the client saw and what
// the cluster recorded, and counts switches nobody asked for.

// Steady waits until the service is steady: no switch open, an active
// replica linked and answering, a standby running, the last switch at
// least dwell ago (so the policy's flap damping does not hold the next
// one back), and no query lost for the last half second.
func (l *Lab) Steady(ctx context.Context, dwell time.Duration) (fsm.Service, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var why string
	for {
		s, err := l.service(ctx)
		why = l.unsteady(s, err, dwell)
		if why == "" {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return s, fmt.Errorf("lab: the service did not become steady (%s): %w", why, ctx.Err())
		case <-tick.C:
		}
	}
}

// serves asks a replica's server directly, from inside its namespace,
// whatever its link: a warm standby answers before it is needed.
func (l *Lab) serves(name string) error {
	if r, _ := l.lookup(name); r.isContainer() {
		pid := l.ctrs.pid(name)
		if pid <= 0 {
			return fmt.Errorf("lab: container replica %s is not running", name)
		}
		return netlab.AnswersIn("/proc/"+strconv.Itoa(pid)+"/ns/net", netip.MustParseAddr("127.0.0.1"), 200*time.Millisecond)
	}
	return netlab.AnswersIn(filepath.Join("/run/netns", l.Net.Namespace(name)), l.Net.ReplicaAddr(name), 200*time.Millisecond)
}

// unsteady says why the service is not steady ("" if it is).
func (l *Lab) unsteady(s fsm.Service, err error, dwell time.Duration) string {
	if err != nil {
		return err.Error()
	}
	if why := l.unsettled(s, dwell); why != "" {
		return why
	}
	o, err := l.Outage(time.Now().Add(-500*time.Millisecond-ClientTimeout), time.Now().Add(-ClientTimeout))
	if err != nil {
		return err.Error()
	}
	if o.Sent == 0 || o.Lost > 0 {
		return "the client is not answered"
	}
	return ""
}

// unsettled is unsteady without the client, which measures the lab's
// service only: what the cluster and the lab show of any service.
func (l *Lab) unsettled(s fsm.Service, dwell time.Duration) string {
	if s.Intent != nil {
		return "a switch is open"
	}
	a, ok := s.Active()
	if !ok {
		return "no active replica"
	}
	if _, linked := l.applied(a.Name); !linked {
		return "the active replica is not linked"
	}
	sb, ok := s.Standby()
	if !ok {
		return "no standby"
	}
	if p, _ := l.applied(sb.Name); p != "poweredOn" {
		return "the standby is not running"
	}
	if err := l.serves(sb.Name); err != nil {
		return "the standby's server does not answer yet"
	}
	if l.isAddress(sb.Name) {
		// An address-handover standby is warm once it is linked without
		// the address: a switch to it is then one claim.
		if _, linked := l.applied(sb.Name); !linked {
			return "the address-handover standby is not linked yet"
		}
		if held, err := l.holds(sb.Name); err != nil || held {
			return "the address-handover standby holds the address"
		}
	}
	if n := len(s.History); n > 0 {
		h := s.History[n-1]
		if !h.Done {
			return "the last switch is not done"
		}
		if time.Since(time.Unix(0, h.DoneAt)) < dwell {
			return "within the dwell time of the last switch"
		}
	}
	return ""
}

// Trial runs one attack of kind ("dos" or "exploit") on the active
// replica: from a steady service, it attacks, waits for the switch and the
// service's recovery, then for settle more to see any switch nobody asked
// for. It returns the trial's measurements and the number of such false
// switches.
func (l *Lab) Trial(ctx context.Context, kind string, dwell, settle, limit time.Duration) (bench.Trial, int, error) {
	if _, err := l.Steady(ctx, dwell); err != nil {
		return bench.Trial{}, 0, err
	}
	resp, err := l.Attack(ctx, AttackRequest{Kind: kind, Active: true, Wait: true, Timeout: limit.String()})
	if err != nil {
		return bench.Trial{}, 0, err
	}
	return l.finish(ctx, resp, settle)
}

// LeaderLossTrial kills the leader node (SIGKILL) as a DoS on the active
// replica starts, measures the switch the surviving nodes make, then
// starts the node again and waits until it has rejoined.
func (l *Lab) LeaderLossTrial(ctx context.Context, dwell, settle, limit time.Duration) (bench.Trial, int, error) {
	if _, err := l.Steady(ctx, dwell); err != nil {
		return bench.Trial{}, 0, err
	}
	leader, err := l.Leader(ctx)
	if err != nil || leader == "" {
		return bench.Trial{}, 0, fmt.Errorf("lab: no leader before the trial: %v", err)
	}
	killed := make(chan error, 1)
	go func() { killed <- l.KillNode(leader) }()
	resp, err := l.Attack(ctx, AttackRequest{Kind: "dos", Active: true, Wait: true, Timeout: limit.String()})
	if kerr := <-killed; kerr != nil {
		return bench.Trial{}, 0, kerr
	}
	if err != nil {
		return bench.Trial{}, 0, err
	}
	t, falses, ferr := l.finish(ctx, resp, settle)
	if err := l.StartNode(leader); err != nil {
		return t, falses, err
	}
	if err := l.waitVoters(ctx, leader, 30*time.Second); err != nil {
		return t, falses, err
	}
	return t, falses, ferr
}

// ManagementLossTrial is leader-loss/dos for a system with one
// management node, the research system's: as the DoS on the active
// replica starts, every node is killed (SIGKILL), the leader first, so
// that none is left to take over — the lab's three nodes stand for the
// one, and nothing switches. It watches the client for bound and returns
// what it saw then: the whole bound is down. Afterwards it lets the
// wedged replica go, starts the nodes again and waits until they have a
// leader and every voter.
func (l *Lab) ManagementLossTrial(ctx context.Context, dwell, bound time.Duration) (bench.Trial, error) {
	s, err := l.Steady(ctx, dwell)
	if err != nil {
		return bench.Trial{}, err
	}
	a, ok := s.Active()
	if !ok {
		return bench.Trial{}, errors.New("lab: no active replica before the trial")
	}
	leader, err := l.Leader(ctx)
	if err != nil || leader == "" {
		return bench.Trial{}, fmt.Errorf("lab: no leader before the trial: %v", err)
	}
	nodes := append([]string{leader}, slices.DeleteFunc(slices.Clone(l.Net.Topology().Nodes), func(n string) bool { return n == leader })...)
	for _, n := range nodes {
		if err := l.KillNode(n); err != nil {
			return bench.Trial{}, err
		}
	}
	at := time.Now()
	if err := l.DoS(a.Name); err != nil {
		return bench.Trial{}, err
	}
	select {
	case <-ctx.Done():
		return bench.Trial{}, ctx.Err()
	case <-time.After(bound + ClientTimeout):
	}
	o, err := l.Outage(at, at.Add(bound))
	if err != nil {
		return bench.Trial{}, err
	}
	if err := l.unwedge(a.Name); err != nil {
		return bench.Trial{}, err
	}
	for _, n := range nodes {
		if err := l.StartNode(n); err != nil {
			return bench.Trial{}, err
		}
	}
	if err := l.waitVoters(ctx, leader, 30*time.Second); err != nil {
		return bench.Trial{}, err
	}
	// A node started again answers reads before it has applied the log
	// again; the next trial must not read an old service from it.
	if err := l.waitCaughtUp(ctx, 30*time.Second); err != nil {
		return bench.Trial{}, err
	}
	return bench.Trial{Downtime: o.Longest, Lost: o.Lost, Outages: o.Gaps}, nil
}

// waitCaughtUp waits until every node has applied the log up to the
// highest commit index any of them reports.
func (l *Lab) waitCaughtUp(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		applied, commit, err := l.indexes(ctx)
		if err == nil && caughtUp(applied, commit) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: the nodes did not catch up (applied %v, commit %d, %v): %w", applied, commit, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// indexes asks every node for its applied index, and returns them with
// the highest commit index reported.
func (l *Lab) indexes(ctx context.Context) (map[string]uint64, uint64, error) {
	applied := map[string]uint64{}
	var commit uint64
	for _, n := range l.Net.Topology().Nodes {
		c, err := l.Client(n, "reader")
		if err != nil {
			return nil, 0, err
		}
		st, err := c.Status(ctx)
		c.Close()
		if err != nil {
			return nil, 0, fmt.Errorf("node %s: %w", n, err)
		}
		applied[n] = st.AppliedIndex
		commit = max(commit, st.CommitIndex)
	}
	return applied, commit, nil
}

// caughtUp says whether every node has applied up to commit.
func caughtUp(applied map[string]uint64, commit uint64) bool {
	for _, a := range applied {
		if a < commit {
			return false
		}
	}
	return len(applied) > 0
}

// waitVoters waits until node answers and reports a leader and every node
// as a voter, and has applied what the leader had committed: a node that
// restarted holds the state it had when it died until the leader's
// replication, backed off while it was dead, catches it up. A trial that
// starts before then meets a second fault beside the one it measures (the
// restarted node's probes are about an activation that is over, so its
// votes do not count).
func (l *Lab) waitVoters(ctx context.Context, node string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	want := len(l.Net.Topology().Nodes)
	for {
		c, err := l.Client(node, "reader")
		if err != nil {
			return err
		}
		st, err := c.Status(ctx)
		c.Close()
		if err == nil && st.Leader != "" && st.Voters == want && st.State != "candidate" &&
			l.caughtUp(ctx, st.Leader, st.AppliedIndex) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: node %s did not rejoin (last: %+v, %v): %w", node, st, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// caughtUp reports whether applied reaches the leader's commit index.
func (l *Lab) caughtUp(ctx context.Context, leader string, applied uint64) bool {
	c, err := l.Client(leader, "reader")
	if err != nil {
		return false
	}
	defer c.Close()
	st, err := c.Status(ctx)
	return err == nil && applied >= st.CommitIndex
}

// finish turns an attack's answer into a trial and counts the switches
// that came after the one the attack caused.
func (l *Lab) finish(ctx context.Context, resp AttackResponse, settle time.Duration) (bench.Trial, int, error) {
	ev := resp.Event
	if ev == nil {
		return bench.Trial{}, 0, errors.New("lab: the attack was not measured")
	}
	t := bench.Trial{Downtime: ms(ev.Longest), Lost: ev.Lost, Switched: ev.Switch != nil, Outages: ev.Gaps}
	if ev.Switch == nil {
		t.Err = resp.Error
		if t.Err == "" {
			t.Err = "no switch"
		}
		return t, 0, nil
	}
	t.Detection, t.Switch = ms(ev.Switch.DetectionMS), ms(ev.Switch.SwitchMS)
	if e := ev.Switch.ExposureMS; e != nil {
		d := ms(*e)
		t.Exposure = &d
	}
	if resp.Error != "" {
		t.Err = resp.Error
	}
	falses, err := l.switchesAfter(ctx, ev.Switch.Generation, settle)
	return t, falses, err
}

// switchesAfter waits settle, then counts the switches recorded after gen.
func (l *Lab) switchesAfter(ctx context.Context, gen uint64, settle time.Duration) (int, error) {
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(settle):
	}
	s, err := l.service(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, h := range s.History {
		if h.Generation > gen {
			n++
		}
	}
	return n, nil
}

func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

// SetRotation re-applies the lab's service with another rotation policy
// and waits until the service reads back with it (from whichever node
// answers).
func (l *Lab) SetRotation(ctx context.Context, rotation string) error {
	l.cfg.Policy.Rotation = rotation
	if err := l.applyService(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		s, err := l.service(ctx)
		if err == nil && s.Spec.Policy.Rotation == rotation {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: the service does not read back with rotation %s (%v): %w", rotation, err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ImplAttackTrial attacks every replica of impl for d, starting with one
// of them active (switched to by hand if need be; under round-robin with
// the next in order as the standby, see staleStandby), and counts the outages:
// the DoS switches away from a replica of impl, each one a replica the
// attack took down while it served. (The client's gaps cannot tell them
// apart: a replica that fails as soon as it serves extends the gap of the
// one before it.) Downtime is the client's longest gap until the service
// was steady again. A switch during the attack is the answer to it, not a
// false one.
func (l *Lab) ImplAttackTrial(ctx context.Context, impl string, d, dwell time.Duration) (bench.Trial, error) {
	s, err := l.Steady(ctx, dwell)
	if err != nil {
		return bench.Trial{}, err
	}
	if a, _ := s.Active(); l.replica(a.Name).Impl == impl && staleStandby(s) {
		// The standby was picked under another rotation (SetRotation
		// picks none): switch away from impl, so that the switch back
		// below picks the next in round-robin order.
		other := ""
		for _, r := range l.cfg.Replicas {
			if r.Impl != impl {
				other = r.Name
				break
			}
		}
		if other != "" {
			if err := l.manualSwitch(ctx, other); err != nil {
				return bench.Trial{}, err
			}
			if s, err = l.Steady(ctx, dwell); err != nil {
				return bench.Trial{}, err
			}
		}
	}
	if a, _ := s.Active(); l.replica(a.Name).Impl != impl {
		first := ""
		for _, r := range l.cfg.Replicas {
			if r.Impl == impl {
				first = r.Name
				break
			}
		}
		if err := l.manualSwitch(ctx, first); err != nil {
			return bench.Trial{}, err
		}
		if s, err = l.Steady(ctx, dwell); err != nil {
			return bench.Trial{}, err
		}
	}
	at := time.Now()
	if _, err := l.DoSImpl(impl, d); err != nil {
		return bench.Trial{}, err
	}
	select {
	case <-ctx.Done():
		return bench.Trial{}, ctx.Err()
	case <-time.After(d):
	}
	after, err := l.Steady(ctx, 0)
	if err != nil {
		return bench.Trial{}, err
	}
	o, err := l.Outage(at, time.Now().Add(-ClientTimeout))
	if err != nil {
		return bench.Trial{}, err
	}
	t := bench.Trial{Downtime: o.Longest, Lost: o.Lost, Switched: after.Generation > s.Generation}
	for _, h := range after.History {
		if h.Generation <= s.Generation {
			continue
		}
		if t.Detection == 0 {
			t.Detection, t.Switch = ms(h.DetectionMS), ms(h.SwitchMS)
		}
		if h.Reason == "dos" && h.FromImpl == impl {
			t.Outages++
		}
	}
	return t, nil
}

// staleStandby says whether s rotates round-robin and its standby is not
// the next in order (as after a change of rotation, which keeps the
// standby). Under diverse rotation any standby of another implementation
// serves the trial alike.
func staleStandby(s fsm.Service) bool {
	if s.Spec.Policy.Rotation != fsm.RotationRoundRobin {
		return false
	}
	sb, ok := s.Standby()
	want, can := fsm.PickStandby(s, "")
	return ok && can && want != sb.Name
}

// manualSwitch asks the cluster to switch to replica (an operator switch)
// and waits until the service reads back at the switch's generation: a
// read may come from a node that has not applied it yet, and a trial
// must not take that node's old service for a steady one.
func (l *Lab) manualSwitch(ctx context.Context, replica string) error {
	var gen uint64
	err := l.anyNode(ctx, "operator", 10*time.Second, func(ctx context.Context, c *api.Client) error {
		resp, err := c.Switch(ctx, l.cfg.Service, api.SwitchRequest{To: replica, Reason: "bench: start from " + replica})
		gen = resp.Generation
		return err
	})
	if err != nil {
		return fmt.Errorf("lab: switch to %s: %w", replica, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		s, err := l.service(ctx)
		if err == nil && s.Generation >= gen {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: switch to %s: the service does not read back at generation %d (%v): %w", replica, gen, err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
