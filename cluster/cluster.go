package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/transport"
)

// Forwarder sends an encoded fsm command to the leader's API and returns
// the leader's result. The agent implements it with api.Client over
// the node's mutual-TLS identity.
type Forwarder func(ctx context.Context, leaderAPI string, cmd []byte) (fsm.Result, error)

// LeaderFunc is leader-only work. It runs in its own goroutine from the
// moment this node is leader and has passed a Barrier, and its context is
// cancelled when leadership ends; the cluster waits for it to return before
// it reports the node as a follower again.
type LeaderFunc func(ctx context.Context)

// Cluster is one controller node's membership in the replicated core.
type Cluster struct {
	cfg Config
	log *slog.Logger

	fsm      *raftFSM
	raft     *raft.Raft
	trans    raft.Transport
	stream   dialer                 // the Raft stream layer (nil in memory), for watchLeader
	netTrans *raft.NetworkTransport // nil in memory; closed as soon as Raft stops
	closers  []func() error
	ml       *memberlist.Memberlist
	meta     *metaDelegate
	members  *memberTable
	metrics  *metrics
	disk     *diskMonitor // nil in memory
	gate     *rpcGate     // nil in memory
	notifyCh chan bool
	// diskHold holds leader work back while the data directory is
	// unhealthy (set by the disk loop, read by monitorLeadership on a
	// signal of diskHoldCh).
	diskHold   atomic.Bool
	diskHoldCh chan struct{}
	leaderFns  []namedLeaderFunc

	msgHandler atomic.Pointer[MessageHandler]

	mu          sync.Mutex
	isLeader    bool
	leaderSince time.Time

	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	shutOnce sync.Once
	left     chan struct{}
}

type namedLeaderFunc struct {
	name string
	fn   LeaderFunc
}

// New validates cfg and prepares a node; Start brings it up.
func New(cfg Config) (*Cluster, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cluster{
		cfg:      cfg,
		log:      cfg.Logger.With("node", cfg.NodeName),
		fsm:      newRaftFSM(),
		members:  newMemberTable(),
		notifyCh: make(chan bool, 16), diskHoldCh: make(chan struct{}, 1),
		ctx:    ctx,
		cancel: cancel,
		left:   make(chan struct{}),
	}
	return c, nil
}

// OnLeader registers leader-only work. Call it before Start.
func (c *Cluster) OnLeader(name string, fn LeaderFunc) {
	c.leaderFns = append(c.leaderFns, namedLeaderFunc{name: name, fn: fn})
}

// Start opens the stores, starts Raft and memberlist, and begins
// bootstrapping or joining.
func (c *Cluster) Start() error {
	if err := c.startRaft(); err != nil {
		c.closeAll()
		return err
	}
	c.metrics = newMetrics(c)
	if err := c.cfg.Registerer.Register(c.metrics); err != nil {
		c.stopRaft()
		c.closeAll()
		return fmt.Errorf("register metrics: %w", err)
	}
	if err := c.startGossip(); err != nil {
		c.stopRaft()
		c.closeAll()
		return err
	}
	c.goRun("leadership", c.monitorLeadership)
	if c.disk != nil {
		c.goRun("disk-check", c.diskLoop)
	}
	c.goRun("bootstrap", c.bootstrapLoop)
	c.goRun("reconnect", c.reconnectLoop)
	if c.stream != nil {
		c.goRun("leader-watch", func() { c.watchLeader(c.stream) })
	}
	if len(c.cfg.Join) > 0 {
		c.goRun("join", c.retryJoin)
	}
	c.log.Info("node started", "raft", c.cfg.RaftAdvertise, "gossip", c.cfg.GossipAdvertise,
		"api", c.cfg.APIAdvertise, "bootstrap_expect", c.cfg.BootstrapExpect, "in_memory", c.cfg.InMemory)
	return nil
}

func (c *Cluster) goRun(name string, fn func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn()
		c.log.Debug("routine stopped", "routine", name)
	}()
}

func (c *Cluster) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.cfg.NodeName)
	rc.HeartbeatTimeout = c.cfg.Raft.HeartbeatTimeout
	rc.ElectionTimeout = c.cfg.Raft.ElectionTimeout
	rc.LeaderLeaseTimeout = c.cfg.Raft.LeaderLeaseTimeout
	rc.CommitTimeout = c.cfg.Raft.CommitTimeout
	if c.cfg.Raft.SnapshotInterval > 0 {
		rc.SnapshotInterval = c.cfg.Raft.SnapshotInterval
	}
	if c.cfg.Raft.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = c.cfg.Raft.SnapshotThreshold
	}
	if c.cfg.Raft.TrailingLogs > 0 {
		rc.TrailingLogs = c.cfg.Raft.TrailingLogs
	}
	rc.NotifyCh = c.notifyCh
	rc.Logger = hcLogger(c.log, "raft")
	return rc
}

func (c *Cluster) startRaft() error {
	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if c.cfg.InMemory {
		store := raft.NewInmemStore()
		logs, stable, snaps = store, store, raft.NewInmemSnapshotStore()
		addr, trans := raft.NewInmemTransport(raft.ServerAddress(c.cfg.NodeName))
		c.cfg.RaftAdvertise = string(addr)
		c.trans = trans
	} else {
		if err := os.MkdirAll(c.cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("create data dir: %w", err)
		}
		bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(c.cfg.DataDir, "raft.db")})
		if err != nil {
			return fmt.Errorf("open raft log store %s: %w", filepath.Join(c.cfg.DataDir, "raft.db"), err)
		}
		c.closers = append(c.closers, bolt.Close)
		c.disk = newDiskMonitor(c.cfg.DataDir, c.cfg.Disk)
		gs := &guardedStore{BoltStore: bolt, ctx: c.ctx, started: c.disk.writeStarted, failed: c.disk.writeFailed, retry: 100 * time.Millisecond,
			onRetry: func(err error) {
				c.log.Error("cannot persist a new raft term; retrying until the disk takes it", "err", err)
			}}
		logs, stable = gs, gs
		fss, err := raft.NewFileSnapshotStoreWithLogger(c.cfg.DataDir, 2, hcLogger(c.log, "snapshot"))
		if err != nil {
			return fmt.Errorf("open snapshot store: %w", err)
		}
		snaps = fss
		adv, err := net.ResolveTCPAddr("tcp", c.cfg.RaftAdvertise)
		if err != nil {
			return fmt.Errorf("raft advertise address %q: %w", c.cfg.RaftAdvertise, err)
		}
		stream, err := transport.NewStreamLayer(c.cfg.RaftBind, adv, c.cfg.ServerTLS, c.cfg.ClientTLS)
		if err != nil {
			return fmt.Errorf("raft listener on %s: %w", c.cfg.RaftBind, err)
		}
		nt := newRaftTransport(stream, hcLogger(c.log, "raft-net"))
		c.gate = newRPCGate(c.ctx, nt)
		c.trans = c.gate
		c.stream = stream
		c.netTrans = nt
		c.closers = append(c.closers, nt.Close)
	}
	r, err := raft.NewRaft(c.raftConfig(), c.fsm, logs, stable, snaps, c.trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	c.raft = r
	if c.cfg.InMemory && c.cfg.BootstrapExpect <= 1 {
		// A dev node is its own cluster from the first moment.
		c.bootstrap([]raft.Server{{ID: raft.ServerID(c.cfg.NodeName), Address: raft.ServerAddress(c.cfg.RaftAdvertise)}})
	}
	return nil
}

// newRaftTransport is the Raft transport over stream, with pipelined
// replication off (MaxRPCsInFlight 1: one AppendEntries outstanding per
// follower). Pipelining deadlocks the raft library (v1.7): when a
// follower refuses an append (a stale term after a leadership change, a
// log mismatch), the pipeline's response reader stops, the sender then
// blocks for good handing over its next request, and the pipeline is
// never closed, so the leader's replication to that follower stops and
// Raft's Shutdown waits forever for that goroutine. Seen as agents whose
// shutdown hung after a leadership change in the end-to-end tests. The
// cluster's commands are small and few; the synchronous path costs them
// nothing measurable.
func newRaftTransport(stream raft.StreamLayer, log hclog.Logger) *raft.NetworkTransport {
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:          stream,
		MaxPool:         3,
		MaxRPCsInFlight: 1,
		Timeout:         5 * time.Second,
		Logger:          log,
	})
}

func (c *Cluster) startGossip() error {
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.cfg.NodeName
	host, port, _ := net.SplitHostPort(c.cfg.GossipBind)
	mc.BindAddr = host
	mc.BindPort, _ = strconv.Atoi(port)
	ahost, aport, _ := net.SplitHostPort(c.cfg.GossipAdvertise)
	mc.AdvertiseAddr = ahost
	mc.AdvertisePort, _ = strconv.Atoi(aport)
	mc.ProbeInterval = c.cfg.Gossip.ProbeInterval
	mc.ProbeTimeout = c.cfg.Gossip.ProbeTimeout
	mc.SuspicionMult = c.cfg.Gossip.SuspicionMult
	mc.GossipInterval = c.cfg.Gossip.GossipInterval
	// A full state sync with a random member every 5 s instead of
	// memberlist's 30 s: a member that others marked dead while it was
	// cut off is revived by the next sync (unless it hears of its death
	// and refutes it first). With 30 s, the chaos suite saw healed nodes
	// stay dead in the others' gossip for 20-30 s; for three to a dozen
	// nodes the extra traffic is a few KB every 5 s.
	mc.PushPullInterval = PushPullInterval
	// A node that died and comes back under the same name at a new address
	// may reclaim its name at once: names are operator-assigned.
	mc.DeadNodeReclaimTime = time.Second
	if len(c.cfg.GossipKey) > 0 {
		mc.SecretKey = c.cfg.GossipKey
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	c.meta = &metaDelegate{c: c}
	mc.Delegate = c.meta
	mc.Events = &eventDelegate{c: c}
	mc.Logger = stdLogger(c.log, "memberlist")
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("start gossip on %s: %w", c.cfg.GossipBind, err)
	}
	c.ml = ml
	return nil
}

func (c *Cluster) retryJoin() {
	backoff := 200 * time.Millisecond
	for {
		n, err := c.ml.Join(c.cfg.Join)
		if err == nil || n > 0 {
			c.log.Info("joined gossip", "contacted", n)
			return
		}
		c.log.Warn("join failed; retrying", "addresses", c.cfg.Join, "err", err, "in", backoff)
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

// reconnectLoop asks every member that this node's gossip holds dead (not
// left) for a full state sync, every ReconnectInterval, as Serf's
// reconnect does. memberlist syncs only with members it holds alive, and
// revives a dead one only on news of a higher incarnation: two nodes each
// cut off in turn can each hold the other dead at the incarnation it had,
// while the third holds both alive at the same one, and nothing moves —
// the chaos suite saw that last past its 60 s readiness limit (seed 46:
// partitions of n1, then of n2). A sync with the "dead" member tells it of
// its death; it refutes with a new incarnation and everyone revives it.
// A member that is really gone costs one failed dial per interval.
func (c *Cluster) reconnectLoop() {
	t := time.NewTicker(ReconnectInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		for _, m := range c.members.list() {
			if m.State != memberlist.StateDead || m.Name == c.cfg.NodeName || m.Addr == "" || c.ctx.Err() != nil {
				continue
			}
			// memberlist's Join has no context: a dial to a cut-off member
			// may take its TCP timeout, which shutdown must not wait for
			// (the goroutine ends with that timeout).
			done := make(chan error, 1)
			go func(addr string) { _, err := c.ml.Join([]string{addr}); done <- err }(m.Addr)
			select {
			case err := <-done:
				if err == nil {
					c.log.Info("gossip: synced with a member held dead", "member", m.Name)
				}
			case <-c.ctx.Done():
				return
			}
		}
	}
}

// Join contacts the given gossip addresses; the leader then adds the new
// node to the Raft configuration.
func (c *Cluster) Join(ctx context.Context, addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, fmt.Errorf("%w: no addresses to join", ErrInvalid)
	}
	n, err := c.ml.Join(addrs)
	if n == 0 && err != nil {
		return 0, fmt.Errorf("join %v: %w", addrs, err)
	}
	return n, nil
}

// Left is closed once the node has left the cluster through Leave.
func (c *Cluster) Left() <-chan struct{} { return c.left }

// Leave leaves the cluster gracefully: a leader hands leadership over
// first, then the node announces its departure in gossip, waits for the
// leader to remove it from the Raft configuration, and shuts down.
func (c *Cluster) Leave(ctx context.Context) error {
	if c.IsLeader() && c.voterCount() > 1 {
		c.log.Info("leaving: transferring leadership first")
		if err := c.transferBeforeLeave(ctx); err != nil {
			return fmt.Errorf("transfer leadership before leaving: %w", err)
		}
	}
	// Announce the intent first, so members record "left", not "failed".
	c.meta.setLeaving()
	if err := c.ml.UpdateNode(time.Second); err != nil {
		c.log.Warn("gossip leave intent not fully broadcast", "err", err)
	}
	if err := c.ml.Leave(2 * time.Second); err != nil {
		c.log.Warn("gossip leave broadcast incomplete", "err", err)
	}
	// Wait until the leader has removed us (or we are alone).
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !c.inConfiguration() || c.voterCount() <= 1 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if c.inConfiguration() && c.voterCount() > 1 {
		c.log.Warn("leader did not remove this node in time; shutting down anyway")
	}
	err := c.Shutdown()
	select {
	case <-c.left:
	default:
		close(c.left)
	}
	return err
}

// transferBeforeLeave hands leadership over, trying up to three times: one
// attempt gives up after an election timeout, which a follower still
// catching up, or a busy machine, can miss. Leadership that moved anyway
// counts as handed over.
func (c *Cluster) transferBeforeLeave(ctx context.Context) error {
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if err = c.raft.LeadershipTransfer().Error(); err == nil || !c.IsLeader() {
			return nil
		}
		c.log.Warn("leadership transfer failed; trying again", "attempt", attempt, "err", err)
		if ctx.Err() != nil {
			return fmt.Errorf("%w (%w)", err, ctx.Err())
		}
	}
	return err
}

func (c *Cluster) inConfiguration() bool {
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return true
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(c.cfg.NodeName) {
			return true
		}
	}
	return false
}

func (c *Cluster) voterCount() int {
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	n := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			n++
		}
	}
	return n
}

// Shutdown stops the node without leaving: the others see it fail. It is
// safe to call more than once.
func (c *Cluster) Shutdown() error {
	var err error
	c.shutOnce.Do(func() {
		c.cancel()
		if c.ml != nil {
			_ = c.ml.Shutdown()
		}
		c.stopRaft()
		c.wg.Wait()
		if c.metrics != nil {
			c.cfg.Registerer.Unregister(c.metrics)
		}
		err = c.closeAll()
		c.log.Info("node stopped")
	})
	return err
}

func (c *Cluster) stopRaft() {
	if c.raft != nil {
		if err := c.raft.Shutdown().Error(); err != nil {
			c.log.Warn("raft shutdown", "err", err)
		}
	}
	// Refuse Raft connections from now on, not once the node's other
	// goroutines have ended: a peer's leader watch takes a refused dial
	// for a gone leader and campaigns, while a listener that still
	// accepts (and never answers) holds the election off.
	if c.netTrans != nil {
		if err := c.netTrans.Close(); err != nil {
			c.log.Warn("raft transport close", "err", err)
		}
	}
}

func (c *Cluster) closeAll() error {
	var errs []error
	for i := len(c.closers) - 1; i >= 0; i-- {
		if err := c.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	c.closers = nil
	return errors.Join(errs...)
}
