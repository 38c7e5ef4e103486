package apiserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cluster"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/pki"
	"github.com/ars-project/ars/test/testpki"
	"github.com/ars-project/ars/test/testutil"
	"github.com/ars-project/ars/transport"
)

// Test PKIs, generated once: the cluster's and a foreign one.
var (
	pkiDir     string
	foreignDir string
)

func TestMain(m *testing.M) { os.Exit(testpki.Main(m, &pkiDir, &foreignDir)) }

func nodeFiles(dir, node string) transport.TLSFiles { return testpki.NodeFiles(dir, node) }

func mustServerTLS(t testing.TB, dir, node string, require bool) *tls.Config {
	return testpki.ServerTLS(t, dir, node, require)
}

func mustClientTLS(t testing.TB, f transport.TLSFiles) *tls.Config { return testpki.ClientTLS(t, f) }

// caOnly is a client TLS config that trusts the cluster CA and presents no
// certificate (an operator with a token).
func caOnly(t testing.TB) *tls.Config { return testpki.CAOnly(t, pkiDir) }

// issueNonNodeCert issues a client+server certificate from the cluster CA
// without the node marker.
func issueNonNodeCert(t testing.TB, cn string) tls.Certificate {
	return testpki.NonNodeCert(t, pkiDir, cn)
}

// Fixed test secrets.
const (
	secretOperator = "operator-secret-0123456789abcdef"
	secretReader   = "reader-secret-0123456789abcdef"
	secretDetector = "detector-secret-0123456789abcdef"
	secretOther    = "other-secret-known-only-to-follower"
)

func testTokens(t testing.TB, extra ...pki.Token) *pki.Tokens {
	t.Helper()
	list := append([]pki.Token{
		{Name: "ops", Role: pki.RoleOperator, Secret: secretOperator},
		{Name: "viewer", Role: pki.RoleReader, Secret: secretReader},
		{Name: "watcher", Role: pki.RoleDetector, Secret: secretDetector},
	}, extra...)
	tok, err := pki.NewTokens(list)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// fakeBackend implements Backend over a real fsm.Machine.
type fakeBackend struct {
	mu        sync.Mutex
	name      string
	leader    bool
	leaderFn  func() (string, string, bool)
	m         *fsm.Machine
	index     uint64
	term      uint64
	applyN    int
	joinN     int
	joined    []string
	leaveN    int
	transfer  []string
	removed   []string
	barrierN  int
	applyErr  error
	snapshot  []byte
	restored  []byte
	snapErr   error
	snapAfter int // with snapErr: bytes written before failing
	events    *cluster.EventLog
}

func newFakeBackend(name string, leader bool) *fakeBackend {
	return &fakeBackend{name: name, leader: leader, m: fsm.New(), term: 3, snapshot: []byte("snapshot-bytes-" + name),
		events: cluster.NewEventLog()}
}

func (f *fakeBackend) setLeader(v bool) { f.mu.Lock(); f.leader = v; f.mu.Unlock() }

func (f *fakeBackend) Status() cluster.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	state := "follower"
	if f.leader {
		state = "leader"
	}
	return cluster.Status{Node: f.name, State: state, Term: f.term, AppliedIndex: f.index, Version: "test"}
}

func (f *fakeBackend) Members() []cluster.Member {
	return []cluster.Member{{Name: f.name, Status: "alive", Voter: true, APIAddr: "127.0.0.1:1"}}
}

func (f *fakeBackend) Peers() ([]cluster.Peer, error) {
	return []cluster.Peer{{ID: f.name, Address: "127.0.0.1:2", Suffrage: "Voter"}}, nil
}

func (f *fakeBackend) IsLeader() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.leader }

func (f *fakeBackend) LeaderAPI() (string, string, bool) {
	f.mu.Lock()
	fn := f.leaderFn
	f.mu.Unlock()
	if fn == nil {
		return "", "", false
	}
	return fn()
}

func (f *fakeBackend) Join(ctx context.Context, addrs []string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.joinN++
	f.joined = append(f.joined, addrs...)
	return len(addrs), nil
}

func (f *fakeBackend) Leave(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leaveN++
	return nil
}

func (f *fakeBackend) TransferLeadership(ctx context.Context, to string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.transfer = append(f.transfer, to)
	return nil
}

func (f *fakeBackend) RemovePeer(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, id)
	return nil
}

func (f *fakeBackend) Apply(ctx context.Context, cmd []byte) (fsm.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applyN++
	if f.applyErr != nil {
		return fsm.Result{}, f.applyErr
	}
	f.index++
	res, err := f.m.Apply(f.index, f.term, cmd)
	f.events.Add(f.index, f.term, cmd, err)
	if err == nil {
		if _, c, derr := fsm.Decode(cmd); derr == nil {
			if a, ok := c.(fsm.SwitchRequest); ok && !res.Duplicate {
				f.decideManual(a)
			}
		}
	}
	return res, err
}

// decideManual stands in for the leader loop (which this package does not
// import): it answers an operator's switch request at once, switching to
// the named replica or else the standby, or recording why not. f.mu held.
func (f *fakeBackend) decideManual(a fsm.SwitchRequest) {
	svc, _ := f.m.Service(a.Service)
	act, _ := svc.Active()
	to := a.To
	if to == "" {
		sb, _ := svc.Standby()
		to = sb.Name
	}
	var cmd fsm.Command = fsm.Switch{Service: a.Service, From: act.Name, To: to, Reason: fsm.ReasonManual,
		ExpectGeneration: svc.Generation, At: 1, AlertID: a.ID}
	for range 2 {
		data, err := fsm.Encode(f.term, cmd)
		if err != nil {
			panic(err)
		}
		f.index++
		_, err = f.m.Apply(f.index, f.term, data)
		f.events.Add(f.index, f.term, data, err)
		if err == nil {
			return
		}
		cmd = fsm.AlertOutcome{ID: a.ID, Outcome: "rejected: " + err.Error()}
	}
}

func (f *fakeBackend) Events(after uint64, max int) ([]cluster.Event, <-chan struct{}, error) {
	return f.events.Since(after, max)
}

func (f *fakeBackend) EventRange() (oldest, last uint64) { return f.events.Range() }

func (f *fakeBackend) Services() []fsm.Service {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m.Services()
}

func (f *fakeBackend) AlertRoom(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m.AlertRoom(id)
}

func (f *fakeBackend) Service(name string) (fsm.Service, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m.Service(name)
}

// Alerts implements AlertLedger.
func (f *fakeBackend) Alerts() []fsm.AlertRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m.Alerts()
}

func (f *fakeBackend) Barrier(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.barrierN++
	return nil
}

func (f *fakeBackend) SnapshotSave(ctx context.Context, w io.Writer) error {
	f.mu.Lock()
	data, serr, after := f.snapshot, f.snapErr, f.snapAfter
	f.mu.Unlock()
	if serr != nil {
		if after > 0 {
			if _, err := w.Write(data[:after]); err != nil {
				return err
			}
		}
		return serr
	}
	_, err := w.Write(data)
	return err
}

func (f *fakeBackend) SnapshotRestore(ctx context.Context, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restored = data
	return nil
}

func (f *fakeBackend) counts() (apply, join, leave, transfer, remove int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applyN, f.joinN, f.leaveN, len(f.transfer), len(f.removed)
}

// testServer is an API server on a real TLS listener on 127.0.0.1.
type testServer struct {
	*httptest.Server
	api  *Server
	b    *fakeBackend
	logs *testutil.SyncBuffer
	// seen records the X-Ars-Forwarded header of every request.
	seenMu sync.Mutex
	seen   []string
}

func (ts *testServer) forwardedHeaders() []string {
	ts.seenMu.Lock()
	defer ts.seenMu.Unlock()
	return append([]string(nil), ts.seen...)
}

// hostPort is the server's address without scheme.
func (ts *testServer) hostPort() string { return ts.Listener.Addr().String() }

// startServer starts an API server for node (n1..n4) with cfg's Backend
// defaulting to a fake leader.
func startServer(t *testing.T, node string, b *fakeBackend, mod func(*ServerConfig)) *testServer {
	t.Helper()
	return startServerTLS(t, node, b, mod, mustServerTLS(t, pkiDir, node, false))
}

func startServerTLS(t *testing.T, node string, b *fakeBackend, mod func(*ServerConfig), serverTLS *tls.Config) *testServer {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	cfg := ServerConfig{
		Backend:       b,
		Tokens:        testTokens(t),
		NodeClientTLS: mustClientTLS(t, nodeFiles(pkiDir, node)),
		Logger:        slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		LeaderWait:    300 * time.Millisecond,
		NodeName:      node,
		// decideManual stands in for the leader loop.
		DecidesSwitches: true,
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{api: srv, b: b, logs: logs}
	ts.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.seenMu.Lock()
		ts.seen = append(ts.seen, r.Header.Get(api.HeaderForwarded))
		ts.seenMu.Unlock()
		srv.Handler().ServeHTTP(w, r)
	}))
	ts.Server.TLS = serverTLS
	ts.Server.Config.ErrorLog = slog.NewLogLogger(slog.New(slog.NewTextHandler(io.Discard, nil)).Handler(), slog.LevelDebug)
	ts.StartTLS()
	t.Cleanup(func() {
		ts.Close()
		srv.Close()
	})
	return ts
}

func newTestClient(t *testing.T, addr, token string, tlsCfg *tls.Config) *api.Client {
	t.Helper()
	c, err := api.NewClient(addr, token, tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// rawRequest sends a request with arbitrary headers and body and returns
// status, decoded error (if any) and body.
func rawRequest(t *testing.T, ts *testServer, tlsCfg *tls.Config, method, path string, hdr http.Header, body []byte) (int, *api.APIError, []byte) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var eb struct {
		Error *api.APIError `json:"error"`
	}
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(data, &eb); err != nil || eb.Error == nil {
			t.Fatalf("%s %s: status %d with non-JSON error body %q", method, path, resp.StatusCode, data)
		}
		eb.Error.Status = resp.StatusCode
	}
	return resp.StatusCode, eb.Error, data
}

func bearer(secret string) http.Header {
	return http.Header{"Authorization": {"Bearer " + secret}}
}

// validSpec is a service spec the fsm accepts.
func validSpec(name string) []byte {
	spec := map[string]any{
		"name":    name,
		"address": "192.0.2.53:53",
		"replicas": []map[string]string{
			{"name": "win-bind", "impl": "bind9", "os": "windows", "platform": "vm"},
			{"name": "lin-unbound", "impl": "unbound", "os": "linux", "platform": "container"},
		},
		"probe": map[string]string{"query": "www.lab.internal.", "expect": "192.0.2.10"},
	}
	data, err := json.Marshal(spec)
	if err != nil {
		panic(err)
	}
	return data
}

func encodedApply(t testing.TB, name string) []byte {
	t.Helper()
	spec, err := fsm.DecodeServiceSpec(validSpec(name))
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := fsm.Encode(3, fsm.ServiceApply{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}
