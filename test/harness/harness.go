// Package harness starts real ars nodes in process for tests: the full
// agent (cluster, HTTPS API with tokens, mutual TLS) on loopback with
// random ports and tightened timings, in the manner of Nomad's testing
// server factory. Tests poll for conditions; nothing here sleeps blindly.
package harness

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
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cmd/ars/agent"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/pki"
	"github.com/ars-project/ars/transport"
)

// Cluster is a set of in-process nodes sharing one PKI.
type Cluster struct {
	t     testing.TB
	Dir   string
	Nodes []*Node
	// Tokens by role name: "operator", "detector", "reader".
	Tokens map[string]string
	logs   io.Writer // every node's log too (NewWithLogs)
}

// Node is one in-process agent.
type Node struct {
	Name  string
	Cfg   *agent.Config
	Agent *agent.Agent
}

// Option changes a node's configuration before it starts.
type Option func(*agent.Config)

// DefaultTimings keeps the production Raft and gossip timings instead of
// the harness's tightened ones (for benchmarks).
func DefaultTimings(cfg *agent.Config) {
	def := agent.DefaultConfig()
	cfg.Raft, cfg.Gossip = def.Raft, def.Gossip
}

// New starts n nodes (n1…nN) that bootstrap together.
func New(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	return NewWithLogs(t, n, nil, opts...)
}

// NewWithLogs is New with every node's log (text, debug level) written to
// logs as well (tests that inspect what the nodes log).
func NewWithLogs(t testing.TB, n int, logs io.Writer, opts ...Option) *Cluster {
	t.Helper()
	dir := t.TempDir()
	var pkiNodes []pki.PKINode
	for i := 1; i <= n+1; i++ {
		pkiNodes = append(pkiNodes, pki.PKINode{Name: "n" + strconv.Itoa(i), IPs: []string{"127.0.0.1"}})
	}
	if err := pki.GeneratePKI(pki.PKIRequest{Dir: dir, Nodes: pkiNodes, ValidFor: time.Hour}); err != nil {
		t.Fatalf("pki: %v", err)
	}
	c := &Cluster{t: t, Dir: dir, Tokens: readTokens(t, filepath.Join(dir, "tokens.yaml")), logs: logs}
	if logs != nil {
		opts = append([]Option{func(cfg *agent.Config) { cfg.Log.Level = "debug" }}, opts...)
	}
	var first string
	for i := 1; i <= n; i++ {
		cfg := c.Config("n"+strconv.Itoa(i), n)
		for _, o := range opts {
			o(cfg)
		}
		if first == "" {
			first = net.JoinHostPort(cfg.AdvertiseAddr, strconv.Itoa(cfg.Ports.Gossip))
		} else {
			cfg.Join = []string{first}
		}
		c.Start(cfg)
	}
	return c
}

func readTokens(t testing.TB, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("tokens: %v", err)
	}
	var f struct {
		Tokens []struct{ Name, Role, Secret string } `yaml:"tokens"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("tokens: %v", err)
	}
	out := map[string]string{}
	for _, tok := range f.Tokens {
		if _, ok := out[tok.Role]; !ok {
			out[tok.Role] = tok.Secret
		}
	}
	return out
}

// handedOut holds every port freePorts has returned in this process: a
// port closed after the probe can come back from the kernel at the next
// probe, and two nodes (or two ports of one node) must not get it twice.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// freePorts returns n distinct free TCP ports on 127.0.0.1, never one it
// returned before in this process. Its listeners stay open until all n
// are found, so the kernel cannot give one port twice.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	var out []int
	var open []net.Listener
	defer func() {
		for _, l := range open {
			l.Close()
		}
	}()
	for len(out) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		open = append(open, l)
		if p := l.Addr().(*net.TCPAddr).Port; !handedOut.ports[p] {
			handedOut.ports[p] = true
			out = append(out, p)
		}
	}
	return out
}

// Config returns a valid configuration for node name with tight timings.
func (c *Cluster) Config(name string, expect int) *agent.Config {
	cfg := agent.DefaultConfig()
	cfg.NodeName = name
	cfg.DataDir = filepath.Join(c.Dir, "data", name)
	cfg.BindAddr, cfg.AdvertiseAddr = "127.0.0.1", "127.0.0.1"
	ports := freePorts(c.t, 3)
	cfg.Ports.API, cfg.Ports.Raft, cfg.Ports.Gossip = ports[0], ports[1], ports[2]
	cfg.BootstrapExpect = expect
	cfg.TLS.CAFile = filepath.Join(c.Dir, "ca.pem")
	cfg.TLS.CertFile = filepath.Join(c.Dir, name+".pem")
	cfg.TLS.KeyFile = filepath.Join(c.Dir, name+"-key.pem")
	cfg.GossipKeyFile = filepath.Join(c.Dir, "gossip.key")
	cfg.TokensFile = filepath.Join(c.Dir, "tokens.yaml")
	cfg.Raft.HeartbeatTimeout, cfg.Raft.ElectionTimeout, cfg.Raft.LeaderLeaseTimeout = 300*time.Millisecond, 300*time.Millisecond, 150*time.Millisecond
	cfg.Raft.CommitTimeout = 5 * time.Millisecond
	cfg.Gossip.ProbeInterval, cfg.Gossip.ProbeTimeout, cfg.Gossip.SuspicionMult, cfg.Gossip.GossipInterval = 100*time.Millisecond, 50*time.Millisecond, 2, 50*time.Millisecond
	cfg.Log.Level = "error"
	if lvl := os.Getenv("ARS_TEST_LOG"); lvl != "" {
		cfg.Log.Level = "debug"
		if lvl != "1" {
			cfg.Log.Level = lvl
		}
	}
	return cfg
}

// Start starts a node from cfg and adds it to the cluster.
func (c *Cluster) Start(cfg *agent.Config) *Node {
	c.t.Helper()
	if err := cfg.Validate(); err != nil {
		c.t.Fatalf("config %s: %v", cfg.NodeName, err)
	}
	var w io.Writer = io.Discard
	if os.Getenv("ARS_TEST_LOG") != "" {
		w = os.Stderr
	}
	if c.logs != nil {
		w = io.MultiWriter(w, c.logs)
	}
	var (
		a   *agent.Agent
		err error
	)
	for attempt := 1; ; attempt++ {
		a, err = agent.Start(cfg, agent.NewLogger(cfg, w).With("test", c.t.Name()))
		if err == nil {
			break
		}
		// A port picked as free may be taken before the node binds it.
		if !strings.Contains(err.Error(), "address already in use") || attempt == 5 {
			c.t.Fatalf("start %s: %v", cfg.NodeName, err)
		}
		ports := freePorts(c.t, 3)
		cfg.Ports.API, cfg.Ports.Raft, cfg.Ports.Gossip = ports[0], ports[1], ports[2]
	}
	n := &Node{Name: cfg.NodeName, Cfg: cfg, Agent: a}
	c.Nodes = append(c.Nodes, n)
	c.t.Cleanup(func() { _ = a.Shutdown() })
	return n
}

// Stop stops a node without leaving and drops it from the cluster's list.
func (c *Cluster) Stop(n *Node) {
	_ = n.Agent.Shutdown()
	for i, m := range c.Nodes {
		if m == n {
			c.Nodes = append(c.Nodes[:i], c.Nodes[i+1:]...)
			break
		}
	}
}

// ClientTLS trusts the cluster CA and presents no client certificate: what
// an operator's CLI uses.
func (c *Cluster) ClientTLS() *tls.Config {
	cfg, err := transport.ClientTLS(transport.TLSFiles{CA: filepath.Join(c.Dir, "ca.pem")}, "")
	if err != nil {
		c.t.Fatalf("client tls: %v", err)
	}
	return cfg
}

// Client returns an API client for node n with the token of role.
func (c *Cluster) Client(n *Node, role string) *api.Client {
	c.t.Helper()
	cl, err := api.NewClient(n.Agent.APIURL(), c.Tokens[role], c.ClientTLS())
	if err != nil {
		c.t.Fatalf("client: %v", err)
	}
	return cl
}

// Apply commits a service spec through cl, retrying while leadership moves
// (as any client would; a spec apply is declarative, so a retry is safe).
func Apply(t testing.TB, cl *api.Client, spec []byte) fsm.Result {
	t.Helper()
	var (
		res fsm.Result
		err error
	)
	for i := 0; i < 50; i++ {
		res, err = cl.ApplyService(Ctx(t), spec)
		if !errors.Is(err, api.ErrNotLeader) && !errors.Is(err, api.ErrNoLeader) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("apply through %s: %v", cl.Addr(), err)
	}
	return res
}

// WaitFor polls cond every 20 ms until it returns nil or timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
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

// Leader waits for one leader that every node agrees on.
func (c *Cluster) Leader(timeout time.Duration) *Node {
	c.t.Helper()
	var leader *Node
	WaitFor(c.t, timeout, "an agreed leader", func() error {
		leader = nil
		for _, n := range c.Nodes {
			if n.Agent.Cluster.IsLeader() {
				if leader != nil {
					return errors.New("two leaders")
				}
				leader = n
			}
		}
		if leader == nil {
			return errors.New("no leader")
		}
		for _, n := range c.Nodes {
			if name, _, ok := n.Agent.Cluster.LeaderAPI(); !ok || name != leader.Name {
				return fmt.Errorf("%s sees leader %q", n.Name, name)
			}
		}
		return nil
	})
	return leader
}

// Follower returns some node that is not the leader.
func (c *Cluster) Follower() *Node {
	for _, n := range c.Nodes {
		if !n.Agent.Cluster.IsLeader() {
			return n
		}
	}
	c.t.Fatal("no follower")
	return nil
}

// SameState waits until every node applied the same index with identical
// state bytes, and returns them.
func (c *Cluster) SameState(timeout time.Duration) ([]byte, uint64) {
	c.t.Helper()
	var (
		state []byte
		index uint64
	)
	WaitFor(c.t, timeout, "identical state", func() error {
		for i, n := range c.Nodes {
			b, idx, err := n.Agent.Cluster.State()
			if err != nil {
				return err
			}
			if i == 0 {
				state, index = b, idx
				continue
			}
			if idx != index || string(b) != string(state) {
				return fmt.Errorf("%s at index %d differs from index %d", n.Name, idx, index)
			}
		}
		return nil
	})
	return state, index
}

// Ctx is a context with a test-sized timeout.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Quiet is a logger that drops everything.
var Quiet = slog.New(slog.DiscardHandler)
