package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cmd/ars/agent"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/notify"
	"github.com/ars-project/ars/test/harness"
)

// hookReceiver is a webhook endpoint that checks signatures and records
// the event ids and types it got, in order.
type hookReceiver struct {
	t      *testing.T
	secret []byte
	mu     sync.Mutex
	ids    []uint64
	types  map[uint64]string
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.Header.Get(notify.HeaderSignature) != notify.Sign(h.secret, body) {
		h.t.Errorf("bad signature on event %s", r.Header.Get(notify.HeaderEventID))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var e api.Event
	if err := json.Unmarshal(body, &e); err != nil || strconv.FormatUint(e.Index, 10) != r.Header.Get(notify.HeaderEventID) {
		h.t.Errorf("event %s: %q (%v)", r.Header.Get(notify.HeaderEventID), body, err)
	}
	h.mu.Lock()
	h.ids = append(h.ids, e.Index)
	h.types[e.Index] = e.Type
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// applies are the indexes of the service.apply events received, and every
// id received.
func (h *hookReceiver) snapshot() (applies, ids []uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range h.ids {
		if h.types[id] == string(fsm.CmdServiceApply) {
			applies = append(applies, id)
		}
	}
	return applies, slices.Clone(h.ids)
}

// Every node has the same webhook sink; only the leader delivers. The
// events the first leader delivered and recorded are not delivered again
// by the next leader, and the next leader delivers what it commits.
func TestNotifyAcrossALeaderChange(t *testing.T) {
	const secret = "e2e-hook-secret"
	rcv := &hookReceiver{t: t, secret: []byte(secret), types: map[uint64]string{}}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	secretFile := filepath.Join(t.TempDir(), "hook.secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := harness.New(t, 3, func(cfg *agent.Config) {
		cfg.Notify = []agent.NotifySinkConfig{{Name: "hook", Webhook: &agent.NotifyWebhookConfig{
			URL: srv.URL + "/ars", SecretFile: secretFile, Timeout: 2 * time.Second, MaxAttempts: 3, Queue: 64}}}
	})
	leader := c.Leader(20 * time.Second)
	harness.Apply(t, c.Client(leader, "operator"), spec("dns", 2))
	harness.Apply(t, c.Client(leader, "operator"), spec("web", 2))
	var last uint64
	harness.WaitFor(t, 10*time.Second, "both applies delivered", func() error {
		applies, _ := rcv.snapshot()
		if len(applies) != 2 {
			return fmt.Errorf("applies received %v", applies)
		}
		last = applies[1]
		return nil
	})
	// The leader records how far the sink got, on every node.
	harness.WaitFor(t, 10*time.Second, "the cursor recorded", func() error {
		for _, n := range c.Nodes {
			if cur := n.Agent.Cluster.NotifyCursor("hook"); cur < last {
				return fmt.Errorf("%s: cursor %d, want %d", n.Name, cur, last)
			}
		}
		return nil
	})
	_, before := rcv.snapshot()

	c.Stop(leader)
	next := c.Leader(20 * time.Second)
	harness.Apply(t, c.Client(next, "operator"), spec("mail", 2))
	harness.WaitFor(t, 10*time.Second, "the new leader's apply delivered", func() error {
		if applies, _ := rcv.snapshot(); len(applies) < 3 {
			return fmt.Errorf("applies received %v", applies)
		}
		return nil
	})
	applies, ids := rcv.snapshot()
	if len(applies) != 3 {
		t.Errorf("service.apply events received %v, want three, once each", applies)
	}
	for _, id := range ids[len(before):] {
		if id <= last {
			t.Errorf("event %d (recorded as delivered by the first leader) delivered again by %s", id, next.Name)
		}
		rcv.mu.Lock()
		typ := rcv.types[id]
		rcv.mu.Unlock()
		if typ == string(fsm.CmdNotifyCursor) {
			t.Errorf("cursor event %d delivered", id)
		}
	}
}
