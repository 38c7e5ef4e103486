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
	st := FormatStatus{Node: c.formatLevel(), Cluster: c.formatLevel()}
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return st
	}
	for _, s := range f.Configuration().Servers {
		l := c.levelOf(string(s.ID))
		st.Cluster = min(st.Cluster, l)
		if l < st.Node {
			st.Behind = append(st.Behind, fmt.Sprintf("%s (level %d)", s.ID, l))
		}
	}
	sort.Strings(st.Behind)
	return st
}

// checkFormat refuses (fsm.ErrNeedsUpgrade) an entry whose format level
// some server of the Raft configuration does not read. It runs on the
// leader before the entry is appended.
func (c *Cluster) checkFormat(cmd fsm.Command) error {
	lvl := fsm.Level(cmd)
	if lvl <= fsm.BaseLevel {
		return nil
	}
	if lvl > c.formatLevel() {
		return fsm.NeedsUpgrade(cmd.Type(), lvl, []string{fmt.Sprintf("%s (level %d)", c.cfg.NodeName, c.formatLevel())})
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return leaderErr(fmt.Errorf("reading the raft configuration: %w", err))
	}
	var behind []string
	for _, s := range f.Configuration().Servers {
		if l := c.levelOf(string(s.ID)); l < lvl {
			behind = append(behind, fmt.Sprintf("%s (level %d)", s.ID, l))
		}
	}
	if len(behind) == 0 {
		return nil
	}
	sort.Strings(behind)
	c.metrics.formatRefused.Inc()
	return fsm.NeedsUpgrade(cmd.Type(), lvl, behind)
}
