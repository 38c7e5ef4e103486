package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config is everything a node needs to join the replicated core. The agent
// builds it from its YAML file; tests build it directly with tighter timings.
type Config struct {
	// NodeName is this node's unique name; it is also its Raft server ID.
	NodeName string
	// DataDir holds raft.db (log and stable store) and snapshots/. Ignored
	// when InMemory is set.
	DataDir string
	// InMemory keeps the log, stable store and snapshots in memory and uses
	// an in-memory Raft transport: the single-node -dev mode.
	InMemory bool

	// RaftBind is the address the Raft stream layer listens on;
	// RaftAdvertise is what other nodes dial (defaults to RaftBind).
	RaftBind      string
	RaftAdvertise string
	// GossipBind and GossipAdvertise are memberlist's addresses (host:port).
	GossipBind      string
	GossipAdvertise string
	// APIAdvertise is this node's HTTPS API address, published in gossip
	// metadata so followers can forward to the leader.
	APIAdvertise string

	// BootstrapExpect is the number of nodes to wait for before
	// bootstrapping a fresh cluster; 0 means only ever join an existing one.
	BootstrapExpect int
	// Join lists gossip addresses to join at start (retried until one works
	// or the node shuts down).
	Join []string

	// GossipKey encrypts memberlist traffic (16, 24 or 32 bytes). Empty only
	// in dev mode.
	GossipKey []byte
	// ServerTLS and ClientTLS secure the Raft stream layer (mutual TLS) and
	// follower→leader forwarding. Nil only in InMemory mode.
	ServerTLS *tls.Config
	ClientTLS *tls.Config

	Raft       RaftTimings
	Gossip     GossipTimings
	Membership MembershipPolicy
	// Disk tunes the check of DataDir (not used in memory); zero fields
	// take DefaultDiskCheck's values.
	Disk DiskCheck

	// Forwarder sends an encoded command to the leader's API when Apply is
	// called on a follower. Nil disables forwarding (Apply then returns
	// transport.ErrNotLeader on followers).
	Forwarder Forwarder

	Logger     *slog.Logger
	Registerer prometheus.Registerer

	// formatLevel, when set, is the log format level the node advertises
	// instead of fsm.FormatLevel: tests play a node of an older version.
	formatLevel int
}

// RaftTimings are hashicorp/raft's timing knobs.
type RaftTimings struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	SnapshotInterval   time.Duration
	SnapshotThreshold  uint64
	TrailingLogs       uint64
}

// GossipTimings are memberlist's failure-detection knobs.
type GossipTimings struct {
	ProbeInterval  time.Duration
	ProbeTimeout   time.Duration
	SuspicionMult  int
	GossipInterval time.Duration
}

// MembershipPolicy says when the leader may remove a failed voter.
type MembershipPolicy struct {
	// ReapFailedAfter is how long a voter must have been failed (dead in
	// gossip, or unknown to it) before the leader removes it.
	ReapFailedAfter time.Duration
	// MinVoters is the smallest configuration reaping may leave behind.
	MinVoters int
	// ReconcileInterval is how often the leader compares gossip membership
	// with the Raft configuration, besides on every membership event.
	ReconcileInterval time.Duration
}

// DefaultRaftTimings are tuned for a LAN: 500/500 ms heartbeat/election
// was measured as a safe floor (a new leader 0.8–1.0 s after the old one
// dies). The lease is the most raft allows beside them, 500 ms: a leader
// steps down when no quorum answered within its lease, and one lost TCP
// segment waits at least 200 ms (Linux's minimum retransmission timeout)
// before it is sent again, so with 250 ms a few percent of loss on the
// leader's link made it step down again and again (chaos seed 60, 15 %
// loss on the leader's link for 3 s besides a one-way fault: 1, 3, 3, 2,
// 2, 3 elections in six runs at 250 ms, three of them over the checker's
// bound; 1 in each of six runs at 500 ms). A leader cut off keeps its role up to the
// lease longer, but it commits nothing alone, and nothing acts before a
// commit.
func DefaultRaftTimings() RaftTimings {
	return RaftTimings{
		HeartbeatTimeout:   500 * time.Millisecond,
		ElectionTimeout:    500 * time.Millisecond,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      50 * time.Millisecond,
		SnapshotInterval:   30 * time.Second,
		SnapshotThreshold:  1024,
		TrailingLogs:       4096,
	}
}

// ReconnectInterval is how often a node asks each member its gossip holds
// dead for a full state sync (see reconnectLoop).
const ReconnectInterval = 5 * time.Second

// PushPullInterval is how often gossip makes a full state sync with a
// random member (memberlist's LAN default is 30 s).
const PushPullInterval = 5 * time.Second

// DefaultGossipTimings notice a dead node in about one second: a probe
// every 200 ms with a 100 ms timeout, then a suspicion period of
// 3 × 200 ms (memberlist scales it by log10(n), which is below 1 for n < 10).
func DefaultGossipTimings() GossipTimings {
	return GossipTimings{
		ProbeInterval:  200 * time.Millisecond,
		ProbeTimeout:   100 * time.Millisecond,
		SuspicionMult:  3,
		GossipInterval: 100 * time.Millisecond,
	}
}

// DefaultMembershipPolicy never reaps a voter from a three-node cluster on
// its own: an operator removes it (ars leave / ars raft remove-peer).
func DefaultMembershipPolicy() MembershipPolicy {
	return MembershipPolicy{
		ReapFailedAfter:   30 * time.Minute,
		MinVoters:         3,
		ReconcileInterval: 5 * time.Second,
	}
}

func (c *Config) setDefaults() {
	if c.Raft == (RaftTimings{}) {
		c.Raft = DefaultRaftTimings()
	}
	if c.Gossip == (GossipTimings{}) {
		c.Gossip = DefaultGossipTimings()
	}
	if c.Membership == (MembershipPolicy{}) {
		c.Membership = DefaultMembershipPolicy()
	}
	if c.Membership.ReconcileInterval == 0 {
		c.Membership.ReconcileInterval = DefaultMembershipPolicy().ReconcileInterval
	}
	def := DefaultDiskCheck()
	if c.Disk.MinFreeBytes == 0 {
		c.Disk.MinFreeBytes = def.MinFreeBytes
	}
	if c.Disk.Interval == 0 {
		c.Disk.Interval = def.Interval
	}
	if c.Disk.ProbeTimeout == 0 {
		c.Disk.ProbeTimeout = def.ProbeTimeout
	}
	if c.RaftAdvertise == "" {
		c.RaftAdvertise = c.RaftBind
	}
	if c.GossipAdvertise == "" {
		c.GossipAdvertise = c.GossipBind
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
}

// ErrBadConfig wraps every configuration error New reports.
var ErrBadConfig = errors.New("bad cluster config")

func (c *Config) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadConfig, fmt.Sprintf(format, a...))
	}
	if c.NodeName == "" {
		return bad("node name is empty")
	}
	if !c.InMemory {
		if c.DataDir == "" {
			return bad("data dir is empty")
		}
		if c.ServerTLS == nil || c.ClientTLS == nil {
			return bad("raft needs server and client TLS outside in-memory mode")
		}
		for name, addr := range map[string]string{"raft advertise": c.RaftAdvertise, "raft bind": c.RaftBind} {
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return bad("%s address %q: %v", name, addr, err)
			}
		}
	}
	for name, addr := range map[string]string{"gossip bind": c.GossipBind, "gossip advertise": c.GossipAdvertise} {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return bad("%s address %q: %v", name, addr, err)
		}
		if net.ParseIP(host) == nil {
			return bad("%s address %q: host must be an IP address", name, addr)
		}
	}
	switch len(c.GossipKey) {
	case 0, 16, 24, 32:
	default:
		return bad("gossip key must be 16, 24 or 32 bytes, not %d", len(c.GossipKey))
	}
	if c.BootstrapExpect < 0 {
		return bad("bootstrap_expect must be >= 0")
	}
	r := c.Raft
	if r.HeartbeatTimeout <= 0 || r.ElectionTimeout <= 0 || r.LeaderLeaseTimeout <= 0 || r.CommitTimeout <= 0 {
		return bad("raft timeouts must be positive")
	}
	if r.LeaderLeaseTimeout > r.HeartbeatTimeout {
		return bad("raft leader lease timeout %v exceeds heartbeat timeout %v", r.LeaderLeaseTimeout, r.HeartbeatTimeout)
	}
	g := c.Gossip
	if g.ProbeInterval <= 0 || g.ProbeTimeout <= 0 || g.GossipInterval <= 0 || g.SuspicionMult < 1 {
		return bad("gossip timings must be positive")
	}
	if g.ProbeTimeout > g.ProbeInterval {
		return bad("gossip probe timeout %v exceeds probe interval %v", g.ProbeTimeout, g.ProbeInterval)
	}
	if c.Disk.Interval < 0 || c.Disk.ProbeTimeout < 0 {
		return bad("disk check interval and probe timeout must be positive")
	}
	if c.Membership.MinVoters < 1 || c.Membership.ReapFailedAfter <= 0 {
		return bad("membership min voters and reap timeout must be positive")
	}
	return nil
}
