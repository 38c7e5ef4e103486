package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ars-project/ars/lab/netlab"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// Faults the chaos suite injects (lab/DESIGN.md, "Chaos"): a node stopped
// (SIGSTOP) or cut off from the lab network, and vCenter methods made slow
// or failing, or sessions terminated. Every fault is undone by Heal.

// Node fault events in the event log (LabEvent.Node set).
const (
	EvNodeKill      = "node-kill"
	EvNodeStart     = "node-start"
	EvNodeStop      = "node-stop"
	EvNodeCont      = "node-cont"
	EvNodePartition = "node-partition"
	EvNodeHeal      = "node-heal"
	// EvNodeLinkFault: the node's link degraded (Detail says how);
	// EvNodeLinkClear: the fault ended.
	EvNodeLinkFault = "node-link-fault"
	EvNodeLinkClear = "node-link-clear"
	// EvNodeUpgrade: the node restarted on another agent binary
	// (UpgradeNode).
	EvNodeUpgrade = "node-upgrade"
	// Node disk faults (Config.NodeDisks): filled to the last byte and
	// freed again, frozen and thawed.
	EvDiskFull   = "disk-full"
	EvDiskFreed  = "disk-freed"
	EvDiskFrozen = "disk-frozen"
	EvDiskThawed = "disk-thawed"
)

// MaxVCDelay bounds a vCenter method delay and MaxVCFault a fault rule's
// life, so that no fault outlives its schedule.
const (
	MaxVCDelay = 3 * time.Second
	MaxVCFault = time.Minute
)

// VCFault is a rule on the simulator's methods as the nodes call them
// (the lab's own watch and the administrator's calls are exempt): every
// call of Method ("*": any) waits Delay and, with Fail, then fails with a
// SystemError, until Until.
type VCFault struct {
	Method string        `json:"method"`
	Delay  time.Duration `json:"delay,omitempty"`
	Fail   bool          `json:"fail,omitempty"`
	Until  time.Time     `json:"until"`
}

// VCFaultRequest asks the daemon for a vCenter fault rule (POST
// /v1/vcenter/faults).
type VCFaultRequest struct {
	Method   string `json:"method"`
	Delay    string `json:"delay,omitempty"`    // Go duration, up to MaxVCDelay
	Fail     bool   `json:"fail,omitempty"`     //
	Duration string `json:"duration,omitempty"` // Go duration, up to MaxVCFault (default 10s)
}

// Rule checks the request and makes it a rule that starts now.
func (r VCFaultRequest) Rule(now time.Time) (VCFault, error) {
	f := VCFault{Method: r.Method, Fail: r.Fail}
	if f.Method == "" || strings.ContainsAny(f.Method, " /\t\n") {
		return f, badRequest("vCenter fault: method %q: want a SOAP method name (e.g. ReconfigVM_Task) or *", r.Method)
	}
	if f.Fail && (f.Method == "Login" || f.Method == "*") {
		return f, badRequest("vCenter fault: failing %s would lock the lab's own administrator out; delay it instead", f.Method)
	}
	if r.Delay != "" {
		d, err := time.ParseDuration(r.Delay)
		if err != nil || d < 0 || d > MaxVCDelay {
			return f, badRequest("vCenter fault: delay %q: want a duration from 0 to %s", r.Delay, MaxVCDelay)
		}
		f.Delay = d
	}
	if f.Delay == 0 && !f.Fail {
		return f, badRequest("vCenter fault: neither a delay nor fail: the rule would do nothing")
	}
	dur := 10 * time.Second
	if r.Duration != "" {
		d, err := time.ParseDuration(r.Duration)
		if err != nil || d <= 0 || d > MaxVCFault {
			return f, badRequest("vCenter fault: duration %q: want a duration from 1ms to %s", r.Duration, MaxVCFault)
		}
		dur = d
	}
	f.Until = now.Add(dur)
	return f, nil
}

// vcFaults holds the rules in force; the simulator's method hook reads
// them on its request goroutines.
type vcFaults struct {
	mu    sync.Mutex
	rules []VCFault
}

func (v *vcFaults) add(f VCFault) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.rules = append(v.rules, f)
}

func (v *vcFaults) clear() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := len(v.rules)
	v.rules = nil
	return n
}

func (v *vcFaults) list(now time.Time) []VCFault {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.rules = slices.DeleteFunc(v.rules, func(f VCFault) bool { return !now.Before(f.Until) })
	return slices.Clone(v.rules)
}

// match returns the delay and failure the rules in force give method.
func (v *vcFaults) match(method string, now time.Time) (time.Duration, bool) {
	var delay time.Duration
	fail := false
	for _, f := range v.list(now) {
		if f.Method == method || f.Method == "*" {
			delay = max(delay, f.Delay)
			fail = fail || f.Fail
		}
	}
	return delay, fail
}

// fromNode reports whether a simulator call comes from a node (through the
// proxy, which dials from a loopback address of the node's own, see
// proxySource) rather than from the lab itself (127.0.0.1).
func fromNode(sctx *simulator.Context) bool {
	if sctx.Session == nil {
		return false
	}
	ip := sctx.Session.IpAddress
	return strings.HasPrefix(ip, "127.") && ip != "127.0.0.1"
}

// drivingMethods are the vCenter methods that change a VM: the calls
// that only the leader may make (docs/design.md §4.1). The event log records
// every one a node makes ("vc-call", Node, Detail "METHOD VM").
var drivingMethods = []string{"ReconfigVM_Task", "PowerOnVM_Task", "PowerOffVM_Task", "SuspendVM_Task",
	"ResetVM_Task", "RevertToSnapshot_Task", "RevertToCurrentSnapshot_Task"}

// vcHook records a node's calls that change a VM and applies the fault
// rules to its call of m: it waits out a delay (bounded by MaxVCDelay)
// and fails the call if a rule says so.
func (l *Lab) vcHook(sctx *simulator.Context, m *simulator.Method) types.BaseMethodFault {
	if !fromNode(sctx) {
		return nil
	}
	if slices.Contains(drivingMethods, m.Name) {
		l.events.add(LabEvent{At: time.Now(), Node: l.nodeOfSource(sctx.Session.IpAddress), What: "vc-call",
			Detail: m.Name + " " + m.This.Value})
	}
	delay, fail := l.vcFaults.match(m.Name, time.Now())
	if delay > 0 {
		t := time.NewTimer(min(delay, MaxVCDelay))
		select {
		case <-t.C:
		case <-sctx.Done():
			t.Stop()
		}
	}
	if fail {
		return &types.SystemError{Reason: "ars lab: injected fault on " + m.Name}
	}
	return nil
}

// AddVCFault puts a vCenter fault rule in force.
func (l *Lab) AddVCFault(f VCFault) {
	l.vcFaults.add(f)
	what := "vc-delay"
	if f.Fail {
		what = "vc-fail"
	}
	l.events.add(LabEvent{At: time.Now(), What: what, Detail: fmt.Sprintf("%s delay=%s until=%s", f.Method, f.Delay, f.Until.Format(time.RFC3339Nano))})
}

// ClearVCFaults removes every vCenter fault rule and says how many there
// were.
func (l *Lab) ClearVCFaults() int {
	n := l.vcFaults.clear()
	if n > 0 {
		l.events.add(LabEvent{At: time.Now(), What: "vc-clear"})
	}
	return n
}

// VCFaults lists the rules in force.
func (l *Lab) VCFaults() []VCFault { return l.vcFaults.list(time.Now()) }

// VCSession is a live vCenter session and the node that holds it ("" if
// it is not a node's).
type VCSession struct {
	Key        string    `json:"key"`
	Node       string    `json:"node,omitempty"`
	IP         string    `json:"ip"`
	LoginTime  time.Time `json:"login_time"`
	LastActive time.Time `json:"last_active"`
}

// VCSessions lists the simulator's live sessions of the nodes (the lab's
// own watch session is left out).
func (l *Lab) VCSessions(ctx context.Context) ([]VCSession, error) {
	us, err := l.Sim.Sessions(ctx)
	if err != nil {
		return nil, fmt.Errorf("lab: vCenter sessions: %w", err)
	}
	var out []VCSession
	for _, u := range us {
		if u.IpAddress == "127.0.0.1" {
			continue // the lab's own (watch, administrator)
		}
		out = append(out, VCSession{Key: u.Key, Node: l.nodeOfSource(u.IpAddress), IP: u.IpAddress,
			LoginTime: u.LoginTime, LastActive: u.LastActiveTime})
	}
	return out, nil
}

// TerminateVCSessions terminates every node's vCenter session, as an
// administrator would in the vSphere client, and says how many.
func (l *Lab) TerminateVCSessions(ctx context.Context) (int, error) {
	ss, err := l.VCSessions(ctx)
	if err != nil {
		return 0, err
	}
	var keys []string
	for _, s := range ss {
		keys = append(keys, s.Key)
	}
	if len(keys) == 0 {
		l.events.add(LabEvent{At: time.Now(), What: "vc-terminate", Detail: "no session"})
		return 0, nil
	}
	if err := l.Sim.Terminate(ctx, keys...); err != nil {
		return 0, fmt.Errorf("lab: terminating vCenter sessions: %w", err)
	}
	l.events.add(LabEvent{At: time.Now(), What: "vc-terminate", Detail: strings.Join(keys, ",")})
	return len(keys), nil
}

// proxySource is the loopback address the vCenter proxy dials the
// simulator from for a connection from remote (a lab address): 127.0.0.X
// for the lab address's last byte X, so the simulator's sessions say
// which node holds them.
func proxySource(remote net.Addr) *net.TCPAddr {
	ta, ok := remote.(*net.TCPAddr)
	if !ok {
		return nil
	}
	a, ok := netip.AddrFromSlice(ta.IP)
	if !ok || !a.Unmap().Is4() {
		return nil
	}
	b := a.Unmap().As4()
	if b[3] <= 1 {
		return nil
	}
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, b[3])}
}

// nodeOfSource is the node whose connections come from the loopback
// address ip ("" if none).
func (l *Lab) nodeOfSource(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is4() {
		return ""
	}
	for _, n := range l.Net.Topology().Nodes {
		if na := l.Net.NodeAddr(n); na.IsValid() && na.As4()[3] == a.As4()[3] {
			return n
		}
	}
	return ""
}

// StopNode suspends a node's agent (SIGSTOP): it holds its sockets and
// leadership until the others notice; ContNode resumes it.
func (l *Lab) StopNode(node string) error {
	if !slices.Contains(l.Net.Topology().Nodes, node) {
		return badRequest("no node %q", node)
	}
	p, err := l.nodes.running(node)
	if err != nil {
		return err
	}
	return l.recordNode(node, EvNodeStop, p.Stop())
}

// ContNode resumes a stopped node (SIGCONT); resuming a running one does
// nothing.
func (l *Lab) ContNode(node string) error {
	if !slices.Contains(l.Net.Topology().Nodes, node) {
		return badRequest("no node %q", node)
	}
	p, err := l.nodes.running(node)
	if err != nil {
		return err
	}
	return l.recordNode(node, EvNodeCont, p.Cont())
}

// PartitionNode cuts a node off the lab network (its link to the bridge
// goes down); HealNode connects it again.
func (l *Lab) PartitionNode(node string) error {
	if !slices.Contains(l.Net.Topology().Nodes, node) {
		return badRequest("no node %q", node)
	}
	return l.recordNode(node, EvNodePartition, l.Net.SetNodeLink(node, false))
}

// HealNode connects a partitioned node again.
func (l *Lab) HealNode(node string) error {
	if !slices.Contains(l.Net.Topology().Nodes, node) {
		return badRequest("no node %q", node)
	}
	return l.recordNode(node, EvNodeHeal, l.Net.SetNodeLink(node, true))
}

// DegradeNodeLink degrades a node's link (netlab.LinkFault: loss, one
// way or both); ClearNodeLink ends it.
func (l *Lab) DegradeNodeLink(node string, f netlab.LinkFault) error {
	if !slices.Contains(l.Net.Topology().Nodes, node) {
		return badRequest("no node %q", node)
	}
	if err := f.Validate(); err != nil {
		return badRequest("%v", err)
	}
	ev := LabEvent{At: time.Now(), Node: node, What: EvNodeLinkFault, Detail: f.String()}
	if err := l.Net.SetNodeLinkFault(node, f); err != nil {
		ev.Err = err.Error()
		l.events.add(ev)
		return err
	}
	l.events.add(ev)
	return nil
}

// ClearNodeLink ends a node's link fault (none: nothing changes, nothing
// is recorded).
func (l *Lab) ClearNodeLink(node string) error {
	if !slices.Contains(l.Net.Topology().Nodes, node) {
		return badRequest("no node %q", node)
	}
	faulty, err := l.Net.NodeLinkFaulty(node)
	if err != nil {
		return err
	}
	if !faulty {
		return nil
	}
	return l.recordNode(node, EvNodeLinkClear, l.Net.ClearNodeLinkFault(node))
}

// Heal undoes every fault: vCenter rules cleared, every node's link
// fault ended, every node linked, resumed and (if it was killed) started
// again. It returns what it could not undo.
func (l *Lab) Heal() error {
	var errs []string
	l.ClearVCFaults()
	errs = append(errs, l.healDisks()...)
	for _, n := range l.Net.Topology().Nodes {
		if err := l.ClearNodeLink(n); err != nil {
			errs = append(errs, err.Error())
		}
		if up, err := l.Net.NodeLinked(n); err != nil {
			errs = append(errs, err.Error())
		} else if !up {
			if err := l.HealNode(n); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if p, err := l.nodes.running(n); err == nil {
			if err := p.Cont(); err != nil {
				errs = append(errs, err.Error())
			}
		} else if err := l.StartNode(n); err != nil {
			errs = append(errs, err.Error())
		}
	}
	// Replica agents: killed ones started again, cut-off ones connected.
	for _, n := range l.cfg.addressReplicas() {
		if err := l.Net.SetAgentLink(n, true); err != nil {
			errs = append(errs, err.Error())
		}
		if err := l.StartAgent(n); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("lab: heal: %s", strings.Join(errs, "; "))
	}
	return nil
}

func (l *Lab) recordNode(node, what string, err error) error {
	ev := LabEvent{At: time.Now(), Node: node, What: what}
	if err != nil {
		ev.Err = err.Error()
	}
	l.events.add(ev)
	return err
}
