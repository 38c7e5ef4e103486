package cluster

import (
	"encoding/json"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// nodeMeta is what a node publishes about itself in gossip. It must stay
// under memberlist's 512-byte metadata limit.
type nodeMeta struct {
	Raft   string `json:"r"`
	API    string `json:"a"`
	Expect int    `json:"e"`
	// Established is true once the node has been part of a cluster that had
	// a leader (or started with Raft state on disk). A fresh node that sees
	// an established one never bootstraps; the leader adds it instead.
	Established bool `json:"b,omitempty"`
	// Leaving is set just before a graceful leave, so that the members can
	// tell "left" from "failed" when the node disappears (memberlist's own
	// Node.State is not kept current in its event callbacks).
	Leaving bool `json:"l,omitempty"`
	// Level is the log format level the node reads (fsm.FormatLevel); 0
	// from a node that advertises none (0.1.0), which reads fsm.BaseLevel.
	Level int `json:"f,omitempty"`
}

// memberInfo is the local view of one gossip member.
type memberInfo struct {
	Name    string
	Addr    string
	Meta    nodeMeta
	MetaOK  bool
	State   memberlist.NodeStateType
	Changed time.Time
}

// memberTable keeps every member ever seen, including dead and left ones,
// which memberlist.Members() omits: the leader needs them to decide what
// to remove from the Raft configuration.
type memberTable struct {
	mu      sync.Mutex
	members map[string]memberInfo
	subs    []chan struct{}
}

func newMemberTable() *memberTable {
	return &memberTable{members: map[string]memberInfo{}}
}

// subscribe returns a channel that receives a (coalesced) signal after
// every membership change, and the function that ends the subscription
// (leader work subscribes once per leadership).
func (t *memberTable) subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	t.mu.Lock()
	t.subs = append(t.subs, ch)
	t.mu.Unlock()
	return ch, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.subs = slices.DeleteFunc(t.subs, func(c chan struct{}) bool { return c == ch })
	}
}

// update records a member after a gossip event. gone is true for
// NotifyLeave: the member is then "left" if it announced its departure in
// its metadata, and "dead" otherwise.
func (t *memberTable) update(n *memberlist.Node, gone bool) {
	info := memberInfo{Name: n.Name, Addr: n.Address(), State: memberlist.StateAlive, Changed: time.Now()}
	if err := json.Unmarshal(n.Meta, &info.Meta); err == nil {
		info.MetaOK = true
	}
	t.mu.Lock()
	old, known := t.members[n.Name]
	if gone {
		info.State = memberlist.StateDead
		if (info.MetaOK && info.Meta.Leaving) || (known && old.Meta.Leaving) {
			info.State = memberlist.StateLeft
		}
	}
	if known && old.State == info.State {
		info.Changed = old.Changed
	}
	t.members[n.Name] = info
	t.mu.Unlock()
	t.touch()
}

// touch signals the subscribers: a member changed, or whether it votes.
// It holds the lock while it signals (the sends never block): an ending
// subscription rewrites the list in place.
func (t *memberTable) touch() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, ch := range t.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (t *memberTable) list() []memberInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]memberInfo, 0, len(t.members))
	for _, m := range t.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (t *memberTable) get(name string) (memberInfo, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.members[name]
	return m, ok
}

type metaDelegate struct {
	c           *Cluster
	mu          sync.Mutex
	established bool
	leaving     bool
}

func (d *metaDelegate) setLeaving() {
	d.mu.Lock()
	d.leaving = true
	d.mu.Unlock()
}

func (d *metaDelegate) setEstablished() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.established {
		return false
	}
	d.established = true
	return true
}

func (d *metaDelegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	m := nodeMeta{Raft: d.c.cfg.RaftAdvertise, API: d.c.cfg.APIAdvertise, Expect: d.c.cfg.BootstrapExpect,
		Established: d.established, Leaving: d.leaving, Level: d.c.formatLevel()}
	d.mu.Unlock()
	b, _ := json.Marshal(m)
	if len(b) > limit {
		d.c.log.Error("gossip metadata too large; addresses will not be published", "size", len(b), "limit", limit)
		return nil
	}
	return b
}
func (d *metaDelegate) NotifyMsg(b []byte)                         { d.c.deliver(b) }
func (d *metaDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *metaDelegate) LocalState(join bool) []byte                { return nil }
func (d *metaDelegate) MergeRemoteState(buf []byte, join bool)     {}

type eventDelegate struct{ c *Cluster }

func (e *eventDelegate) NotifyJoin(n *memberlist.Node) {
	e.c.log.Info("member joined", "member", n.Name, "addr", n.Address())
	e.c.members.update(n, false)
}
func (e *eventDelegate) NotifyLeave(n *memberlist.Node) {
	e.c.members.update(n, true)
	m, _ := e.c.members.get(n.Name)
	e.c.log.Info("member "+memberStatus(m.State), "member", n.Name, "addr", n.Address())
}
func (e *eventDelegate) NotifyUpdate(n *memberlist.Node) { e.c.members.update(n, false) }

// markEstablished publishes, once, that this node belongs to a cluster.
func (c *Cluster) markEstablished() {
	if !c.meta.setEstablished() {
		return
	}
	if err := c.ml.UpdateNode(time.Second); err != nil {
		c.log.Debug("gossip metadata update", "err", err)
	}
}

// bootstrapLoop implements bootstrap_expect: a fresh node waits until it
// sees the expected number of fresh nodes in gossip, then every one of them
// bootstraps Raft with the same configuration (which is safe: they all
// propose the same one). A node with Raft state, or one that sees an
// established member, never bootstraps.
func (c *Cluster) bootstrapLoop() {
	hasState := c.cfg.InMemory
	if !c.cfg.InMemory {
		var err error
		hasState, err = c.hasExistingState()
		if err != nil {
			c.log.Error("cannot read raft state; not bootstrapping", "err", err)
			return
		}
	}
	if hasState {
		c.markEstablished()
	}
	changed, unsubscribe := c.members.subscribe()
	defer unsubscribe()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	bootstrapped := hasState
	for {
		if leader, _ := c.raft.LeaderWithID(); leader != "" {
			c.markEstablished()
			if bootstrapped || c.cfg.BootstrapExpect == 0 {
				return
			}
		}
		if !bootstrapped && c.cfg.BootstrapExpect > 0 {
			bootstrapped = c.tryBootstrap()
		}
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		case <-changed:
		}
	}
}

func (c *Cluster) hasExistingState() (bool, error) {
	// raft.HasExistingState needs the stores; the simplest faithful check is
	// whether Raft restored a configuration or log.
	if c.raft.LastIndex() > 0 {
		return true, nil
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return false, err
	}
	return len(f.Configuration().Servers) > 0, nil
}

func (c *Cluster) tryBootstrap() bool {
	var servers []raft.Server
	for _, m := range c.members.list() {
		if m.State != memberlist.StateAlive || !m.MetaOK {
			continue
		}
		if m.Meta.Established && m.Name != c.cfg.NodeName {
			c.log.Info("found an established cluster member; waiting to be added instead of bootstrapping", "member", m.Name)
			c.markEstablished()
			return true
		}
		if m.Meta.Expect != c.cfg.BootstrapExpect {
			c.log.Error("member disagrees on bootstrap_expect; not bootstrapping", "member", m.Name,
				"theirs", m.Meta.Expect, "ours", c.cfg.BootstrapExpect)
			return false
		}
		servers = append(servers, raft.Server{ID: raft.ServerID(m.Name), Address: raft.ServerAddress(m.Meta.Raft), Suffrage: raft.Voter})
	}
	if len(servers) < c.cfg.BootstrapExpect {
		return false
	}
	c.bootstrap(servers)
	return true
}

func (c *Cluster) bootstrap(servers []raft.Server) {
	sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })
	ids := make([]string, len(servers))
	for i, s := range servers {
		ids[i] = string(s.ID)
	}
	if err := c.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		if err == raft.ErrCantBootstrap {
			c.log.Info("raft already has state; bootstrap skipped")
			return
		}
		c.log.Error("bootstrap failed", "err", err)
		return
	}
	c.log.Info("bootstrapped raft", "servers", ids)
}
