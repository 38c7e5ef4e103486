package netlab

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
)

// portCountTable is the nftables table CountPort adds in a node's
// namespace.
const portCountTable = "arsportcount"

// CountPort starts counting the bytes a node sends and receives on
// port (TCP and UDP, either end): an nftables table of two counting
// chains in the node's namespace, replacing any earlier one. PortBytes
// reads the counters, StopCountPort removes the table (Down removes the
// namespace with it).
func (l *Lab) CountPort(node string, port int) error {
	if !slices.Contains(l.t.Nodes, node) {
		return fmt.Errorf("netlab: no node %q", node)
	}
	if port <= 0 || port > 65535 {
		return fmt.Errorf("netlab: port %d", port)
	}
	// One packet matches at most one rule: from the port, or to it
	// from another (memberlist's UDP goes from its port to the peer's).
	match := fmt.Sprintf("meta l4proto { tcp, udp } th sport %d counter\n\t\tmeta l4proto { tcp, udp } th sport != %d th dport %d counter", port, port, port)
	script := fmt.Sprintf(`table inet %[1]s
delete table inet %[1]s
table inet %[1]s {
	chain out {
		type filter hook output priority 0; policy accept;
		%[2]s
	}
	chain in {
		type filter hook input priority 0; policy accept;
		%[2]s
	}
}
`, portCountTable, match)
	return l.nftIn(l.NodeNamespace(node), script)
}

// PortBytes reads CountPort's counters of node: bytes (IP packets)
// sent and received on the port.
func (l *Lab) PortBytes(node string) (sent, received uint64, err error) {
	if !slices.Contains(l.t.Nodes, node) {
		return 0, 0, fmt.Errorf("netlab: no node %q", node)
	}
	ctx, cancel := context.WithTimeout(context.Background(), nftTimeout)
	defer cancel()
	ns := l.NodeNamespace(node)
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "-j", "list", "table", "inet", portCountTable).Output()
	if err != nil {
		return 0, 0, fmt.Errorf("netlab: nft list in %s: %w", ns, err)
	}
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Chain string            `json:"chain"`
				Expr  []json.RawMessage `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, 0, fmt.Errorf("netlab: nft list in %s: %w", ns, err)
	}
	for _, it := range doc.Nftables {
		if it.Rule == nil {
			continue
		}
		for _, e := range it.Rule.Expr {
			var c struct {
				Counter *struct {
					Bytes uint64 `json:"bytes"`
				} `json:"counter"`
			}
			if json.Unmarshal(e, &c) != nil || c.Counter == nil {
				continue
			}
			switch it.Rule.Chain {
			case "out":
				sent += c.Counter.Bytes
			case "in":
				received += c.Counter.Bytes
			}
		}
	}
	return sent, received, nil
}

// StopCountPort removes CountPort's table from node's namespace.
func (l *Lab) StopCountPort(node string) error {
	if !slices.Contains(l.t.Nodes, node) {
		return fmt.Errorf("netlab: no node %q", node)
	}
	return l.nftIn(l.NodeNamespace(node), fmt.Sprintf("table inet %[1]s\ndelete table inet %[1]s\n", portCountTable))
}
