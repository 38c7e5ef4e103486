package cluster

import "errors"

// Errors a node returns; callers test them with errors.Is (the API server
// maps each to its HTTP status and code).
var (
	// ErrNotLeader: a leader-only operation reached a follower.
	ErrNotLeader = errors.New("this node is not the leader")
	// ErrNoLeader: no leader is known (an election is running, or this
	// node is cut off from the others).
	ErrNoLeader = errors.New("no leader is known")
	// ErrInvalid: the request cannot be carried out as given (bad snapshot
	// file, no join address, transfer to a non-voter).
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound: the request names a peer the configuration does not hold.
	ErrNotFound = errors.New("not found")
)

// Status is a node's view of the cluster.
type Status struct {
	Node         string
	Leader       string
	LeaderAPI    string
	State        string // leader | follower | candidate | shutdown
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64
	LastLogIndex uint64
	LastContact  string
	Members      int
	Voters       int
	Version      string
	Dev          bool
	Format       FormatStatus
	// Disk is the last reading of the data directory (nil in memory).
	Disk *DiskStatus
}

// Member is one node as gossip sees it.
type Member struct {
	Name       string
	GossipAddr string
	RaftAddr   string
	APIAddr    string
	Status     string // alive | suspect | dead | left
	Voter      bool
	Leader     bool
}

// Peer is one server in the Raft configuration.
type Peer struct {
	ID       string
	Address  string
	Suffrage string
	Leader   bool
}
