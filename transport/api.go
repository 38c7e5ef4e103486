package transport

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ars-project/ars/fsm"
)

// Status is a node's view of the cluster (GET /v1/status).
type Status struct {
	Node         string `json:"node"`
	Leader       string `json:"leader"`
	LeaderAPI    string `json:"leader_api"`
	State        string `json:"state"` // leader | follower | candidate | shutdown
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	LastLogIndex uint64 `json:"last_log_index"`
	LastContact  string `json:"last_contact"`
	Members      int    `json:"members"`
	Voters       int    `json:"voters"`
	Version      string `json:"version"`
	Dev          bool   `json:"dev"`
	// StateIndex and StateDigest are set only when asked for
	// (GET /v1/status?digest=1): the log index this node's state machine
	// has applied and the hex SHA-256 of its canonical snapshot at that
	// index. Nodes at the same index must report the same digest
	// (DESIGN.md §4.6); the chaos checker compares them.
	StateIndex  uint64 `json:"state_index,omitempty"`
	StateDigest string `json:"state_digest,omitempty"`
}

// StateDigester is implemented by a Backend that can digest its replicated
// state (GET /v1/status?digest=1).
type StateDigester interface {
	// StateDigest returns the applied index and the hex SHA-256 of the
	// state machine's canonical snapshot, read together.
	StateDigest() (index uint64, digest string, err error)
}

// Member is one node as gossip sees it (GET /v1/members).
type Member struct {
	Name       string `json:"name"`
	GossipAddr string `json:"gossip_addr"`
	RaftAddr   string `json:"raft_addr"`
	APIAddr    string `json:"api_addr"`
	Status     string `json:"status"` // alive | suspect | dead | left
	Voter      bool   `json:"voter"`
	Leader     bool   `json:"leader"`
}

// Peer is one server in the Raft configuration (GET /v1/raft/peers).
type Peer struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
}

// Request and response bodies.
type (
	// JoinRequest is the body of POST /v1/join.
	JoinRequest struct {
		Addresses []string `json:"addresses"`
	}
	// JoinResponse is the answer to POST /v1/join.
	JoinResponse struct {
		Joined int `json:"joined"`
	}
	// TransferLeaderRequest is the (optional) body of POST
	// /v1/raft/transfer-leader; an empty To lets Raft pick.
	TransferLeaderRequest struct {
		To string `json:"to"`
	}
	// RemovePeerRequest is the body of POST /v1/raft/remove-peer.
	RemovePeerRequest struct {
		ID string `json:"id"`
	}
	// OKResponse answers actions that return nothing else.
	OKResponse struct {
		OK bool `json:"ok"`
	}
)

// Backend is what the API server needs from the node (implemented by
// cluster.Cluster). Leader-only methods are only called on the leader; the
// server forwards those requests otherwise. Errors should wrap this
// package's sentinels, raft's errors or fsm's errors so they map to the
// right status and code (see ToAPIError).
type Backend interface {
	Status() Status
	Members() []Member
	Peers() ([]Peer, error)
	IsLeader() bool
	LeaderAPI() (name, apiAddr string, ok bool)
	Join(ctx context.Context, addrs []string) (int, error)
	Leave(ctx context.Context) error
	TransferLeadership(ctx context.Context, to string) error
	RemovePeer(ctx context.Context, id string) error
	Apply(ctx context.Context, cmd []byte) (fsm.Result, error)
	Services() []fsm.Service
	Service(name string) (fsm.Service, bool)
	Barrier(ctx context.Context) error
	SnapshotSave(ctx context.Context, w io.Writer) error
	SnapshotRestore(ctx context.Context, r io.Reader) error
}

// Server defaults.
const (
	DefaultLeaderWait       = 2 * time.Second
	DefaultRequestTimeout   = 30 * time.Second
	DefaultSnapshotTimeout  = 10 * time.Minute
	DefaultMaxBodyBytes     = 1 << 20
	DefaultMaxSnapshotBytes = 64 << 20
	// DefaultAlertRate and DefaultAlertBurst bound the alerts one caller
	// (token) can have committed: a burst of 200, then 20 per second. A
	// real detector reports a handful of events per attack; the bound
	// keeps a stolen or runaway detector token from filling the Raft log
	// and the alert ledger (each alert is a commit, and its decision
	// another).
	DefaultAlertRate  = 20
	DefaultAlertBurst = 200
)

// ServerConfig configures NewServer. Backend is required, and Tokens unless
// Dev is set.
type ServerConfig struct {
	Backend Backend
	// DecidesSwitches says that a leader loop runs on this node when it
	// leads, to decide operators' switch requests (POST
	// /v1/services/{name}/switch commits one and waits for its outcome).
	// False: such requests are refused with 409 (no controller).
	DecidesSwitches bool
	// Tokens authenticates API callers. Nil only in Dev mode.
	Tokens *Tokens
	// Dev turns authentication off: every request is an operator. A loud
	// warning is logged at start.
	Dev bool
	// Metrics serves GET /metrics. If nil and Registerer is also a
	// prometheus.Gatherer (e.g. *prometheus.Registry), that is served.
	Metrics http.Handler
	// NodeClientTLS is this node's client TLS configuration (node
	// certificate, cluster CA) used to forward leader-only requests to the
	// leader. Nil forwards over plain HTTP (dev/tests only).
	NodeClientTLS *tls.Config
	Logger        *slog.Logger
	// Term returns the current Raft term, stamped on commands the server
	// encodes. Nil uses Backend.Status().Term.
	Term func() uint64
	// Now is the clock stamped on alert commands the leader builds
	// (fsm.Alert.At; the fsm itself has no clock). Nil uses time.Now.
	Now func() time.Time

	// NodeName names this node in X-Ars-Forwarded (default
	// Backend.Status().Node).
	NodeName string
	// Registerer receives the server's request metrics (optional).
	Registerer prometheus.Registerer
	// LeaderWait is how long a follower waits for a leader to be known
	// before answering no_leader (default DefaultLeaderWait).
	LeaderWait time.Duration
	// RequestTimeout bounds a request's handling, including forwarding
	// (default DefaultRequestTimeout); snapshot transfers get
	// SnapshotTimeout (default DefaultSnapshotTimeout) instead.
	RequestTimeout  time.Duration
	SnapshotTimeout time.Duration
	// MaxBodyBytes and MaxSnapshotBytes limit request bodies (defaults
	// 1 MiB and 64 MiB).
	MaxBodyBytes     int64
	MaxSnapshotBytes int64
	// AlertRate (alerts per second) and AlertBurst limit POST /v1/alerts
	// and the webhook per caller, on the leader (followers forward them
	// there, so the bound is cluster-wide). Defaults DefaultAlertRate and
	// DefaultAlertBurst; a negative AlertRate disables the limit.
	AlertRate  float64
	AlertBurst int
}

// Headers.
const (
	// HeaderToken carries an API token (alternative to Authorization: Bearer).
	HeaderToken = "X-Ars-Token"
	// HeaderForwarded names the follower that forwarded a request to the
	// leader. A request carrying it is never forwarded again.
	HeaderForwarded = "X-Ars-Forwarded"
	// HeaderLeader names the leader that served a forwarded request.
	HeaderLeader = "X-Ars-Leader"
	// SnapshotDigestTrailer is the hex SHA-256 of a snapshot download,
	// sent as an HTTP trailer; the client verifies it.
	SnapshotDigestTrailer = "X-Ars-Snapshot-Sha256"
)
