package netlab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/ars-project/ars/replicaagent/ipaddr"
)

// Defaults of a Topology.
const (
	DefaultPrefix = "arslab"
)

// MaxReplicas bounds a Topology's replicas. Every replica is a port of the
// lab's one bridge, and a Linux bridge takes at most 1024 ports; the
// client, nine nodes and the Docker link need eleven of them, and the
// scale benchmark's 200 services x 4 replicas 800.
const MaxReplicas = 1000

var (
	// DefaultSubnet is the lab's service network. It exists only inside
	// the lab's namespaces; Up refuses to start when the host routes any
	// part of it.
	DefaultSubnet = netip.MustParsePrefix("10.253.53.0/24")
	// DefaultService is the service address every replica carries.
	DefaultService = netip.MustParseAddr("10.253.53.53")
	// DefaultClient is the client's address.
	DefaultClient = netip.MustParseAddr("10.253.53.2")
	// DefaultHub is the bridge's own address in the hub namespace: where
	// the lab serves what the nodes need besides each other (the vCenter
	// simulator's endpoint).
	DefaultHub = netip.MustParseAddr("10.253.53.1")
	// DefaultMgmtSubnet is the management network of a topology with
	// address-handover replicas (Topology.AddressHandover). Like Subnet it
	// exists only inside the lab's namespaces.
	DefaultMgmtSubnet = netip.MustParsePrefix("10.254.53.0/24")
)

// GARPMode says how Attach announces the newly attached replica.
type GARPMode int

const (
	// GARPPacket sends gratuitous ARP requests from Go through an
	// AF_PACKET socket opened inside the replica's namespace (the
	// default; needs no package).
	GARPPacket GARPMode = iota
	// GARPArping runs `arping -U -c 1 -I DEV SERVICE` (iputils-arping)
	// inside the replica's namespace.
	GARPArping
	// GARPNone sends nothing: neighbours keep their old ARP entry until it
	// expires (for measuring what the announcement is worth).
	GARPNone
)

func (m GARPMode) String() string {
	switch m {
	case GARPPacket:
		return "packet"
	case GARPArping:
		return "arping"
	case GARPNone:
		return "none"
	}
	return "GARPMode(" + strconv.Itoa(int(m)) + ")"
}

// Topology describes a lab network. The zero value of every field but
// Replicas means its default.
type Topology struct {
	// Prefix names everything the lab creates: namespaces "PREFIX-hub",
	// "PREFIX-client", "PREFIX-r-REPLICA" and links "PREFIX-…". It is
	// 1–10 characters [a-z0-9], starting with a letter, so that link
	// names stay within 15 characters. Default "arslab".
	Prefix string
	// Subnet is the service network (default 10.253.53.0/24).
	Subnet netip.Prefix
	// Service is the address all replicas carry (default 10.253.53.53).
	Service netip.Addr
	// Client is the client's address (default 10.253.53.2).
	Client netip.Addr
	// Hub is the bridge's address inside the hub namespace (default
	// 10.253.53.1); ListenHub listens there.
	Hub netip.Addr
	// Replicas names the replicas: [a-z0-9][a-z0-9_.-]*, at most 32
	// characters, at most MaxReplicas of them.
	Replicas []string
	// Addrs gives replicas an address of their own instead of Service (a
	// load balancer's backends, each reached at its own address, with
	// the balancer as the replica that carries Service).
	Addrs map[string]netip.Addr
	// Nodes names controller nodes that live on the service network too
	// (same rule as replica names, at most 9): namespace "PREFIX-n-NODE",
	// address NodeAddr(NODE) — the subnet's .11, .12, … in order — on link
	// MgmtDev. From there an ars agent reaches the service address (its
	// probes), the other nodes and whatever else the lab puts on the bridge.
	Nodes []string
	// AddressHandover names replicas whose service address a replica
	// agent puts on their service link (address handover) instead of the
	// link carrying it all the time. Each gets:
	//   - a management link, PREFIX-mg (hub side PREFIX-mI, a port of the
	//     bridge that is always up), with MgmtAddr(REPLICA) in MgmtSubnet:
	//     the nodes reach it whatever the state of the service link;
	//   - the service address hidden on lo (/32) with arp_ignore 1 and
	//     arp_announce 2 in its namespace, so its servers bind it at any
	//     time and it answers ARP for it only on a link that holds it;
	//   - no address on its service link (and so no route) until the
	//     agent claims ServicePrefix(REPLICA);
	//   - no gratuitous ARP from Attach: its agent announces on a claim.
	// Each node then also has NodeMgmtAddr(NODE) on its link.
	AddressHandover []string
	// ContainerAgents names container replicas (not in Replicas: their
	// namespaces are the engine's) whose replica agent the lab runs on
	// the host: each gets a namespace of its own, AgentNamespace(NAME),
	// with only a management link (PREFIX-mg, hub side PREFIX-aK) and
	// MgmtAddr(NAME) — the management subnet's addresses after those of
	// AddressHandover. The agent enters the container's namespace from
	// there; the nodes reach it over the management network.
	ContainerAgents []string
	// MgmtSubnet is the management network (default 10.254.53.0/24). It
	// shares the bridge with Subnet (one L2 segment; a partition of a node
	// cuts both) but no address: a replica's routes keep service traffic
	// on its service link and management traffic on its management link.
	// Nodes are its .11, .12, … as in Subnet; address-handover replicas
	// its .21, .22, … in AddressHandover order.
	MgmtSubnet netip.Prefix
	// StateDir holds the state file (namespace identities, for cleaning
	// up after a crash) and logs/ (default /run/PREFIX).
	StateDir string
	// GARP is how Attach announces a replica (default GARPPacket).
	GARP GARPMode
	// GARPCount is how many gratuitous ARPs Attach sends (default 2),
	// GARPGap the pause between them (default 20 ms). The first goes out
	// as soon as the link is up; Attach returns after the first.
	GARPCount int
	GARPGap   time.Duration
	// Docker adds a link for container replicas: a veth pair whose hub
	// side (PREFIX-dkh) is a port of the bridge and whose other side
	// (DockerParent, PREFIX-dk) stays in the host's namespace, up, with no
	// address, no IPv6 and ARP answers off, as the parent of a Docker
	// macvlan network. It is the lab's one link in the host's namespace:
	// the Docker engine creates macvlan endpoints only on a parent in its
	// own namespace.
	Docker bool
	// Persist lets processes started by Run and RunClient outlive this
	// Go process (a CLI that brings the lab up and exits). By default
	// they get SIGKILL when it dies (Linux parent-death signal), so a
	// crashed test leaves no server running.
	Persist bool
}

var (
	prefixRE  = regexp.MustCompile(`^[a-z][a-z0-9]{0,9}$`)
	replicaRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,31}$`)
)

// withDefaults validates t and fills in defaults.
func (t Topology) withDefaults() (Topology, error) {
	if t.Prefix == "" {
		t.Prefix = DefaultPrefix
	}
	if !prefixRE.MatchString(t.Prefix) {
		return t, fmt.Errorf("netlab: prefix %q: want 1-10 of [a-z0-9], starting with a letter", t.Prefix)
	}
	if !t.Subnet.IsValid() {
		t.Subnet = DefaultSubnet
	}
	t.Subnet = t.Subnet.Masked()
	if !t.Subnet.Addr().Is4() || t.Subnet.Bits() > 30 {
		return t, fmt.Errorf("netlab: subnet %s: want an IPv4 prefix of /30 or shorter", t.Subnet)
	}
	if !t.Service.IsValid() {
		t.Service = DefaultService
	}
	if !t.Client.IsValid() {
		t.Client = DefaultClient
	}
	if !t.Hub.IsValid() {
		t.Hub = DefaultHub
	}
	for _, a := range []netip.Addr{t.Service, t.Client, t.Hub} {
		if !t.Subnet.Contains(a) || a == t.Subnet.Addr() {
			return t, fmt.Errorf("netlab: address %s is not a host of %s", a, t.Subnet)
		}
	}
	if t.Service == t.Client || t.Hub == t.Service || t.Hub == t.Client {
		return t, fmt.Errorf("netlab: service %s, client %s and hub %s must differ", t.Service, t.Client, t.Hub)
	}
	if len(t.Replicas) == 0 && !t.Docker || len(t.Replicas) > MaxReplicas {
		return t, fmt.Errorf("netlab: %d replicas: want 1-%d (0 only with a Docker link)", len(t.Replicas), MaxReplicas)
	}
	seen := map[string]bool{}
	for _, r := range t.Replicas {
		if !replicaRE.MatchString(r) {
			return t, fmt.Errorf("netlab: replica name %q: want [a-z0-9][a-z0-9_.-]{0,31}", r)
		}
		if seen[r] {
			return t, fmt.Errorf("netlab: replica %q twice", r)
		}
		seen[r] = true
	}
	t.Replicas = slices.Clone(t.Replicas)
	addrs := map[string]netip.Addr{}
	for r, a := range t.Addrs {
		if !slices.Contains(t.Replicas, r) {
			return t, fmt.Errorf("netlab: address for %q, which is no replica", r)
		}
		if !t.Subnet.Contains(a) || a == t.Subnet.Addr() || a == t.Client || a == t.Hub || a == t.Service {
			return t, fmt.Errorf("netlab: replica %s's address %s is not a free host of %s", r, a, t.Subnet)
		}
		addrs[r] = a
	}
	t.Addrs = addrs
	if len(t.Nodes) > 9 {
		return t, fmt.Errorf("netlab: %d nodes: want at most 9", len(t.Nodes))
	}
	for i, n := range t.Nodes {
		if !replicaRE.MatchString(n) {
			return t, fmt.Errorf("netlab: node name %q: want [a-z0-9][a-z0-9_.-]{0,31}", n)
		}
		if slices.Contains(t.Nodes[:i], n) {
			return t, fmt.Errorf("netlab: node %q twice", n)
		}
		if a := nodeAddr(t.Subnet, i); !t.Subnet.Contains(a) || a == t.Service || a == t.Client || a == t.Hub || slices.Contains(slices.Collect(maps.Values(t.Addrs)), a) {
			return t, fmt.Errorf("netlab: node %s's address %s is not free in %s", n, a, t.Subnet)
		}
	}
	t.Nodes = slices.Clone(t.Nodes)
	if err := t.checkMgmt(); err != nil {
		return t, err
	}
	if t.StateDir == "" {
		t.StateDir = filepath.Join("/run", t.Prefix)
	}
	if t.GARPCount <= 0 {
		t.GARPCount = 2
	}
	if t.GARPGap <= 0 {
		t.GARPGap = 20 * time.Millisecond
	}
	return t, nil
}

// checkMgmt validates AddressHandover and fills in MgmtSubnet.
func (t *Topology) checkMgmt() error {
	if !t.MgmtSubnet.IsValid() {
		t.MgmtSubnet = DefaultMgmtSubnet
	}
	t.MgmtSubnet = t.MgmtSubnet.Masked()
	if len(t.AddressHandover) == 0 {
		t.AddressHandover = nil
	}
	if len(t.ContainerAgents) == 0 {
		t.ContainerAgents = nil
	}
	if t.AddressHandover == nil && t.ContainerAgents == nil {
		return nil
	}
	if !t.MgmtSubnet.Addr().Is4() || t.MgmtSubnet.Bits() > 30 {
		return fmt.Errorf("netlab: management subnet %s: want an IPv4 prefix of /30 or shorter", t.MgmtSubnet)
	}
	if t.MgmtSubnet.Overlaps(t.Subnet) {
		return fmt.Errorf("netlab: management subnet %s overlaps the service network %s", t.MgmtSubnet, t.Subnet)
	}
	for i, r := range t.AddressHandover {
		if !slices.Contains(t.Replicas, r) {
			return fmt.Errorf("netlab: address handover for %q, which is no replica", r)
		}
		if slices.Contains(t.AddressHandover[:i], r) {
			return fmt.Errorf("netlab: address handover for %q twice", r)
		}
	}
	for i, c := range t.ContainerAgents {
		switch {
		case !replicaRE.MatchString(c):
			return fmt.Errorf("netlab: container agent %q: want [a-z0-9][a-z0-9_.-]{0,31}", c)
		case slices.Contains(t.Replicas, c):
			return fmt.Errorf("netlab: container agent %q is a replica of the lab's namespaces", c)
		case slices.Contains(t.ContainerAgents[:i], c):
			return fmt.Errorf("netlab: container agent %q twice", c)
		}
	}
	// The highest address wanted must be a host of the subnet.
	agents := len(t.AddressHandover) + len(t.ContainerAgents)
	if last := mgmtReplicaAddr(t.MgmtSubnet, agents-1); !t.MgmtSubnet.Contains(last) || !t.MgmtSubnet.Contains(last.Next()) {
		return fmt.Errorf("netlab: %d replica agents do not fit the management subnet %s", agents, t.MgmtSubnet)
	}
	t.AddressHandover = slices.Clone(t.AddressHandover)
	t.ContainerAgents = slices.Clone(t.ContainerAgents)
	return nil
}

// mgmtReplicaAddr is the k-th address-handover replica's management
// address: the management subnet's .21 + k (the nodes have .11–.19).
func mgmtReplicaAddr(subnet netip.Prefix, k int) netip.Addr { return hostAddr(subnet, 21+k) }

// hostAddr is the subnet's n-th address (its network address plus n).
func hostAddr(subnet netip.Prefix, n int) netip.Addr {
	a := subnet.Masked().Addr()
	for range n {
		a = a.Next()
	}
	return a
}

// Lab is one lab network: its namespaces, links and the processes started
// in them. Its methods are safe for concurrent use.
type Lab struct {
	t Topology

	mu       sync.Mutex
	procs    []*Proc
	beside   map[*Proc]string // processes of RunBeside -> their replica
	delayers map[int]*delayer // node index -> its link's delayer (linkdelay.go)
	wg       sync.WaitGroup   // background GARPs
}

// New validates t; nothing is created before Up.
func New(t Topology) (*Lab, error) {
	t, err := t.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Lab{t: t}, nil
}

// Topology returns the lab's topology with defaults filled in.
func (l *Lab) Topology() Topology {
	t := l.t
	t.Replicas = slices.Clone(t.Replicas)
	t.Nodes = slices.Clone(t.Nodes)
	t.Addrs = maps.Clone(t.Addrs)
	t.AddressHandover = slices.Clone(t.AddressHandover)
	return t
}

// Names of namespaces and links. Inside the lab's namespaces every link is
// prefixed as well, so that "only touch what has the prefix" holds there
// too.
func (l *Lab) hubNS() string    { return l.t.Prefix + "-hub" }
func (l *Lab) clientNS() string { return l.t.Prefix + "-client" }
func (l *Lab) bridge() string   { return l.t.Prefix + "-br" }
func (l *Lab) clientPort() string {
	return l.t.Prefix + "-c" // hub side of the client's veth
}

// DockerParent is the host-side link that a Docker macvlan network uses
// as its parent ("" without Topology.Docker).
func (l *Lab) DockerParent() string {
	if !l.t.Docker {
		return ""
	}
	return l.t.Prefix + "-dk"
}

func (l *Lab) dockerPort() string { return l.t.Prefix + "-dkh" }

// ClientDev is the client's link inside the client namespace.
func (l *Lab) ClientDev() string { return l.t.Prefix + "-cli" }

// ServiceDev is the replica's service link inside its namespace (the
// "NIC" of the replica).
func (l *Lab) ServiceDev() string { return l.t.Prefix + "-svc" }

// Namespace is the name of the replica's network namespace (for
// `ip netns exec`).
func (l *Lab) Namespace(replica string) string { return l.t.Prefix + "-r-" + replica }

// ClientNamespace is the name of the client's network namespace.
func (l *Lab) ClientNamespace() string { return l.clientNS() }

func (l *Lab) replicaPort(replica string) (string, error) {
	i := slices.Index(l.t.Replicas, replica)
	if i < 0 {
		return "", fmt.Errorf("netlab: no replica %q", replica)
	}
	return l.t.Prefix + "-p" + strconv.Itoa(i), nil
}

func (l *Lab) allNS() []string {
	ns := []string{l.hubNS(), l.clientNS()}
	for _, r := range l.t.Replicas {
		ns = append(ns, l.Namespace(r))
	}
	for _, n := range l.t.Nodes {
		ns = append(ns, l.NodeNamespace(n))
	}
	for _, c := range l.t.ContainerAgents {
		ns = append(ns, l.AgentNamespace(c))
	}
	return ns
}

// AgentNamespace is the namespace of a container replica's agent
// (Topology.ContainerAgents).
func (l *Lab) AgentNamespace(container string) string { return l.t.Prefix + "-a-" + container }

// ContainerAgent reports whether the container replica is one of
// Topology.ContainerAgents.
func (l *Lab) ContainerAgent(container string) bool {
	return slices.Contains(l.t.ContainerAgents, container)
}

// agentPort is the hub side of the k-th container agent's management veth.
func (l *Lab) agentPort(k int) string { return l.t.Prefix + "-a" + strconv.Itoa(k) }

// nodeAddr is the i-th node's address: the subnet's .11 + i.
func nodeAddr(subnet netip.Prefix, i int) netip.Addr { return hostAddr(subnet, 11+i) }

// ReplicaAddr is the address the replica carries: Topology.Service, or its
// own from Topology.Addrs.
func (l *Lab) ReplicaAddr(replica string) netip.Addr {
	if a, ok := l.t.Addrs[replica]; ok {
		return a
	}
	return l.t.Service
}

// NodeNamespace is the node's namespace.
func (l *Lab) NodeNamespace(node string) string { return l.t.Prefix + "-n-" + node }

// NodeAddr is the node's address on the service network (invalid for an
// unknown node).
func (l *Lab) NodeAddr(node string) netip.Addr {
	if i := slices.Index(l.t.Nodes, node); i >= 0 {
		return nodeAddr(l.t.Subnet, i)
	}
	return netip.Addr{}
}

// MgmtDev is a node's link inside its namespace.
func (l *Lab) MgmtDev() string { return l.t.Prefix + "-mgmt" }

// AddressHandover reports whether the replica is one of
// Topology.AddressHandover.
func (l *Lab) AddressHandover(replica string) bool {
	return slices.Contains(l.t.AddressHandover, replica)
}

// MgmtAddr is an address-handover replica's management address, or a
// container agent's (invalid for any other replica).
func (l *Lab) MgmtAddr(replica string) netip.Addr {
	if k := slices.Index(l.t.AddressHandover, replica); k >= 0 {
		return mgmtReplicaAddr(l.t.MgmtSubnet, k)
	}
	if k := slices.Index(l.t.ContainerAgents, replica); k >= 0 {
		return mgmtReplicaAddr(l.t.MgmtSubnet, len(l.t.AddressHandover)+k)
	}
	return netip.Addr{}
}

// NodeMgmtAddr is the node's address on the management network (invalid
// for an unknown node, or without address-handover replicas).
func (l *Lab) NodeMgmtAddr(node string) netip.Addr {
	if i := slices.Index(l.t.Nodes, node); i >= 0 && len(l.t.AddressHandover)+len(l.t.ContainerAgents) > 0 {
		return nodeAddr(l.t.MgmtSubnet, i)
	}
	return netip.Addr{}
}

// ReplicaMgmtDev is an address-handover replica's management link inside
// its namespace.
func (l *Lab) ReplicaMgmtDev() string { return l.t.Prefix + "-mg" }

// mgmtPort is the hub side of the management veth of the replica at
// index i of Topology.Replicas.
func (l *Lab) mgmtPort(i int) string { return l.t.Prefix + "-m" + strconv.Itoa(i) }

// nodePort is the hub side of the i-th node's veth.
func (l *Lab) nodePort(i int) string { return l.t.Prefix + "-n" + strconv.Itoa(i) }

func (l *Lab) statePath() string { return filepath.Join(l.t.StateDir, "netns.json") }

// LogDir is where the logs of processes started by Run and RunClient go.
func (l *Lab) LogDir() string { return filepath.Join(l.t.StateDir, "logs") }

// state is what survives a crash: the identity (nsfs inode) of every
// namespace the lab created, so processes still inside one are found even
// after its name was removed.
type state struct {
	Prefix  string            `json:"prefix"`
	Inodes  map[string]uint64 `json:"inodes"`
	Created time.Time         `json:"created"`
}

func (l *Lab) readState() state {
	var s state
	b, err := os.ReadFile(l.statePath())
	if err == nil {
		_ = json.Unmarshal(b, &s)
	}
	if s.Prefix != l.t.Prefix {
		s = state{}
	}
	return s
}

func (l *Lab) writeState(s state) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := l.statePath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, l.statePath())
}

// labInodes is every namespace identity the lab knows of: from the state
// file and from the namespaces with its prefix that exist now.
func (l *Lab) labInodes() map[uint64]bool {
	inodes := map[uint64]bool{}
	for _, ino := range l.readState().Inodes {
		inodes[ino] = true
	}
	names, _ := namespaces(l.t.Prefix)
	for _, n := range names {
		if ino, err := nsInode(n); err == nil {
			inodes[ino] = true
		}
	}
	return inodes
}

// Up creates the lab, after removing whatever an earlier lab with the same
// prefix left behind (a crash). On failure it removes what it made.
func (l *Lab) Up(ctx context.Context) (err error) {
	if err := l.Down(ctx); err != nil {
		return fmt.Errorf("netlab: cleaning up an earlier lab: %w", err)
	}
	if err := l.checkHostRoutes(ctx); err != nil {
		return err
	}
	if err := os.MkdirAll(l.LogDir(), 0o755); err != nil {
		return fmt.Errorf("netlab: %w", err)
	}
	defer func() {
		if err != nil {
			_ = l.Down(context.WithoutCancel(ctx))
		}
	}()
	st := state{Prefix: l.t.Prefix, Inodes: map[string]uint64{}, Created: time.Now().UTC()}
	for _, ns := range l.allNS() {
		if _, err := ip(ctx, "netns", "add", ns); err != nil {
			return err
		}
		ino, err := nsInode(ns)
		if err != nil {
			return fmt.Errorf("netlab: %w", err)
		}
		st.Inodes[ns] = ino
		if err := l.writeState(st); err != nil {
			return fmt.Errorf("netlab: state file: %w", err)
		}
		if err := l.prepareNS(ctx, ns); err != nil {
			return err
		}
	}
	for _, r := range l.t.AddressHandover {
		if err := hideServiceAddress(l.Namespace(r)); err != nil {
			return err
		}
	}
	bits := strconv.Itoa(l.t.Subnet.Bits())
	hub := l.hubNS()
	steps := [][]string{
		{"-n", hub, "link", "add", l.bridge(), "type", "bridge", "stp_state", "0", "forward_delay", "0"},
		{"-n", hub, "addr", "add", l.t.Hub.String() + "/" + bits, "dev", l.bridge()},
		{"-n", hub, "link", "set", l.bridge(), "up"},
		{"-n", hub, "link", "add", l.clientPort(), "type", "veth", "peer", "name", l.ClientDev(), "netns", l.clientNS()},
		{"-n", hub, "link", "set", l.clientPort(), "master", l.bridge(), "up"},
		{"-n", l.clientNS(), "addr", "add", l.t.Client.String() + "/" + bits, "dev", l.ClientDev()},
		{"-n", l.clientNS(), "link", "set", l.ClientDev(), "up"},
	}
	for i, r := range l.t.Replicas {
		port, _ := l.replicaPort(r)
		ns := l.Namespace(r)
		steps = append(steps,
			[]string{"-n", hub, "link", "add", port, "type", "veth", "peer", "name", l.ServiceDev(), "netns", ns},
			// Enslaved but down: the replica is detached.
			[]string{"-n", hub, "link", "set", port, "master", l.bridge()},
		)
		if !l.AddressHandover(r) {
			steps = append(steps,
				[]string{"-n", ns, "addr", "add", l.ReplicaAddr(r).String() + "/" + bits, "dev", l.ServiceDev()},
				[]string{"-n", ns, "link", "set", l.ServiceDev(), "up"},
			)
			continue
		}
		// Address handover: the service address hidden on lo; the
		// service link holds no address (and so no route) until the
		// agent claims one; a management link of its own.
		mbits := strconv.Itoa(l.t.MgmtSubnet.Bits())
		steps = append(steps,
			[]string{"-n", ns, "addr", "add", l.ReplicaAddr(r).String() + "/32", "dev", "lo"},
			[]string{"-n", ns, "link", "set", l.ServiceDev(), "up"},
			[]string{"-n", hub, "link", "add", l.mgmtPort(i), "type", "veth", "peer", "name", l.ReplicaMgmtDev(), "netns", ns},
			[]string{"-n", hub, "link", "set", l.mgmtPort(i), "master", l.bridge(), "up"},
			[]string{"-n", ns, "addr", "add", l.MgmtAddr(r).String() + "/" + mbits, "dev", l.ReplicaMgmtDev()},
			[]string{"-n", ns, "link", "set", l.ReplicaMgmtDev(), "up"},
		)
	}
	for k, c := range l.t.ContainerAgents {
		ns := l.AgentNamespace(c)
		steps = append(steps,
			[]string{"-n", hub, "link", "add", l.agentPort(k), "type", "veth", "peer", "name", l.ReplicaMgmtDev(), "netns", ns},
			[]string{"-n", hub, "link", "set", l.agentPort(k), "master", l.bridge(), "up"},
			[]string{"-n", ns, "addr", "add", l.MgmtAddr(c).String() + "/" + strconv.Itoa(l.t.MgmtSubnet.Bits()), "dev", l.ReplicaMgmtDev()},
			[]string{"-n", ns, "link", "set", l.ReplicaMgmtDev(), "up"},
		)
	}
	for i, n := range l.t.Nodes {
		ns := l.NodeNamespace(n)
		steps = append(steps,
			[]string{"-n", hub, "link", "add", l.nodePort(i), "type", "veth", "peer", "name", l.MgmtDev(), "netns", ns},
			[]string{"-n", hub, "link", "set", l.nodePort(i), "master", l.bridge(), "up"},
			[]string{"-n", ns, "addr", "add", nodeAddr(l.t.Subnet, i).String() + "/" + bits, "dev", l.MgmtDev()},
		)
		if a := l.NodeMgmtAddr(n); a.IsValid() {
			steps = append(steps, []string{"-n", ns, "addr", "add", a.String() + "/" + strconv.Itoa(l.t.MgmtSubnet.Bits()), "dev", l.MgmtDev()})
		}
		steps = append(steps, []string{"-n", ns, "link", "set", l.MgmtDev(), "up"})
	}
	for _, s := range steps {
		if _, err := ip(ctx, s...); err != nil {
			return err
		}
	}
	if l.t.Docker {
		return l.upDockerParent(ctx)
	}
	return nil
}

// upDockerParent makes the Docker link (Topology.Docker): created in the
// host's namespace with its peer directly in the hub, then made inert for
// the host before it goes up (no IPv6, never answers ARP), so that the
// host takes no part in the lab network and nothing of the host's reaches
// it.
func (l *Lab) upDockerParent(ctx context.Context) error {
	dev, hub := l.DockerParent(), l.hubNS()
	if _, err := ip(ctx, "link", "add", dev, "type", "veth", "peer", "name", l.dockerPort(), "netns", hub); err != nil {
		return err
	}
	for _, sc := range []struct{ path, val string }{
		{"/proc/sys/net/ipv6/conf/" + dev + "/disable_ipv6", "1"},
		{"/proc/sys/net/ipv4/conf/" + dev + "/arp_ignore", "8"},
	} {
		if err := os.WriteFile(sc.path, []byte(sc.val), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("netlab: %s: %w", dev, err)
		}
	}
	for _, s := range [][]string{
		{"link", "set", dev, "up"},
		{"-n", hub, "link", "set", l.dockerPort(), "master", l.bridge(), "up"},
	} {
		if _, err := ip(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// prepareNS brings lo up and turns IPv6 off in a fresh namespace, so the
// service network carries IPv4 only (no link-local addresses, DAD, router
// or MLD solicitations on the bridge).
func (l *Lab) prepareNS(ctx context.Context, ns string) error {
	if _, err := ip(ctx, "-n", ns, "link", "set", "lo", "up"); err != nil {
		return err
	}
	return inNetns(filepath.Join(netnsDir, ns), func() error {
		for _, k := range []string{"all", "default"} {
			err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/disable_ipv6", []byte("1"), 0)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("netlab: %s: disable IPv6: %w", ns, err)
			}
		}
		return nil
	})
}

// hideServiceAddress sets the ARP behaviour of an address-handover
// replica's namespace (the LVS "direct routing" real server's): answer
// ARP only for an address of the link the request came in on
// (arp_ignore 1), so the address on lo is never announced and the
// standby stays silent; and take the sender address of its own ARP
// requests from the outgoing link (arp_announce 2), never the hidden one.
// The kernel applies the higher of "all" and the link's value.
func hideServiceAddress(ns string) error {
	return inNetns(filepath.Join(netnsDir, ns), func() error {
		for k, v := range map[string]string{"arp_ignore": "1", "arp_announce": "2"} {
			if err := os.WriteFile("/proc/sys/net/ipv4/conf/all/"+k, []byte(v), 0); err != nil {
				return fmt.Errorf("netlab: %s: %s: %w", ns, k, err)
			}
		}
		return nil
	})
}

// checkHostRoutes refuses a subnet the host's own namespace routes or
// addresses: lab addresses must exist only inside the lab.
func (l *Lab) checkHostRoutes(ctx context.Context) error {
	out, err := ip(ctx, "-j", "-4", "route", "show", "table", "all")
	if err != nil {
		return err
	}
	var routes []struct {
		Dst string `json:"dst"`
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return fmt.Errorf("netlab: parsing host routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == "default" || r.Dst == "" {
			continue
		}
		p, err := netip.ParsePrefix(r.Dst)
		if err != nil {
			a, aerr := netip.ParseAddr(r.Dst)
			if aerr != nil {
				continue
			}
			p = netip.PrefixFrom(a, 32)
		}
		if p.Overlaps(l.t.Subnet) {
			return fmt.Errorf("netlab: the host routes %s, which overlaps the lab subnet %s; pick another subnet", p, l.t.Subnet)
		}
		if len(l.t.AddressHandover) > 0 && p.Overlaps(l.t.MgmtSubnet) {
			return fmt.Errorf("netlab: the host routes %s, which overlaps the lab's management subnet %s; pick another one", p, l.t.MgmtSubnet)
		}
	}
	return nil
}

// Down removes every process, namespace and link of the lab (and of an
// earlier lab with the same prefix). It is idempotent.
func (l *Lab) Down(ctx context.Context) error {
	var errs []error
	l.wg.Wait()
	for i, n := range l.t.Nodes {
		if err := l.clearDelay(n, i); err != nil {
			errs = append(errs, err)
		}
	}
	inodes := l.labInodes()
	if err := killAndWait(ctx, inodes, 10*time.Second); err != nil {
		errs = append(errs, err)
	}
	l.mu.Lock()
	procs := l.procs
	l.procs, l.beside = nil, nil
	l.mu.Unlock()
	for _, p := range procs {
		// Every process of ours was in a lab namespace and got SIGKILL;
		// wait for it to be reaped so none is left as a zombie.
		_ = p.Signal(syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			errs = append(errs, fmt.Errorf("netlab: process %d (%s) not reaped", p.Pid(), p.name))
		}
	}
	// Host links first: deleting a namespace takes the veth peers of its
	// links with it, but asynchronously, so a link listed after it may be
	// gone by the time it is deleted.
	links, err := rootLinks(l.t.Prefix)
	if err != nil {
		errs = append(errs, err)
	}
	for _, ln := range links {
		if _, err := ip(ctx, "link", "del", ln); err != nil {
			errs = append(errs, err)
		}
	}
	names, err := namespaces(l.t.Prefix)
	if err != nil {
		errs = append(errs, err)
	}
	for _, ns := range names {
		if _, err := ip(ctx, "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := os.Remove(l.statePath()); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Leftovers is what exists of a lab: after Down, all empty.
type Leftovers struct {
	Namespaces []string // named namespaces with the prefix
	Links      []string // links with the prefix in the host's namespace
	Pids       []int    // processes in any namespace the lab made
}

// Empty reports whether nothing is left.
func (o Leftovers) Empty() bool {
	return len(o.Namespaces) == 0 && len(o.Links) == 0 && len(o.Pids) == 0
}

func (o Leftovers) String() string {
	return fmt.Sprintf("namespaces %v, host links %v, processes %v", o.Namespaces, o.Links, o.Pids)
}

// Leftovers lists what exists of this lab (or of an earlier one with the
// same prefix) now.
func (l *Lab) Leftovers() (Leftovers, error) {
	var o Leftovers
	var err error
	if o.Namespaces, err = namespaces(l.t.Prefix); err != nil {
		return o, err
	}
	if o.Links, err = rootLinks(l.t.Prefix); err != nil {
		return o, err
	}
	o.Pids = pidsIn(l.labInodes())
	l.mu.Lock()
	for _, p := range l.procs {
		if !p.exited() && !slices.Contains(o.Pids, p.Pid()) {
			o.Pids = append(o.Pids, p.Pid())
		}
	}
	l.mu.Unlock()
	return o, nil
}

// Attach connects the replica to the service network: the hub side of its
// veth goes up, then the replica announces the service address with
// gratuitous ARP (Topology.GARP). It returns once the first announcement is
// sent; further ones follow in the background. An address-handover
// replica announces nothing: its link holds the address only once its
// agent claims it, and the agent announces then.
func (l *Lab) Attach(ctx context.Context, replica string) error {
	return l.AttachWith(ctx, replica, l.t.GARP)
}

// attachGARP is the announcement mode of Attach for the replica.
func (l *Lab) attachGARP(replica string, mode GARPMode) GARPMode {
	if l.AddressHandover(replica) {
		return GARPNone
	}
	return mode
}

// AttachWith is Attach with the given announcement mode (GARPNone, whatever
// mode, for an address-handover replica).
func (l *Lab) AttachWith(ctx context.Context, replica string, mode GARPMode) error {
	port, err := l.replicaPort(replica)
	if err != nil {
		return err
	}
	if err := setLinkUp(filepath.Join(netnsDir, l.hubNS()), port, true); err != nil {
		return err
	}
	// Announce only once both ends can carry traffic: a neighbour that
	// moved to the new replica earlier would lose the queries sent before
	// the replica can answer.
	if err := waitRunning(filepath.Join(netnsDir, l.hubNS()), port, 2*time.Second); err != nil {
		return err
	}
	if err := waitRunning(filepath.Join(netnsDir, l.Namespace(replica)), l.ServiceDev(), 2*time.Second); err != nil {
		return err
	}
	return l.announce(ctx, replica, l.attachGARP(replica, mode))
}

// Detach disconnects the replica: the hub side of its veth goes down. The
// replica keeps its address and sees its link lose carrier, as a VM whose
// NIC is disconnected does.
func (l *Lab) Detach(_ context.Context, replica string) error {
	port, err := l.replicaPort(replica)
	if err != nil {
		return err
	}
	return setLinkUp(filepath.Join(netnsDir, l.hubNS()), port, false)
}

// Attached reports whether the replica's link to the bridge is up.
func (l *Lab) Attached(replica string) (bool, error) {
	port, err := l.replicaPort(replica)
	if err != nil {
		return false, err
	}
	var up bool
	err = inNetns(filepath.Join(netnsDir, l.hubNS()), func() error {
		ifi, err := net.InterfaceByName(port)
		if err != nil {
			return fmt.Errorf("netlab: %s: %w", port, err)
		}
		up = ifi.Flags&net.FlagUp != 0
		return nil
	})
	return up, err
}

// SignalReplica sends sig to every process in the replica's namespace,
// whoever started it (a server that daemonized too): SIGSTOP suspends the
// "VM", SIGCONT resumes it, SIGKILL powers it off.
func (l *Lab) SignalReplica(replica string, sig syscall.Signal) error {
	if !slices.Contains(l.t.Replicas, replica) {
		return fmt.Errorf("netlab: no replica %q", replica)
	}
	ino, err := nsInode(l.Namespace(replica))
	if err != nil {
		return fmt.Errorf("netlab: %w", err)
	}
	spared := l.besidePids(replica)
	var errs []error
	for _, p := range pidsIn(map[uint64]bool{ino: true}) {
		if spared[p] {
			continue
		}
		if err := syscall.Kill(p, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("netlab: kill %d: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// HoldsService reports whether the replica's service link holds its
// service address now (read from the kernel): for an address-handover
// replica, whether its agent has claimed it.
func (l *Lab) HoldsService(replica string) (bool, error) {
	if !slices.Contains(l.t.Replicas, replica) {
		return false, fmt.Errorf("netlab: no replica %q", replica)
	}
	var held bool
	err := inNetns(filepath.Join(netnsDir, l.Namespace(replica)), func() error {
		k, err := ipaddr.ByName(l.ServiceDev())
		if err != nil {
			return fmt.Errorf("netlab: %s: %w", replica, err)
		}
		held, err = k.Has(l.ReplicaAddr(replica))
		return err
	})
	return held, err
}

// ServicePrefix is the replica's service address with the service
// network's prefix length: what an address-handover replica's agent
// puts on its service link on a claim. The link has no address before, so
// the claim also brings the service network's route (the kernel adds it
// with the address and removes it with the address, or rather with the
// link's last address: a route of the link's own would go at the first
// release).
func (l *Lab) ServicePrefix(replica string) netip.Prefix {
	return netip.PrefixFrom(l.ReplicaAddr(replica), l.t.Subnet.Bits())
}

// ClaimService does what an address-handover replica's agent does on a
// claim: ServicePrefix on its service link, then one gratuitous ARP. For
// tests and measurements without an agent.
func (l *Lab) ClaimService(replica string) error {
	if !l.AddressHandover(replica) {
		return fmt.Errorf("netlab: %q is no address-handover replica", replica)
	}
	a := l.ReplicaAddr(replica)
	return inNetns(filepath.Join(netnsDir, l.Namespace(replica)), func() error {
		k, err := ipaddr.ByName(l.ServiceDev())
		if err != nil {
			return fmt.Errorf("netlab: %s: %w", replica, err)
		}
		if _, err := k.Put(l.ServicePrefix(replica)); err != nil {
			return fmt.Errorf("netlab: %s: %w", replica, err)
		}
		return k.Announce(a, 1, 0)
	})
}

// DropService takes the service address off an address-handover replica's
// service link, as a guest that starts afresh (a snapshot revert, a power
// cycle) has it: only its agent's next claim puts it back. removed says
// whether it was there. The address hidden on lo stays.
func (l *Lab) DropService(replica string) (removed bool, err error) {
	if !l.AddressHandover(replica) {
		return false, fmt.Errorf("netlab: %q is no address-handover replica", replica)
	}
	err = inNetns(filepath.Join(netnsDir, l.Namespace(replica)), func() error {
		k, err := ipaddr.ByName(l.ServiceDev())
		if err != nil {
			return fmt.Errorf("netlab: %s: %w", replica, err)
		}
		removed, err = k.Remove(l.ReplicaAddr(replica))
		return err
	})
	return removed, err
}

// SetNodeLink connects (up) or cuts off (down) a node: the hub side of its
// veth, as Attach/Detach do for a replica. Cut off, the node reaches
// nothing of the lab (no other node, no vCenter, no client) and nothing
// reaches it; its process runs on. This is the chaos suite's partition
// of one node.
func (l *Lab) SetNodeLink(node string, up bool) error {
	i := slices.Index(l.t.Nodes, node)
	if i < 0 {
		return fmt.Errorf("netlab: no node %q", node)
	}
	return setLinkUp(filepath.Join(netnsDir, l.hubNS()), l.nodePort(i), up)
}

// NodeLinked reports whether the node's link to the bridge is up.
func (l *Lab) NodeLinked(node string) (bool, error) {
	i := slices.Index(l.t.Nodes, node)
	if i < 0 {
		return false, fmt.Errorf("netlab: no node %q", node)
	}
	var up bool
	err := inNetns(filepath.Join(netnsDir, l.hubNS()), func() error {
		ifi, err := net.InterfaceByName(l.nodePort(i))
		if err != nil {
			return fmt.Errorf("netlab: %s: %w", l.nodePort(i), err)
		}
		up = ifi.Flags&net.FlagUp != 0
		return nil
	})
	return up, err
}

// ReplicaPids lists the processes in the replica's namespace.
func (l *Lab) ReplicaPids(replica string) ([]int, error) {
	ino, err := nsInode(l.Namespace(replica))
	if err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	return pidsIn(map[uint64]bool{ino: true}), nil
}
