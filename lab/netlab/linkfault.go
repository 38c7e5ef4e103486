package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Degraded links: a node's link to the bridge that loses a share of its
// frames, or all of them in one direction only. The rules are nftables
// rules of the bridge family in the hub namespace, on the hub side of the
// node's veth (the port SetNodeLink takes down): frames the node sends
// are dropped as they enter the bridge (prerouting, iifname), frames to
// the node as they leave it (postrouting, oifname), so neither the node's
// kernel nor its peers see an error — the frames are simply gone, as on a
// bad wire. One table per node port, replaced whole (atomically, by one
// nft transaction) when the fault changes and deleted when it ends.

// LinkFault is how a node's link degrades: loss, delay or both.
type LinkFault struct {
	// Loss is the share of frames dropped, in percent (0–100): each
	// frame is dropped on its own with that chance (nft numgen random).
	Loss int `json:"loss"`
	// DelayMS holds each frame that is not dropped for that long (0 to
	// MaxLinkDelay), give or take a uniform JitterMS (0 to DelayMS): see
	// linkdelay.go. A fault has loss or delay or both.
	DelayMS  int `json:"delay_ms,omitempty"`
	JitterMS int `json:"jitter_ms,omitempty"`
	// ToNode degrades frames sent to the node, FromNode those it sends;
	// at least one. Loss 100 in one direction is a one-way partition.
	ToNode   bool `json:"to_node,omitempty"`
	FromNode bool `json:"from_node,omitempty"`
}

func (f LinkFault) String() string {
	var dir string
	switch {
	case f.ToNode && f.FromNode:
		dir = "both ways"
	case f.ToNode:
		dir = "to the node"
	case f.FromNode:
		dir = "from the node"
	default:
		dir = "no direction"
	}
	var what []string
	if f.Loss > 0 {
		what = append(what, fmt.Sprintf("loss %d%%", f.Loss))
	}
	if f.DelayMS > 0 {
		d := fmt.Sprintf("delay %dms", f.DelayMS)
		if f.JitterMS > 0 {
			d += fmt.Sprintf(" ±%dms", f.JitterMS)
		}
		what = append(what, d)
	}
	return strings.Join(what, ", ") + " " + dir
}

// Validate says what is wrong with f, if anything.
func (f LinkFault) Validate() error {
	if f.Loss < 0 || f.Loss > 100 {
		return fmt.Errorf("netlab: link loss %d%%: want 0-100", f.Loss)
	}
	if f.DelayMS < 0 || time.Duration(f.DelayMS)*time.Millisecond > MaxLinkDelay {
		return fmt.Errorf("netlab: link delay %dms: want 0-%d", f.DelayMS, MaxLinkDelay.Milliseconds())
	}
	if f.JitterMS < 0 || f.JitterMS > f.DelayMS {
		return fmt.Errorf("netlab: link jitter %dms: want 0 to the delay (%dms)", f.JitterMS, f.DelayMS)
	}
	if f.Loss == 0 && f.DelayMS == 0 {
		return errors.New("netlab: link fault without loss or delay")
	}
	if !f.ToNode && !f.FromNode {
		return errors.New("netlab: link fault without a direction (to or from the node)")
	}
	return nil
}

// linkTable is the nft table (bridge family) of the i-th node's link
// fault in the hub namespace.
func linkTable(i int) string { return "ars_link_" + strconv.Itoa(i) }

// linkFaultScript is the nft script that puts fault f's loss on port
// (replacing whatever table held before, in one transaction); for a fault
// without loss, the script that clears the table.
func linkFaultScript(table, port string, f LinkFault) (string, error) {
	if err := f.Validate(); err != nil {
		return "", err
	}
	if !nftSafeName(table) || !nftSafeName(port) {
		return "", fmt.Errorf("netlab: bad nft table %q or port %q", table, port)
	}
	if f.Loss == 0 {
		return linkClearScript(table), nil
	}
	match := "drop"
	if f.Loss < 100 {
		match = "numgen random mod 100 < " + strconv.Itoa(f.Loss) + " drop"
	}
	var b strings.Builder
	b.WriteString(linkClearScript(table))
	fmt.Fprintf(&b, "table bridge %s {\n", table)
	if f.FromNode {
		fmt.Fprintf(&b, "\tchain from_node {\n\t\ttype filter hook prerouting priority -300; policy accept;\n\t\tiifname %q %s\n\t}\n", port, match)
	}
	if f.ToNode {
		fmt.Fprintf(&b, "\tchain to_node {\n\t\ttype filter hook postrouting priority 300; policy accept;\n\t\toifname %q %s\n\t}\n", port, match)
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// linkClearScript deletes table whether or not it exists (declaring an
// existing table changes nothing).
func linkClearScript(table string) string {
	return "table bridge " + table + "\ndelete table bridge " + table + "\n"
}

// nftSafeName accepts what may go into the scripts unquoted or quoted:
// the lab's own names only.
func nftSafeName(s string) bool {
	return s != "" && len(s) <= 32 && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) < 0
}

// nftTimeout bounds one run of nft(8).
const nftTimeout = 10 * time.Second

// nft runs an nft script in the hub namespace.
func (l *Lab) nft(script string) error { return l.nftIn(l.hubNS(), script) }

// nftIn runs an nft script in namespace ns.
func (l *Lab) nftIn(ns, script string) error {
	ctx, cancel := context.WithTimeout(context.Background(), nftTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("netlab: nft in %s: %w: %s", ns, err, strings.TrimSpace(errb.String()))
	}
	return nil
}

// SetNodeLinkFault degrades a node's link (replacing any fault it had);
// the link stays up. Bad input changes nothing.
func (l *Lab) SetNodeLinkFault(node string, f LinkFault) error {
	i := slices.Index(l.t.Nodes, node)
	if i < 0 {
		return fmt.Errorf("netlab: no node %q", node)
	}
	script, err := linkFaultScript(linkTable(i), l.nodePort(i), f)
	if err != nil {
		return err
	}
	// The old delay ends first: its rules go, then its delayer lets
	// what it holds go. A new delayer listens before its rules send it
	// anything.
	if err := l.clearDelay(node, i); err != nil {
		return err
	}
	if f.DelayMS > 0 && f.Loss < 100 {
		if err := l.startDelay(node, i, f); err != nil {
			return err
		}
	}
	if err := l.nft(script); err != nil {
		_ = l.clearDelay(node, i)
		return err
	}
	return nil
}

// ClearNodeLinkFault ends a node's link fault; without one it does
// nothing.
func (l *Lab) ClearNodeLinkFault(node string) error {
	i := slices.Index(l.t.Nodes, node)
	if i < 0 {
		return fmt.Errorf("netlab: no node %q", node)
	}
	return errors.Join(l.nft(linkClearScript(linkTable(i))), l.clearDelay(node, i))
}

// NodeLinkFaulty reports whether a node's link has a fault in force.
func (l *Lab) NodeLinkFaulty(node string) (bool, error) {
	i := slices.Index(l.t.Nodes, node)
	if i < 0 {
		return false, fmt.Errorf("netlab: no node %q", node)
	}
	ctx, cancel := context.WithTimeout(context.Background(), nftTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", l.hubNS(), "nft", "list", "tables", "bridge").CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("netlab: nft list tables in %s: %w: %s", l.hubNS(), err, strings.TrimSpace(string(out)))
	}
	l.mu.Lock()
	delayed := l.delayers[i] != nil
	l.mu.Unlock()
	return delayed || slices.Contains(strings.Fields(string(out)), linkTable(i)), nil
}
