package notify

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/fsm"
)

// script writes an executable shell script into a temporary directory.
func script(t *testing.T, body string) (path, dir string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, "notify.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o700); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

func TestExecSinkGetsArgsAndStdin(t *testing.T) {
	t.Setenv("ARS_VCENTER_PASSWORD", "hunter2") // must not reach the script
	path, dir := script(t, `out="$(dirname "$0")/event.$4"
printf '%s\n' "$@" > "$out.args"
cat > "$out.json"
env > "$out.env"
`)
	src := newFakeSource()
	svc := src.service(t) // committed before the sink starts: held, so delivered too
	m := NewMetrics(nil)
	start(t, Config{Source: src, Metrics: m, Sinks: []SinkConfig{{Name: "script",
		Exec: &ExecConfig{Path: path, Args: []string{"--from-ars"}, Timeout: 5 * time.Second}}}})
	idx := append([]uint64{svc}, src.attack(t, 1)...)
	read := func(i uint64, ext string) string {
		b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("event.%d.%s", i, ext)))
		return string(b)
	}
	eventually(t, func() error {
		if got := value(m.Delivered, "script"); got != float64(len(idx)) {
			return fmt.Errorf("delivered %v, want %d", got, len(idx))
		}
		return nil
	})
	types := []fsm.CommandType{fsm.CmdServiceApply, fsm.CmdAlert, fsm.CmdSwitch, fsm.CmdSwitchDone, fsm.CmdReplicaRole}
	for k, i := range idx {
		if got, want := read(i, "args"), fmt.Sprintf("--from-ars\n%s\ndns\n%d\n", types[k], i); got != want {
			t.Errorf("event %d: args %q, want %q", i, got, want)
		}
		var e api.Event
		if err := json.Unmarshal([]byte(read(i, "json")), &e); err != nil || e.Index != i || e.Type != string(types[k]) || e.Service != "dns" || len(e.Body) == 0 {
			t.Errorf("event %d: stdin %q (%v)", i, read(i, "json"), err)
		}
		if env := read(i, "env"); strings.Contains(env, "hunter2") {
			t.Errorf("the agent's environment reached the script: %q", env)
		}
	}
}

func TestExecSinkFailureAndTimeout(t *testing.T) {
	path, _ := script(t, `if [ "$1" = service.apply ]; then exit 0; fi
if [ "$1" = alert ]; then echo "boom: no pager" >&2; exit 3; fi
sleep 30
`)
	src := newFakeSource()
	src.service(t)
	m := NewMetrics(nil)
	var logs syncBuffer
	start(t, Config{Source: src, Metrics: m, Logger: testLogger(&logs), Sinks: []SinkConfig{{Name: "script",
		Exec: &ExecConfig{Path: path, Timeout: 200 * time.Millisecond}}}})
	src.commit(t, fsm.Alert{ID: "x-1", Service: "dns", Replica: "a", Kind: fsm.KindDoS})
	src.commit(t, fsm.AlertOutcome{ID: "x-1", Outcome: "ignored"})
	eventually(t, func() error {
		if f := value(m.Failed, "script"); f != 2 {
			return fmt.Errorf("failed %v, want 2", f)
		}
		return nil
	})
	// An executable runs once: no retry.
	if a := value(m.FailedAttempts, "script"); a != 2 {
		t.Errorf("failed attempts %v, want 2", a)
	}
	if d := value(m.Delivered, "script"); d != 1 {
		t.Errorf("delivered %v, want 1 (the service)", d)
	}
	out := logs.String()
	for _, want := range []string{"exit status 3", `boom: no pager`, "killed after the timeout of 200ms"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestWebhookSignsAndNamesEvents(t *testing.T) {
	const secret = "s3cret-hook-key"
	rcv := newReceiver(t, secret)
	src := newFakeSource()
	svc := src.service(t)
	m := NewMetrics(nil)
	var logs syncBuffer
	start(t, Config{Source: src, Metrics: m, Logger: testLogger(&logs), Sinks: []SinkConfig{{Name: "hook",
		Webhook: &WebhookConfig{URL: rcv.srv.URL + "/ars", SecretFile: writeSecret(t, secret)}}}})
	idx := append([]uint64{svc}, src.attack(t, 1)...)
	eventually(t, func() error {
		if got := rcv.got(); fmt.Sprint(got) != fmt.Sprint(idx) {
			return fmt.Errorf("received %v, want %v", got, idx)
		}
		return nil
	})
	rcv.mu.Lock()
	e := rcv.events[idx[2]]
	rcv.mu.Unlock()
	if e.Type != string(fsm.CmdSwitch) || e.Service != "dns" || !strings.Contains(string(e.Body), `"reason":"exploit"`) {
		t.Errorf("switch event %+v", e)
	}
	if strings.Contains(logs.String(), secret) {
		t.Error("the secret reached the log")
	}
}

func TestWebhookRetriesUntilDelivered(t *testing.T) {
	rcv := newReceiver(t, "k")
	rcv.fail = 3
	src := newFakeSource()
	svc := src.service(t)
	m := NewMetrics(nil)
	start(t, Config{Source: src, Metrics: m, Sinks: []SinkConfig{{Name: "hook",
		Webhook: &WebhookConfig{URL: rcv.srv.URL, SecretFile: writeSecret(t, "k"), MaxAttempts: 5, Backoff: time.Millisecond}}}})
	i := src.commit(t, fsm.Alert{ID: "x-1", Service: "dns", Replica: "a", Kind: fsm.KindDoS})
	eventually(t, func() error {
		if got := rcv.got(); fmt.Sprint(got) != fmt.Sprint([]uint64{svc, i}) {
			return fmt.Errorf("received %v, want [%d %d]", got, svc, i)
		}
		// The receiver has the event before the sink has its answer and
		// counts the delivery: wait for the count too (a CI run under
		// load read 1 delivered).
		if d, a, f := value(m.Delivered, "hook"), value(m.FailedAttempts, "hook"), value(m.Failed, "hook"); d != 2 || a != 3 || f != 0 {
			return fmt.Errorf("delivered %v, failed attempts %v, given up %v; want 2, 3, 0", d, a, f)
		}
		return nil
	})
}

func TestWebhookGivesUpAfterMaxAttempts(t *testing.T) {
	rcv := newReceiver(t, "k")
	rcv.fail = 100
	src := newFakeSource()
	src.service(t)
	m := NewMetrics(nil)
	start(t, Config{Source: src, Metrics: m, Sinks: []SinkConfig{{Name: "hook",
		Webhook: &WebhookConfig{URL: rcv.srv.URL, SecretFile: writeSecret(t, "k"), MaxAttempts: 3, Backoff: time.Millisecond}}}})
	src.commit(t, fsm.Alert{ID: "x-1", Service: "dns", Replica: "a", Kind: fsm.KindDoS})
	eventually(t, func() error {
		if f := value(m.Failed, "hook"); f != 2 {
			return fmt.Errorf("given up %v, want 2 (the service and the alert)", f)
		}
		return nil
	})
	if a := value(m.FailedAttempts, "hook"); a != 6 {
		t.Errorf("failed attempts %v, want 6", a)
	}
}

func TestWebhookDownDropsWithoutBlocking(t *testing.T) {
	// A receiver that never answers holds the first event in delivery.
	arrived, down := make(chan struct{}, 1), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-down:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(down) }) // runs before srv.Close
	src := newFakeSource()
	src.service(t)
	m := NewMetrics(nil)
	start(t, Config{Source: src, Metrics: m, Sinks: []SinkConfig{{Name: "hook",
		Webhook: &WebhookConfig{URL: srv.URL, SecretFile: writeSecret(t, "k"), Queue: 2, Timeout: time.Hour}}}})
	<-arrived // the worker holds the first event (the service's)
	for i := 1; i <= 10; i++ {
		src.commit(t, fsm.Alert{ID: fmt.Sprintf("x-%d", i), Service: "dns", Replica: "a", Kind: fsm.KindDoS})
	}
	// Ten events while one is in delivery and two fit in the queue: the
	// reader drops the rest and keeps reading; the commits never waited.
	eventually(t, func() error {
		d, q := value(m.Dropped, "hook"), testutil.ToFloat64(m.QueueLength.WithLabelValues("hook"))
		if d != 8 || q != 2 {
			return fmt.Errorf("dropped %v, queued %v; want 8 and 2", d, q)
		}
		return nil
	})
	if d := value(m.Delivered, "hook"); d != 0 {
		t.Errorf("delivered %v to a receiver that never answered", d)
	}
}
