package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cluster"
	"github.com/ars-project/ars/fsm"
)

// fakeSource is a one-node cluster without Raft: a state machine and its
// event log, committed to in order. Leaders come and go by starting and
// stopping notifiers on the same source, as on a real cluster where the
// log and the cursors survive the leader.
type fakeSource struct {
	mu    sync.Mutex
	m     *fsm.Machine
	log   *cluster.EventLog
	index uint64
	// level is the lowest format level the cluster's servers read (0:
	// fsm.FormatLevel): a command above it is refused as on a leader.
	level int
	// refused counts the commands refused for their level.
	refused int
}

func newFakeSource() *fakeSource { return &fakeSource{m: fsm.New(), log: cluster.NewEventLog()} }

func (f *fakeSource) Events(after uint64, max int) ([]cluster.Event, <-chan struct{}, error) {
	return f.log.Since(after, max)
}

func (f *fakeSource) EventRange() (uint64, uint64) { return f.log.Range() }

func (f *fakeSource) NotifyCursor(sink string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m.NotifyCursor(sink)
}

func (f *fakeSource) Apply(_ context.Context, data []byte) (fsm.Result, error) {
	_, c, err := fsm.Decode(data)
	if err != nil {
		return fsm.Result{}, err
	}
	if lvl := fsm.Level(c); f.level > 0 && lvl > f.level {
		f.mu.Lock()
		f.refused++
		f.mu.Unlock()
		return fsm.Result{}, fsm.NeedsUpgrade(c.Type(), lvl, []string{fmt.Sprintf("n2 (level %d)", f.level)})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index++
	res, err := f.m.Apply(f.index, 1, data)
	f.log.Add(f.index, 1, data, err)
	return res, err
}

// commit applies c and returns its index (the command may be refused by
// the state machine: it is an event all the same).
func (f *fakeSource) commit(t testing.TB, c fsm.Command) uint64 {
	t.Helper()
	data, err := fsm.Encode(0, c)
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.Apply(context.Background(), data)
	if fsm.Fatal(err) {
		t.Fatal(err)
	}
	return res.Index
}

// service commits the service "dns" with three diverse container replicas.
func (f *fakeSource) service(t testing.TB) uint64 {
	t.Helper()
	spec, err := fsm.DecodeServiceSpec([]byte(`{"name":"dns","address":"192.0.2.53:53","replicas":[` +
		`{"name":"a","impl":"bind9","os":"linux","platform":"container","image":"bind9"},` +
		`{"name":"b","impl":"unbound","os":"linux","platform":"container","image":"unbound"},` +
		`{"name":"c","impl":"knot-resolver","os":"linux","platform":"container","image":"knot"}],` +
		`"probe":{"query":"www.lab.internal.","type":"A","expect":"192.0.2.10"}}`))
	if err != nil {
		t.Fatal(err)
	}
	return f.commit(t, fsm.ServiceApply{Spec: spec})
}

// attack commits what an exploit of the active replica produces: the
// alert, the switch that answers it, the switch's completion and the
// restore of the replica switched away from. It returns the indexes.
func (f *fakeSource) attack(t testing.TB, n int) []uint64 {
	t.Helper()
	f.mu.Lock()
	svc, _ := f.m.Service("dns")
	f.mu.Unlock()
	active, _ := svc.Active()
	id := "exploit-" + strconv.Itoa(n)
	out := []uint64{f.commit(t, fsm.Alert{ID: id, Service: "dns", Replica: active.Name, Kind: fsm.KindExploit, Source: "test", At: int64(n)})}
	data, _ := fsm.Encode(0, fsm.Switch{Service: "dns", From: active.Name, Reason: fsm.ReasonExploit, At: int64(n), AlertID: id})
	res, err := f.Apply(context.Background(), data)
	if err != nil {
		t.Fatalf("switch %d: %v", n, err)
	}
	out = append(out, res.Index,
		f.commit(t, fsm.SwitchDone{Service: "dns", Generation: res.Generation, TotalMS: 1, At: int64(n)}))
	f.mu.Lock()
	svc, _ = f.m.Service("dns")
	f.mu.Unlock()
	return append(out, f.commit(t, fsm.ReplicaRole{Service: "dns", Replica: active.Name, Action: fsm.ActionRestored,
		ExpectGeneration: svc.Generation}))
}

// receiver is a webhook endpoint that checks every request's signature
// and records the event ids it got, in order.
type receiver struct {
	t      testing.TB
	secret []byte
	mu     sync.Mutex
	ids    []uint64
	events map[uint64]api.Event
	// fail answers this many requests 503 before it accepts any.
	fail int
	srv  *httptest.Server
}

func newReceiver(t testing.TB, secret string) *receiver {
	r := &receiver{t: t, secret: []byte(secret), events: map[uint64]api.Event{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body := new(bytes.Buffer)
	_, _ = body.ReadFrom(req.Body)
	if got, want := req.Header.Get(HeaderSignature), Sign(r.secret, body.Bytes()); got != want {
		r.t.Errorf("signature %q, want %q", got, want)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var e api.Event
	if err := json.Unmarshal(body.Bytes(), &e); err != nil {
		r.t.Errorf("body %q: %v", body, err)
	}
	if id := req.Header.Get(HeaderEventID); id != strconv.FormatUint(e.Index, 10) || req.Header.Get(HeaderEventType) != e.Type {
		r.t.Errorf("headers id %q type %q for event %d %s", id, req.Header.Get(HeaderEventType), e.Index, e.Type)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	r.ids = append(r.ids, e.Index)
	r.events[e.Index] = e
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) typeOf(id uint64) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.events[id].Type
}

func (r *receiver) got() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ids)
}

// writeSecret writes a secret file and returns its path.
func writeSecret(t testing.TB, secret string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook.secret")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// running is a notifier started as a leader would start it.
type running struct {
	n      *Notifier
	cancel context.CancelFunc
	done   chan struct{}
}

func start(t testing.TB, cfg Config) *running {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{n: n, cancel: cancel, done: make(chan struct{})}
	started := make(chan struct{})
	n.started = func() { close(started) }
	go func() { defer close(r.done); n.Run(ctx) }()
	t.Cleanup(r.stop)
	<-started // the sinks know where they start: later commits reach them
	return r
}

// stop ends leadership and waits for every delivery routine to return.
func (r *running) stop() {
	r.cancel()
	<-r.done
}

// eventually polls cond until it returns nil, failing after 10s.
func eventually(t testing.TB, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// value reads a per-sink counter or gauge.
func value(v interface {
	WithLabelValues(...string) prometheus.Counter
}, sink string) float64 {
	return testutil.ToFloat64(v.WithLabelValues(sink))
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger(buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
