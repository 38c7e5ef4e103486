package lab

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/lab/netlab"
)

// A lab whose network is described but not built: enough for the control
// API's input checks, which must refuse bad requests before touching
// anything.
func describedLab(t *testing.T) *Lab {
	t.Helper()
	nl, err := netlab.New(netlab.Topology{Prefix: "arsctl", Replicas: []string{"a", "b"}, Nodes: []string{"n1"}})
	if err != nil {
		t.Fatal(err)
	}
	return &Lab{Net: nl, cfg: Config{Replicas: []Replica{{Name: "a", Impl: "bind9", OS: "linux"}, {Name: "b", Impl: "unbound", OS: "linux"}}}}
}

func TestControlRefusesBadInput(t *testing.T) {
	h := describedLab(t).Handler(func() { t.Error("down called") })
	cases := []struct {
		method, path, body, want string
	}{
		{"POST", "/v1/attack", `{"kind":"dos","replica":"a","extra":1}`, "unknown field"},
		{"POST", "/v1/attack", `{"kind":"flood","replica":"a"}`, "want dos or exploit"},
		{"POST", "/v1/attack", `{"kind":"dos","replica":"a","impl":"bind9"}`, "names one target"},
		{"POST", "/v1/attack", `{"kind":"exploit","impl":"bind9"}`, "names one target"},
		{"POST", "/v1/attack", `{"kind":"dos"}`, "names one target"},
		{"POST", "/v1/attack", `{"kind":"dos","replica":"zz"}`, `no replica "zz"`},
		{"POST", "/v1/attack", `{"kind":"exploit","replica":"zz"}`, `no replica "zz"`},
		{"POST", "/v1/attack", `{"kind":"dos","impl":"knot-resolver"}`, "no replica runs"},
		{"POST", "/v1/attack", `{"kind":"dos","impl":"bind9","duration":"20m"}`, "at most"},
		{"POST", "/v1/attack", `{"kind":"dos","replica":"a","timeout":"-1s"}`, "timeout"},
		{"POST", "/v1/attack", `{"kind":"dos","active":true,"replica":"a"}`, "names no other target"},
		{"POST", "/v1/attack", `not json`, "attack request"},
		{"POST", "/v1/nodes/n9/kill", ``, `no node "n9"`},
		{"POST", "/v1/nodes/n1/reboot", ``, "want kill, start, stop"},
		{"POST", "/v1/nodes/n9/stop", ``, `no node "n9"`},
		{"POST", "/v1/nodes/n9/partition", ``, `no node "n9"`},
		{"POST", "/v1/nodes/n9/heal", ``, `no node "n9"`},
		{"POST", "/v1/vcenter/faults", `{"method":"ReconfigVM_Task"}`, "would do nothing"},
		{"POST", "/v1/vcenter/faults", `{"method":"","delay":"1s"}`, "want a SOAP method"},
		{"POST", "/v1/vcenter/faults", `{"method":"Login","fail":true}`, "delay it instead"},
		{"POST", "/v1/vcenter/faults", `{"method":"*","fail":true}`, "delay it instead"},
		{"POST", "/v1/vcenter/faults", `{"method":"ReconfigVM_Task","delay":"10s"}`, "delay"},
		{"POST", "/v1/vcenter/faults", `{"method":"ReconfigVM_Task","fail":true,"duration":"2h"}`, "duration"},
		{"POST", "/v1/vcenter/faults", `{"method":"ReconfigVM_Task","fail":true,"x":1}`, "unknown field"},
		{"GET", "/v1/outage?from=yesterday&to=now", ``, "RFC 3339"},
		{"GET", "/v1/events?since=soon", ``, "RFC 3339"},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, strings.NewReader(c.body)))
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &e)
		if rec.Code != http.StatusBadRequest || !strings.Contains(e.Error, c.want) {
			t.Errorf("%s %s %s: %d %q; want 400 with %q", c.method, c.path, c.body, rec.Code, e.Error, c.want)
		}
	}
}

// Fault rules apply to the methods they name (or all, "*"), the longest
// delay wins, and they end by themselves.
func TestVCFaultRules(t *testing.T) {
	var v vcFaults
	now := time.Now()
	r1, err := VCFaultRequest{Method: "ReconfigVM_Task", Fail: true, Duration: "1s"}.Rule(now)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := VCFaultRequest{Method: "*", Delay: "200ms", Duration: "3s"}.Rule(now)
	if err != nil {
		t.Fatal(err)
	}
	v.add(r1)
	v.add(r2)
	if d, fail := v.match("ReconfigVM_Task", now); d != 200*time.Millisecond || !fail {
		t.Fatalf("ReconfigVM_Task: delay %s fail %t; want 200ms and fail", d, fail)
	}
	if d, fail := v.match("PowerOnVM_Task", now); d != 200*time.Millisecond || fail {
		t.Fatalf("PowerOnVM_Task: delay %s fail %t; want 200ms, no fail", d, fail)
	}
	if d, fail := v.match("ReconfigVM_Task", now.Add(2*time.Second)); d != 200*time.Millisecond || fail {
		t.Fatalf("after the fail rule ended: delay %s fail %t", d, fail)
	}
	if d, fail := v.match("ReconfigVM_Task", now.Add(4*time.Second)); d != 0 || fail {
		t.Fatalf("after every rule ended: delay %s fail %t", d, fail)
	}
	v.add(r1)
	if n := v.clear(); n != 1 {
		t.Fatalf("clear removed %d rules, want 1", n)
	}
}

// The proxy dials the simulator from 127.0.0.X for a node at a.b.c.X, so
// that a session names its node.
func TestProxySource(t *testing.T) {
	l := describedLab(t)
	src := proxySource(&net.TCPAddr{IP: net.IPv4(10, 253, 53, 11), Port: 4000})
	if src == nil || src.IP.String() != "127.0.0.11" {
		t.Fatalf("source for .11 = %v", src)
	}
	if got := l.nodeOfSource("127.0.0.11"); got != "n1" {
		t.Fatalf("node of 127.0.0.11 = %q, want n1", got)
	}
	if got := l.nodeOfSource("127.0.0.1"); got != "" {
		t.Fatalf("node of 127.0.0.1 = %q, want none", got)
	}
	if proxySource(&net.UnixAddr{Name: "x"}) != nil {
		t.Fatal("a non-TCP address got a source")
	}
}

// The event log keeps the newest maxEvents, oldest first, and Events
// returns those at or after a time.
func TestEventLogIsBounded(t *testing.T) {
	l := describedLab(t)
	for i := range maxEvents + 5 {
		l.events.add(LabEvent{At: time.Unix(int64(i), 0), Replica: "a", What: "link"})
	}
	all := l.Events(time.Time{})
	if len(all) != maxEvents || !all[0].At.Equal(time.Unix(5, 0)) {
		t.Fatalf("%d events from %v; want %d from the 6th", len(all), all[0].At, maxEvents)
	}
	if got := l.Events(time.Unix(int64(maxEvents+3), 0)); len(got) != 2 {
		t.Fatalf("%d events at or after the last but one; want 2", len(got))
	}
}

// The control socket refuses an oversized request with 413 and drops
// clients that send their headers or body too slowly (ControlServer's
// timeouts, shortened here).
func TestControlServerRefusesOversizedAndSlowRequests(t *testing.T) {
	h := describedLab(t).Handler(func() { t.Error("down called") })
	rec := httptest.NewRecorder()
	big := `{"kind":"dos","replica":"a","impl":"` + strings.Repeat("x", MaxControlBody) + `"}`
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/attack", strings.NewReader(big)))
	if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), "larger than") {
		t.Fatalf("oversized attack request: %d %s; want 413", rec.Code, rec.Body)
	}

	srv := ControlServer(h)
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
		t.Fatalf("control server without limits: %+v", srv)
	}
	srv.ReadHeaderTimeout, srv.ReadTimeout = 200*time.Millisecond, 300*time.Millisecond
	sock := filepath.Join(t.TempDir(), "c.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	for name, partial := range map[string]string{
		"slow headers": "POST /v1/attack HTTP/1.1\r\nHost: lab\r\n",
		"slow body":    "POST /v1/attack HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"kind\":",
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write([]byte(partial)); err != nil {
				t.Fatal(err)
			}
			// The server must end the connection; our deadline only keeps
			// a broken server from hanging the test.
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 512)
			for err == nil {
				_, err = conn.Read(buf)
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the control server kept a slow client's connection open")
			}
		})
	}
}

// Nodes on another agent binary: Up refuses an entry for no node, one
// without a binary, and the dead webhook beside them (ars 0.1.0 refuses
// its notify key) before it makes anything; UpgradeNode refuses an
// unknown node and a missing binary.
func TestNodeAgentsRefusedBadInput(t *testing.T) {
	reps := []Replica{{Name: "a", Impl: "bind9", OS: "linux"}}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Replicas: reps, Nodes: []string{"n1"}, Agent: "/ars", NodeAgents: map[string]string{"n9": "/old"}}, `for node "n9"`},
		{Config{Replicas: reps, Nodes: []string{"n1"}, Agent: "/ars", NodeAgents: map[string]string{"n1": ""}}, `for node "n1"`},
		{Config{Replicas: reps, Nodes: []string{"n1"}, Agent: "/ars", NodeAgents: map[string]string{"n1": "/old"}, DeadWebhook: true}, "notify key"},
	} {
		l, err := Up(context.Background(), c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			if l != nil {
				_ = l.Down(context.Background())
			}
			t.Errorf("Up(%+v): %v; want an error with %q", c.cfg.NodeAgents, err, c.want)
		}
	}
	l := describedLab(t)
	if err := l.UpgradeNode("zz", "/ars"); !IsBadRequest(err) {
		t.Errorf("upgrade of an unknown node: %v; want a bad request", err)
	}
	if err := l.UpgradeNode("n1", ""); !IsBadRequest(err) {
		t.Errorf("upgrade without a binary: %v; want a bad request", err)
	}
}
