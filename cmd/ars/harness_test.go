package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/apiserver"
	"github.com/ars-project/ars/cluster"
	"github.com/ars-project/ars/cmd/internal/cli"
	"github.com/ars-project/ars/cmd/internal/cli/clitest"
	"github.com/ars-project/ars/controller/decide"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/pki"
	"github.com/ars-project/ars/transport"
)

// fakeBackend is a transport.Backend over a real fsm.Machine, with
// scriptable cluster answers.
type fakeBackend struct {
	mu      sync.Mutex
	events  *cluster.EventLog
	m       *fsm.Machine
	index   uint64
	term    uint64
	leader  bool // false: no leader known anywhere
	members []cluster.Member
	peers   []cluster.Peer

	joined      []string
	left        bool
	transferred []string
	removed     []string
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{
		events: cluster.NewEventLog(),
		m:      fsm.New(),
		term:   3,
		leader: true,
		members: []cluster.Member{
			{Name: "n2", GossipAddr: "127.0.0.2:7502", RaftAddr: "127.0.0.2:7501", APIAddr: "https://127.0.0.2:7500", Status: "alive", Voter: true},
			{Name: "n1", GossipAddr: "127.0.0.1:7502", RaftAddr: "127.0.0.1:7501", APIAddr: "https://127.0.0.1:7500", Status: "alive", Voter: true, Leader: true},
			{Name: "n3", GossipAddr: "127.0.0.3:7502", RaftAddr: "127.0.0.3:7501", APIAddr: "https://127.0.0.3:7500", Status: "suspect", Voter: true},
		},
		peers: []cluster.Peer{
			{ID: "n1", Address: "127.0.0.1:7501", Suffrage: "voter", Leader: true},
			{ID: "n2", Address: "127.0.0.2:7501", Suffrage: "voter"},
			{ID: "n3", Address: "127.0.0.3:7501", Suffrage: "voter"},
		},
	}
}

func (b *fakeBackend) Status() cluster.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := cluster.Status{Node: "n1", State: "follower", Term: b.term, CommitIndex: b.index, AppliedIndex: b.index,
		LastLogIndex: b.index, LastContact: "12ms", Members: 3, Voters: 3, Version: "test"}
	if b.leader {
		st.State, st.Leader, st.LeaderAPI, st.LastContact = "leader", "n1", "https://127.0.0.1:7500", "0s"
	}
	return st
}
func (b *fakeBackend) Members() []cluster.Member { return b.members }
func (b *fakeBackend) Peers() ([]cluster.Peer, error) {
	return b.peers, nil
}
func (b *fakeBackend) IsLeader() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.leader
}
func (b *fakeBackend) LeaderAPI() (string, string, bool) {
	if b.IsLeader() {
		return "n1", "https://127.0.0.1:7500", true
	}
	return "", "", false
}
func (b *fakeBackend) Join(ctx context.Context, addrs []string) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.joined = append(b.joined, addrs...)
	return len(addrs), nil
}
func (b *fakeBackend) Leave(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.left = true
	return nil
}
func (b *fakeBackend) TransferLeadership(ctx context.Context, to string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if to != "" && to != "n2" && to != "n3" {
		return fmt.Errorf("transfer to %q: %w", to, api.ErrNotFound)
	}
	b.transferred = append(b.transferred, to)
	return nil
}
func (b *fakeBackend) RemovePeer(ctx context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.removed = append(b.removed, id)
	return nil
}

// Apply applies one command as if committed at the next index.
func (b *fakeBackend) Apply(ctx context.Context, cmd []byte) (fsm.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.index++
	res, err := b.m.Apply(b.index, b.term, cmd)
	b.events.Add(b.index, b.term, cmd, err)
	if err == nil && !res.Duplicate {
		if _, c, derr := fsm.Decode(cmd); derr == nil {
			if a, ok := c.(fsm.SwitchRequest); ok {
				b.decideManual(a.ID)
			}
		}
	}
	return res, err
}

// decideManual answers an operator's switch request as the leader loop
// would (the same decide function; no drivers here, so every replica is
// drivable): it commits the switch, or the reason there is none. b.mu held.
func (b *fakeBackend) decideManual(id string) {
	rec, _ := b.m.Alert(id)
	svc, _ := b.m.Service(rec.Service)
	dec, err := decide.Decide(decide.State{Service: svc}, decide.EventFromRecord(rec), time.Now())
	var cmd fsm.Command = fsm.AlertOutcome{ID: id, Outcome: string(dec.Outcome) + ": " + dec.Reason}
	if err == nil && len(dec.Commands) == 1 {
		if sw, ok := dec.Commands[0].(fsm.Switch); ok {
			sw.AlertID, sw.At = id, time.Now().UnixNano()
			cmd = sw
		}
	}
	data, err := fsm.Encode(b.term, cmd)
	if err != nil {
		panic(err)
	}
	b.index++
	if _, err := b.m.Apply(b.index, b.term, data); err != nil {
		panic(err)
	}
	b.events.Add(b.index, b.term, data, nil)
}

func (b *fakeBackend) Events(after uint64, max int) ([]cluster.Event, <-chan struct{}, error) {
	return b.events.Since(after, max)
}

func (b *fakeBackend) EventRange() (oldest, last uint64) { return b.events.Range() }
func (b *fakeBackend) Services() []fsm.Service {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m.Services()
}
func (b *fakeBackend) AlertRoom(id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m.AlertRoom(id)
}

func (b *fakeBackend) Service(name string) (fsm.Service, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m.Service(name)
}
func (b *fakeBackend) Barrier(ctx context.Context) error { return nil }
func (b *fakeBackend) SnapshotSave(ctx context.Context, w io.Writer) error {
	b.mu.Lock()
	data, err := b.m.Snapshot()
	b.mu.Unlock()
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}
func (b *fakeBackend) SnapshotRestore(ctx context.Context, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m.Restore(data)
}

// apply encodes and applies a command directly (test setup).
func (b *fakeBackend) apply(t *testing.T, c fsm.Command) fsm.Result {
	t.Helper()
	data, err := fsm.Encode(b.term, c)
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Apply(context.Background(), data)
	if err != nil {
		t.Fatalf("apply %T: %v", c, err)
	}
	return res
}

// testPKI is generated once per test binary with `ars keygen`.
type testPKI struct {
	dir, ca, cert, key, tokens, operatorToken string
}

var (
	pkiOnce  sync.Once
	testPKIs testPKI
	pkiErr   error
)

func getPKI(t *testing.T) testPKI {
	t.Helper()
	pkiOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ars-cli-pki-")
		if err != nil {
			pkiErr = err
			return
		}
		var out, errb bytes.Buffer
		code := app.Run(context.Background(), []string{"keygen", "-dir", dir, "-nodes", "n1=127.0.0.1"},
			cli.Streams{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }})
		if code != 0 {
			pkiErr = fmt.Errorf("keygen exit %d: %s", code, errb.String())
			return
		}
		testPKIs = testPKI{dir: dir, ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "n1.pem"),
			key: filepath.Join(dir, "n1-key.pem"), tokens: filepath.Join(dir, "tokens.yaml"),
			operatorToken: filepath.Join(dir, OperatorTokenFile)}
	})
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return testPKIs
}

func TestMain(m *testing.M) {
	if os.Getenv("ARS_TEST_AS_ARS") == "1" {
		// The test binary plays ars for tests that need a program on
		// disk (the completion scripts call it).
		main()
	}
	code := m.Run()
	if testPKIs.dir != "" {
		os.RemoveAll(testPKIs.dir)
	}
	os.Exit(code)
}

// testNode is an apiserver.Server over a fakeBackend behind httptest.
// closedAddr is a loopback host:port on which nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type testNode struct {
	b    *fakeBackend
	srv  *httptest.Server
	addr string // host:port
}

// startNode starts an HTTPS node (mutual TLS optional, tokens required)
// or, with dev, a plain HTTP node without authentication.
func startNode(t *testing.T, dev bool) *testNode {
	t.Helper()
	b := newFakeBackend()
	cfg := apiserver.ServerConfig{Backend: b, Dev: dev, LeaderWait: 50 * time.Millisecond, DecidesSwitches: true}
	var p testPKI
	if !dev {
		p = getPKI(t)
		tokens, err := pki.LoadTokens(p.tokens)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Tokens = tokens
		cfg.NodeClientTLS, err = transport.ClientTLS(transport.TLSFiles{CA: p.ca, Cert: p.cert, Key: p.key}, "")
		if err != nil {
			t.Fatal(err)
		}
	}
	s, err := apiserver.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // expected TLS handshake failures
	if dev {
		ts.Start()
	} else {
		ts.TLS, err = transport.ServerTLS(transport.TLSFiles{CA: p.ca, Cert: p.cert, Key: p.key}, false)
		if err != nil {
			t.Fatal(err)
		}
		ts.StartTLS()
	}
	t.Cleanup(func() { ts.Close(); s.Close() })
	return &testNode{b: b, srv: ts, addr: ts.Listener.Addr().String()}
}

// env is the environment of an operator set up for n: address, CA and
// operator token through the environment variables.
func (n *testNode) env(t *testing.T) map[string]string {
	p := getPKI(t)
	return map[string]string{cli.EnvAddr: n.addr, cli.EnvCACert: p.ca, cli.EnvTokenFile: p.operatorToken}
}

// ars runs ars with args, the given environment and stdin.
func ars(t *testing.T, env map[string]string, stdin string, args ...string) clitest.Result {
	t.Helper()
	return clitest.Run(t, app, env, stdin, args...)
}

// Alerts implements the API server's AlertLedger.
func (b *fakeBackend) Alerts() []fsm.AlertRecord {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m.Alerts()
}
