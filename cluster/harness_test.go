package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/pki"
	"github.com/ars-project/ars/transport"
)

// The in-process harness: real TCP on loopback with mutual TLS, random
// ports, tightened timings. Followers forward through a registry of
// in-process nodes instead of HTTP (the HTTP path has its own tests in
// transport/ and test/).

type harness struct {
	t     *testing.T
	pki   string
	key   []byte
	mu    sync.Mutex
	nodes map[string]*testNode // by name
	byAPI map[string]*testNode
}

type testNode struct {
	name string
	cfg  Config
	c    *Cluster
}

func newHarness(t *testing.T, names ...string) *harness {
	t.Helper()
	dir := t.TempDir()
	var nodes []pki.PKINode
	for _, n := range append(names, "n4", "n5") {
		nodes = append(nodes, pki.PKINode{Name: n, IPs: []string{"127.0.0.1"}})
	}
	if err := pki.GeneratePKI(pki.PKIRequest{Dir: dir, Nodes: dedupNodes(nodes), ValidFor: time.Hour}); err != nil {
		t.Fatalf("generate pki: %v", err)
	}
	key, err := pki.LoadGossipKey(filepath.Join(dir, "gossip.key"))
	if err != nil {
		t.Fatalf("gossip key: %v", err)
	}
	return &harness{t: t, pki: dir, key: key, nodes: map[string]*testNode{}, byAPI: map[string]*testNode{}}
}

func dedupNodes(in []pki.PKINode) []pki.PKINode {
	seen := map[string]bool{}
	var out []pki.PKINode
	for _, n := range in {
		if !seen[n.Name] {
			seen[n.Name] = true
			out = append(out, n)
		}
	}
	return out
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func testLogger(t *testing.T, name string) *slog.Logger {
	if os.Getenv("ARS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (h *harness) tlsConfigs(name string) (*tls.Config, *tls.Config) {
	h.t.Helper()
	files := transport.TLSFiles{CA: filepath.Join(h.pki, "ca.pem"), Cert: filepath.Join(h.pki, name+".pem"), Key: filepath.Join(h.pki, name+"-key.pem")}
	srv, err := transport.ServerTLS(files, true)
	if err != nil {
		h.t.Fatalf("server tls: %v", err)
	}
	cli, err := transport.ClientTLS(files, "")
	if err != nil {
		h.t.Fatalf("client tls: %v", err)
	}
	return srv, cli
}

// config builds a node config with tight timings; mutate lets a test
// change it before the node starts.
func (h *harness) config(name string, expect int, join []string) Config {
	srv, cli := h.tlsConfigs(name)
	raftAddr := fmt.Sprintf("127.0.0.1:%d", freePort(h.t))
	gossip := fmt.Sprintf("127.0.0.1:%d", freePort(h.t))
	return Config{
		NodeName:        name,
		DataDir:         filepath.Join(h.pki, "data", name),
		RaftBind:        raftAddr,
		GossipBind:      gossip,
		APIAdvertise:    "api-" + name, // resolved through the registry
		BootstrapExpect: expect,
		Join:            join,
		GossipKey:       h.key,
		ServerTLS:       srv,
		ClientTLS:       cli,
		Raft: RaftTimings{
			HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond,
			LeaderLeaseTimeout: 150 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
			SnapshotInterval: time.Hour, SnapshotThreshold: 1 << 20, TrailingLogs: 1 << 20,
		},
		Gossip:     GossipTimings{ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 50 * time.Millisecond, SuspicionMult: 2, GossipInterval: 50 * time.Millisecond},
		Membership: MembershipPolicy{ReapFailedAfter: time.Hour, MinVoters: 3, ReconcileInterval: 200 * time.Millisecond},
		Forwarder:  h.forward,
		Logger:     testLogger(h.t, name),
	}
}

func (h *harness) forward(ctx context.Context, api string, cmd []byte) (fsm.Result, error) {
	h.mu.Lock()
	n := h.byAPI[api]
	h.mu.Unlock()
	if n == nil {
		return fsm.Result{}, fmt.Errorf("no node serves %s", api)
	}
	if !n.c.IsLeader() {
		return fsm.Result{}, ErrNotLeader
	}
	return n.c.Apply(ctx, cmd)
}

// start starts a node from cfg and registers it.
func (h *harness) start(cfg Config) *testNode {
	h.t.Helper()
	var c *Cluster
	for attempt := 1; ; attempt++ {
		var err error
		if c, err = New(cfg); err != nil {
			h.t.Fatalf("new %s: %v", cfg.NodeName, err)
		}
		if err = c.Start(); err == nil {
			break
		}
		// A port picked as free may be taken before the node binds it.
		if !strings.Contains(err.Error(), "address already in use") || attempt == 5 {
			h.t.Fatalf("start %s: %v", cfg.NodeName, err)
		}
		cfg.RaftBind, cfg.RaftAdvertise = fmt.Sprintf("127.0.0.1:%d", freePort(h.t)), ""
		cfg.GossipBind, cfg.GossipAdvertise = fmt.Sprintf("127.0.0.1:%d", freePort(h.t)), ""
	}
	n := &testNode{name: cfg.NodeName, cfg: cfg, c: c}
	h.mu.Lock()
	h.nodes[n.name] = n
	h.byAPI[cfg.APIAdvertise] = n
	h.mu.Unlock()
	h.t.Cleanup(func() { _ = shutdownWithin(h.t, c, shutdownBound) })
	return n
}

// startCluster starts n nodes with bootstrap_expect n, all joining the first.
func (h *harness) startCluster(names ...string) []*testNode {
	h.t.Helper()
	cfgs := make([]Config, len(names))
	for i, name := range names {
		cfgs[i] = h.config(name, len(names), nil)
	}
	var out []*testNode
	for i := range cfgs {
		if i > 0 {
			cfgs[i].Join = []string{out[0].cfg.GossipBind}
		}
		out = append(out, h.start(cfgs[i]))
	}
	return out
}

// shutdownBound is how long a node may take to shut down before a test
// calls it hung. It detects hangs, it is not a performance target.
const shutdownBound = 30 * time.Second

// hungShutdowns holds the nodes whose Shutdown did not return in time, so
// that a later cleanup does not wait for them again.
var hungShutdowns sync.Map // *Cluster -> struct{}

// shutdownWithin shuts c down and fails the test if Shutdown does not
// return within d, with every goroutine's stack: a hung shutdown is a
// failure that says where it is stuck, not a timeout of the whole test
// binary. A Shutdown that hangs is left behind.
func shutdownWithin(t testing.TB, c *Cluster, d time.Duration) error {
	t.Helper()
	if _, hung := hungShutdowns.Load(c); hung {
		return fmt.Errorf("%s: shutdown hung", c.Name())
	}
	done := make(chan error, 1)
	go func() { done <- c.Shutdown() }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		hungShutdowns.Store(c, struct{}{})
		t.Errorf("%s: Shutdown did not return within %v; goroutines:\n%s", c.Name(), d, buf)
		return fmt.Errorf("%s: shutdown hung", c.Name())
	}
}

// stop shuts a node down hard (no leave) and unregisters it.
func (h *harness) stop(n *testNode) {
	h.t.Helper()
	if err := shutdownWithin(h.t, n.c, shutdownBound); err != nil {
		h.t.Logf("shutdown %s: %v", n.name, err)
	}
	h.mu.Lock()
	delete(h.nodes, n.name)
	delete(h.byAPI, n.cfg.APIAdvertise)
	h.mu.Unlock()
}

// restart starts a stopped node again from its data dir and addresses.
func (h *harness) restart(n *testNode) *testNode {
	h.t.Helper()
	return h.start(n.cfg)
}

func (h *harness) live() []*testNode {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*testNode
	for _, n := range h.nodes {
		out = append(out, n)
	}
	return out
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
}

// waitLeader waits until exactly one live node is leader and every live
// node agrees on it, and returns it.
func (h *harness) waitLeader(timeout time.Duration) *testNode {
	h.t.Helper()
	var leader *testNode
	waitFor(h.t, timeout, "one agreed leader", func() (err error) {
		leader, err = h.agreedLeader()
		return err
	})
	return leader
}

// agreedLeader returns the one live node that is leader, if every live node
// agrees on it.
func (h *harness) agreedLeader() (*testNode, error) {
	var leader *testNode
	nodes := h.live()
	for _, n := range nodes {
		if n.c.IsLeader() {
			if leader != nil {
				return nil, fmt.Errorf("two leaders: %s and %s", leader.name, n.name)
			}
			leader = n
		}
	}
	if leader == nil {
		return nil, errors.New("no leader")
	}
	for _, n := range nodes {
		if name, _, _ := n.c.LeaderAPI(); name != leader.name {
			return nil, fmt.Errorf("%s thinks the leader is %q", n.name, name)
		}
	}
	return leader, nil
}

// transferAway moves leadership off from and returns the new leader once
// every node agrees on it. Like Leave it asks again while from still leads:
// one transfer gives up after an election timeout, which a starved machine
// can miss.
func (h *harness) transferAway(from *testNode, timeout time.Duration) *testNode {
	h.t.Helper()
	var next *testNode
	waitFor(h.t, timeout, "leadership to move off "+from.name, func() error {
		leader, err := h.agreedLeader()
		if err == nil && leader != from {
			next = leader
			return nil
		}
		if from.c.IsLeader() {
			if err := from.c.TransferLeadership(context.Background(), ""); err != nil {
				return fmt.Errorf("transfer: %w", err)
			}
		}
		return errors.New("leadership has not moved yet")
	})
	return next
}

func (h *harness) follower() *testNode {
	for _, n := range h.live() {
		if !n.c.IsLeader() {
			return n
		}
	}
	h.t.Fatal("no follower")
	return nil
}

// sameState waits until every live node has applied the same index and
// holds byte-identical state (docs/design.md §4.6).
func (h *harness) sameState(timeout time.Duration) []byte {
	h.t.Helper()
	var state []byte
	waitFor(h.t, timeout, "identical state on every node", func() error {
		var idx0 uint64
		state = nil
		for i, n := range h.live() {
			b, idx, err := n.c.State()
			if err != nil {
				return err
			}
			if i == 0 {
				state, idx0 = b, idx
				continue
			}
			if idx != idx0 {
				return fmt.Errorf("%s applied %d, another node %d", n.name, idx, idx0)
			}
			if string(b) != string(state) {
				return fmt.Errorf("%s state differs at index %d", n.name, idx)
			}
		}
		return nil
	})
	return state
}

func serviceCmd(t testing.TB, name string, replicas ...string) []byte {
	t.Helper()
	spec := fmt.Sprintf(`{"name":%q,"address":"192.0.2.53:53","replicas":[`, name)
	impls := []string{"bind9", "unbound", "knot-resolver", "pdns-recursor"}
	var rs []string
	for i, r := range replicas {
		rs = append(rs, fmt.Sprintf(`{"name":%q,"impl":%q,"os":"linux","platform":"container","image":"github.com/ars-project/ars/%s"}`, r, impls[i%len(impls)], impls[i%len(impls)]))
	}
	spec += strings.Join(rs, ",") + `],"probe":{"query":"www.lab.internal.","type":"A","expect":"192.0.2.10"}}`
	s, err := fsm.DecodeServiceSpec([]byte(spec))
	if err != nil {
		t.Fatalf("service spec: %v", err)
	}
	cmd, err := fsm.Encode(0, fsm.ServiceApply{Spec: s})
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return cmd
}
