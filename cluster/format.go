package cluster

import (
	"fmt"
	"sort"

	"github.com/ars-project/ars/fsm"
)

// FormatStatus is what the cluster knows of the log format levels its
// servers read (fsm.Level): the leader writes an entry only if every server
// in the Raft configuration reads its level.
type FormatStatus struct {
	// Node is the level this binary reads (fsm.FormatLevel).
	Node int
	// Cluster is the lowest level a server of the Raft configuration
	// reads: what entries may have now.
	Cluster int
	// Behind names the servers that read less than this node, as
	// "name (level N)"; one that gossip has never described reads the
	// base level (a node of 0.1.0 advertises none).
	Behind []string
}

// formatLevel is the level this node advertises in gossip.
func (c *Cluster) formatLevel() int {
	if c.cfg.formatLevel > 0 {
		return c.cfg.formatLevel
	}
	return fsm.FormatLevel
}

// levelOf is the format level a server reads, as gossip last described
// it: the member table keeps the metadata of members that died or left, so
// a server being upgraded counts at the level it had until it is back.
func (c *Cluster) levelOf(name string) int {
	if name == c.cfg.NodeName {
		return c.formatLevel()
	}
	if m, ok := c.members.get(name); ok && m.MetaOK && m.Meta.Level > 0 {
		return m.Meta.Level
	}
	return fsm.BaseLevel
}

// Format reports the format levels of this node and of the servers of the
// Raft configuration.
func (c *Cluster) Format() FormatStatus {
	st := FormatStatus{Node: c.formatLevel()}
	st.Cluster, st.Behind, _ = c.serversBelow(st.Node)
	return st
}

// serversBelow reads the Raft configuration: the lowest level a server
// reads (this node's own level if none reads less) and the servers that
// read less than lvl, as "name (level N)", sorted.
func (c *Cluster) serversBelow(lvl int) (lowest int, below []string, err error) {
	lowest = c.formatLevel()
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return lowest, nil, err
	}
	for _, s := range f.Configuration().Servers {
		l := c.levelOf(string(s.ID))
		lowest = min(lowest, l)
		if l < lvl {
			below = append(below, fmt.Sprintf("%s (level %d)", s.ID, l))
		}
	}
	sort.Strings(below)
	return lowest, below, nil
}

// checkFormat refuses (fsm.ErrNeedsUpgrade) an entry whose format level
// some server of the Raft configuration — this one included — does not
// read. It runs on the leader before the entry is appended.
func (c *Cluster) checkFormat(cmd fsm.Command) error {
	lvl := fsm.Level(cmd)
	if lvl <= fsm.BaseLevel {
		return nil
	}
	_, behind, err := c.serversBelow(lvl)
	if err != nil {
		return leaderErr(fmt.Errorf("reading the raft configuration: %w", err))
	}
	if len(behind) == 0 {
		return nil
	}
	c.metrics.formatRefused.Inc()
	return fsm.NeedsUpgrade(cmd.Type(), lvl, behind)
}
