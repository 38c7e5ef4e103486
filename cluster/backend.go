package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/ars-project/ars/fsm"
)

// Version is reported in status; the agent overrides it at build time.
var Version = "dev"

// IsLeader reports whether this node is the leader and has finished its
// barrier (so its FSM is current and leader work is running).
func (c *Cluster) IsLeader() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.isLeader && c.raft.State() == raft.Leader
}

// LeaderAPI returns the current leader's name and API address as gossip
// knows them.
func (c *Cluster) LeaderAPI() (name, apiAddr string, ok bool) {
	_, id := c.raft.LeaderWithID()
	if id == "" {
		return "", "", false
	}
	if string(id) == c.cfg.NodeName {
		if c.diskRefusal() != nil {
			// Raft still calls this node leader only because its loop
			// hangs in a write (or has not stepped down yet): it does
			// no leader work (or is about to stop it), and the others
			// may have elected another. It knows no leader it could
			// send anyone to. The disk's health, not the hold of leader
			// work, decides: it is recorded first.
			return "", "", false
		}
		return c.cfg.NodeName, c.cfg.APIAdvertise, true
	}
	m, known := c.members.get(string(id))
	if !known || !m.MetaOK || m.Meta.API == "" {
		return string(id), "", false
	}
	return string(id), m.Meta.API, true
}

// Term is the current Raft term; commands decided now carry it.
func (c *Cluster) Term() uint64 { return c.raft.CurrentTerm() }

// Status summarises this node's view of the cluster.
func (c *Cluster) Status() Status {
	// The disk first: LeaderAPI reads it again, so a status that shows
	// the disk unhealthy never names this node leader.
	d, diskOK := c.Disk()
	leaderName, leaderAPI, _ := c.LeaderAPI()
	st := Status{
		Node:         c.cfg.NodeName,
		Leader:       leaderName,
		LeaderAPI:    leaderAPI,
		State:        stateName(c.raft.State()),
		Term:         c.raft.CurrentTerm(),
		CommitIndex:  c.raft.CommitIndex(),
		AppliedIndex: c.raft.AppliedIndex(),
		LastLogIndex: c.raft.LastIndex(),
		Members:      c.ml.NumMembers(),
		Voters:       c.voterCount(),
		Version:      Version,
		Dev:          c.cfg.InMemory,
		Format:       c.Format(),
	}
	if diskOK && !d.CheckedAt.IsZero() {
		st.Disk = &d
	}
	if c.raft.State() == raft.Leader {
		st.LastContact = "0s"
	} else if lc := c.raft.LastContact(); !lc.IsZero() {
		st.LastContact = time.Since(lc).Round(time.Millisecond).String()
	} else {
		st.LastContact = "never"
	}
	return st
}

// StateDigest returns the index the state machine has applied and the hex
// SHA-256 of its canonical snapshot, read under one lock so that they
// belong together (transport.StateDigester).
func (c *Cluster) StateDigest() (uint64, string, error) {
	var (
		idx  uint64
		data []byte
		err  error
	)
	c.fsm.read(func(m *fsm.Machine) {
		idx = m.Index()
		data, err = m.Snapshot()
	})
	if err != nil {
		return 0, "", fmt.Errorf("state digest: %w", err)
	}
	sum := sha256.Sum256(data)
	return idx, hex.EncodeToString(sum[:]), nil
}

func stateName(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Candidate:
		return "candidate"
	case raft.Follower:
		return "follower"
	default:
		return "shutdown"
	}
}

// Members lists every gossip member this node has seen, with its Raft role.
func (c *Cluster) Members() []Member {
	voters := map[string]bool{}
	if f := c.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			voters[string(s.ID)] = s.Suffrage == raft.Voter
		}
	}
	leader, _, _ := c.LeaderAPI()
	var out []Member
	for _, m := range c.members.list() {
		out = append(out, Member{
			Name:       m.Name,
			GossipAddr: m.Addr,
			RaftAddr:   m.Meta.Raft,
			APIAddr:    m.Meta.API,
			Status:     memberStatus(m.State),
			Voter:      voters[m.Name],
			Leader:     m.Name == leader,
		})
	}
	return out
}

func memberStatus(s memberlist.NodeStateType) string {
	switch s {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateLeft:
		return "left"
	default:
		return "dead"
	}
}

// Peers returns the Raft configuration.
func (c *Cluster) Peers() ([]Peer, error) {
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("read raft configuration: %w", err)
	}
	_, leader := c.raft.LeaderWithID()
	var out []Peer
	for _, s := range f.Configuration().Servers {
		out = append(out, Peer{
			ID:       string(s.ID),
			Address:  string(s.Address),
			Suffrage: s.Suffrage.String(),
			Leader:   s.ID == leader,
		})
	}
	return out, nil
}

// leaderErr maps raft's leadership errors onto the one identity every layer
// uses.
func leaderErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	default:
		return err
	}
}

func (c *Cluster) requireLeader() error {
	if c.raft.State() != raft.Leader {
		if _, id := c.raft.LeaderWithID(); id == "" {
			return ErrNoLeader
		}
		return ErrNotLeader
	}
	return nil
}

// TransferLeadership hands leadership to the named voter, or to the most
// up-to-date one when to is empty. Leader only.
func (c *Cluster) TransferLeadership(ctx context.Context, to string) error {
	if err := c.requireLeader(); err != nil {
		return err
	}
	if to == "" {
		return leaderErr(c.raft.LeadershipTransfer().Error())
	}
	if to == c.cfg.NodeName {
		return fmt.Errorf("%w: %s is already the leader", ErrInvalid, to)
	}
	peers, err := c.Peers()
	if err != nil {
		return err
	}
	for _, p := range peers {
		if p.ID == to {
			if p.Suffrage != raft.Voter.String() {
				return fmt.Errorf("%w: %s is not a voter", ErrInvalid, to)
			}
			return leaderErr(c.raft.LeadershipTransferToServer(raft.ServerID(p.ID), raft.ServerAddress(p.Address)).Error())
		}
	}
	return fmt.Errorf("%w: no raft peer named %q", ErrNotFound, to)
}

// RemovePeer removes a server from the Raft configuration (for a node that
// is gone for good). Leader only; it refuses to remove the leader itself.
func (c *Cluster) RemovePeer(ctx context.Context, id string) error {
	if err := c.requireLeader(); err != nil {
		return err
	}
	if id == c.cfg.NodeName {
		return fmt.Errorf("%w: %s is the leader; transfer leadership first", ErrInvalid, id)
	}
	peers, err := c.Peers()
	if err != nil {
		return err
	}
	for _, p := range peers {
		if p.ID == id {
			err := leaderErr(c.raft.RemoveServer(raft.ServerID(id), 0, 5*time.Second).Error())
			c.members.touch()
			return err
		}
	}
	return fmt.Errorf("%w: no raft peer named %q", ErrNotFound, id)
}

// Barrier waits until every entry committed so far is applied to this
// node's FSM. Leader only.
func (c *Cluster) Barrier(ctx context.Context) error {
	if err := c.requireLeader(); err != nil {
		return err
	}
	return leaderErr(c.raft.Barrier(timeoutFrom(ctx, 5*time.Second)).Error())
}

func timeoutFrom(ctx context.Context, def time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			return d
		}
		return time.Millisecond
	}
	return def
}

// Apply commits an encoded fsm command and returns the FSM's result. On the
// leader it goes straight to Raft; on a follower it is forwarded to the
// leader. The command is decoded first, so a corrupt command never reaches
// the log (where every node would have to halt on it). A node whose data
// directory is unhealthy refuses it (ErrDiskUnhealthy) before anything
// else.
func (c *Cluster) Apply(ctx context.Context, cmd []byte) (fsm.Result, error) {
	_, dec, err := fsm.Decode(cmd)
	if err != nil {
		return fsm.Result{}, err
	}
	start := time.Now()
	if err := c.diskRefusal(); err != nil {
		c.metrics.observeApply("refused", start, err)
		return fsm.Result{}, err
	}
	if c.raft.State() == raft.Leader {
		if err := c.checkFormat(dec); err != nil {
			c.metrics.observeApply("local", start, err)
			return fsm.Result{}, err
		}
		res, err := c.applyLocal(ctx, cmd)
		c.metrics.observeApply("local", start, err)
		return res, err
	}
	if c.cfg.Forwarder == nil {
		return fsm.Result{}, c.requireLeader()
	}
	_, api, ok := c.waitLeaderAPI(ctx)
	if !ok {
		return fsm.Result{}, ErrNoLeader
	}
	res, err := c.cfg.Forwarder(ctx, api, cmd)
	c.metrics.observeApply("forwarded", start, err)
	return res, err
}

// applyLocal appends cmd to the log and waits for its result, or for ctx:
// a leader whose log write hangs on a stalled disk holds every future
// until the write returns, and a caller must not hang with it. Given up
// on, the entry may still commit (the error says so); the wait for it
// ends with the write.
func (c *Cluster) applyLocal(ctx context.Context, cmd []byte) (fsm.Result, error) {
	f := c.raft.Apply(cmd, timeoutFrom(ctx, 5*time.Second))
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		return fsm.Result{}, fmt.Errorf("raft apply: %w; the entry may still commit", ctx.Err())
	}
	if err != nil {
		return fsm.Result{}, leaderErr(fmt.Errorf("raft apply: %w", err))
	}
	resp, ok := f.Response().(applyResponse)
	if !ok {
		return fsm.Result{}, fmt.Errorf("raft apply: unexpected response %T", f.Response())
	}
	return resp.result, resp.err
}

// waitLeaderAPI waits (bounded by ctx and two election timeouts) for a
// leader whose API address gossip knows.
func (c *Cluster) waitLeaderAPI(ctx context.Context) (string, string, bool) {
	deadline := time.Now().Add(4 * c.cfg.Raft.ElectionTimeout)
	for {
		if name, api, ok := c.LeaderAPI(); ok {
			return name, api, true
		}
		if time.Now().After(deadline) {
			return "", "", false
		}
		select {
		case <-ctx.Done():
			return "", "", false
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Services returns every service in this node's FSM (possibly stale on a
// follower by the replication lag).
func (c *Cluster) Services() []fsm.Service {
	var out []fsm.Service
	c.fsm.read(func(m *fsm.Machine) { out = m.Services() })
	return out
}

// Service returns one service from this node's FSM.
func (c *Cluster) Service(name string) (fsm.Service, bool) {
	var (
		s  fsm.Service
		ok bool
	)
	c.fsm.read(func(m *fsm.Machine) { s, ok = m.Service(name) })
	return s, ok
}

// State returns the FSM's canonical snapshot bytes and the last applied
// index: what tests compare across nodes.
func (c *Cluster) State() ([]byte, uint64, error) {
	var (
		b   []byte
		idx uint64
		err error
	)
	c.fsm.read(func(m *fsm.Machine) {
		b, err = m.Snapshot()
		idx = m.Index()
	})
	return b, idx, err
}

// Applied returns a channel signalled after committed commands are applied
// (coalesced): leader work uses it to react to commits.
func (c *Cluster) Applied() <-chan struct{} { return c.fsm.applied }

// Changed returns a channel closed when this node next applies a committed
// entry. Unlike Applied, every caller gets its own signal: take the
// channel before reading the state, and wait on it after.
func (c *Cluster) Changed() <-chan struct{} { return c.fsm.events.Next() }

// Name is this node's name.
func (c *Cluster) Name() string { return c.cfg.NodeName }

// AlertRoom reports whether this node's ledger would take the alert id
// now (fsm.Machine.AlertRoom).
func (c *Cluster) AlertRoom(id string) error {
	var err error
	c.fsm.read(func(m *fsm.Machine) { err = m.AlertRoom(id) })
	return err
}

// Alerts returns the alert ledger from this node's FSM.
func (c *Cluster) Alerts() []fsm.AlertRecord {
	var out []fsm.AlertRecord
	c.fsm.read(func(m *fsm.Machine) { out = m.Alerts() })
	return out
}

// NotifyCursor is the committed cursor of a notification sink in this
// node's FSM: the index up to which it handled the events (0: none).
func (c *Cluster) NotifyCursor(sink string) uint64 {
	var n uint64
	c.fsm.read(func(m *fsm.Machine) { n = m.NotifyCursor(sink) })
	return n
}
