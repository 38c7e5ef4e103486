package apiserver

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ars-project/ars/cluster"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/pki"
)

// StateDigester is implemented by a Backend that can digest its replicated
// state (GET /v1/status?digest=1).
type StateDigester interface {
	// StateDigest returns the applied index and the hex SHA-256 of the
	// state machine's canonical snapshot, read together.
	StateDigest() (index uint64, digest string, err error)
}

// Backend is what the API server needs from the node, declared here in the
// node's own types (implemented by *cluster.Cluster; cluster knows nothing
// of HTTP): the server turns them into the API's wire types. Leader-only
// methods are only called on the leader; the server forwards those requests
// otherwise. Errors should wrap cluster's, api's, raft's or fsm's sentinels
// so they map to the right status and code (see ToAPIError).
type Backend interface {
	Status() cluster.Status
	Members() []cluster.Member
	Peers() ([]cluster.Peer, error)
	IsLeader() bool
	LeaderAPI() (name, apiAddr string, ok bool)
	Join(ctx context.Context, addrs []string) (int, error)
	Leave(ctx context.Context) error
	TransferLeadership(ctx context.Context, to string) error
	RemovePeer(ctx context.Context, id string) error
	Apply(ctx context.Context, cmd []byte) (fsm.Result, error)
	Services() []fsm.Service
	Service(name string) (fsm.Service, bool)
	// AlertRoom is nil if the alert ledger would take an alert with this
	// id now, an error wrapping fsm.ErrLedgerFull if not.
	AlertRoom(id string) error
	// Events returns at most max committed commands this node applied
	// after the index after, and a channel closed when it applies another
	// (cluster.Cluster.Events); EventRange the indexes held: above oldest,
	// up to last.
	Events(after uint64, max int) ([]cluster.Event, <-chan struct{}, error)
	EventRange() (oldest, last uint64)
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
	// CheckSpec, if set, checks a service spec against this node's own
	// configuration (the vCenters its replicas may name) before it is
	// committed; a spec it refuses is invalid and changes nothing. The
	// replicated state machine cannot: node configurations are not in the
	// log.
	CheckSpec func(fsm.ServiceSpec) error
	// Tokens authenticates API callers. Nil only in Dev mode.
	Tokens *pki.Tokens
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
