package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ars-project/ars/lab/netlab"
)

// The lab daemon (`ars-lab serve`, started by `ars-lab up`) holds the
// simulator, the Mirror and the measuring client, so it must outlive the
// command that started it. The CLI talks to it over a unix socket in the
// state directory (mode 0600: root only) with a small JSON API.

// ControlSocket is the daemon's socket in stateDir.
func ControlSocket(stateDir string) string { return filepath.Join(stateDir, "control.sock") }

// Status is the lab as `ars-lab status` shows it.
type Status struct {
	Prefix      string          `json:"prefix"`
	StateDir    string          `json:"state_dir"`
	Started     time.Time       `json:"started"`
	Pid         int             `json:"pid"`
	Profile     string          `json:"profile"`
	Service     string          `json:"service"`
	ServiceAddr string          `json:"service_addr"`
	VCenter     string          `json:"vcenter"`
	PKI         string          `json:"pki"`
	ClientNS    string          `json:"client_namespace"`
	Leader      string          `json:"leader"`
	Generation  uint64          `json:"generation"`
	Nodes       []NodeStatus    `json:"nodes"`
	Replicas    []ReplicaStatus `json:"replicas"`
	// Handover is the lab's handover mode: "nic", or "address" (its Linux
	// VM replicas take the address through their agents).
	Handover string `json:"handover"`
	// Attacks maps an implementation under attack to the attack's end.
	Attacks map[string]time.Time `json:"attacks,omitempty"`
	// Last10s is what the client saw over the last ten seconds.
	Last10s struct {
		Sent int `json:"sent"`
		Lost int `json:"lost"`
	} `json:"last_10s"`
	// DeadWebhook is set on a lab whose nodes notify a webhook that never
	// answers (up -dead-webhook): the connections the nodes opened to it.
	DeadWebhook *DeadWebhookStatus `json:"dead_webhook,omitempty"`
}

// DeadWebhookStatus is what the lab's dead webhook received.
type DeadWebhookStatus struct {
	URL      string `json:"url"`
	Attempts int64  `json:"attempts"` // connections accepted and never answered
}

// NodeStatus is one node with its role.
type NodeStatus struct {
	Node
	Leader bool `json:"leader"`
}

// ReplicaStatus is one replica: what the simulator made of it and the role
// the cluster gives it.
type ReplicaStatus struct {
	Replica
	VM     string `json:"vm"`
	Power  string `json:"power"`
	Linked bool   `json:"linked"`
	Role   string `json:"role"`
	// Handover is "address" for a replica that takes the service address
	// through its agent, "nic" otherwise.
	Handover string `json:"handover"`
	// Agent is what the lab measures of an address-handover replica's
	// agent (nil for the others).
	Agent *AgentStatus `json:"agent,omitempty"`
}

// AttackRequest asks the daemon for an attack. Kind "dos" wedges Replica,
// or every replica of Impl for Duration; "exploit" writes an AppArmor
// denial into Replica's audit log. With Wait, the answer comes once the
// cluster has switched and the service answers again (or after Timeout),
// with the measured Event.
type AttackRequest struct {
	Kind    string `json:"kind"`
	Replica string `json:"replica,omitempty"`
	// Active targets the replica the cluster has active now.
	Active   bool   `json:"active,omitempty"`
	Impl     string `json:"impl,omitempty"`
	Duration string `json:"duration,omitempty"` // Go duration; dos --impl only (default 1m)
	Wait     bool   `json:"wait,omitempty"`
	Timeout  string `json:"timeout,omitempty"` // Go duration; with Wait (default 30s)
}

// AttackResponse is the daemon's answer to an attack.
type AttackResponse struct {
	At     time.Time `json:"at"`
	Target string    `json:"target"`
	// Wedged lists the replicas a DoS stopped now.
	Wedged []string `json:"wedged,omitempty"`
	// Record is the audit line an exploit wrote.
	Record string `json:"record,omitempty"`
	Event  *Event `json:"event,omitempty"`
	// Error is set with Wait when the cluster did not recover in time.
	Error string `json:"error,omitempty"`
}

// Status reports the lab now.
func (l *Lab) Status(ctx context.Context) Status {
	t := l.Net.Topology()
	st := Status{Prefix: t.Prefix, StateDir: t.StateDir, Started: l.started, Pid: os.Getpid(),
		Profile: l.cfg.Profile, Service: l.cfg.Service, ServiceAddr: t.Service.String() + ":53",
		VCenter: l.VCenterURL(), PKI: l.PKIDir(), ClientNS: l.Net.ClientNamespace(), Attacks: l.attacks.active(),
		Handover: l.cfg.Handover}
	if st.Profile == "" {
		st.Profile = "none"
	}
	roles := map[string]string{}
	if s, err := l.service(ctx); err == nil {
		st.Generation = s.Generation
		for _, r := range s.Replicas {
			roles[r.Name] = string(r.Role)
		}
	}
	st.Leader, _ = l.Leader(ctx)
	for _, n := range l.nodes.list() {
		st.Nodes = append(st.Nodes, NodeStatus{Node: n, Leader: n.Name == st.Leader})
	}
	for _, r := range l.cfg.Replicas {
		p, linked := l.applied(r.Name)
		rs := ReplicaStatus{Replica: r, VM: l.vms[r.Name], Power: p, Linked: linked, Role: roles[r.Name], Handover: HandoverNIC}
		if l.isAddress(r.Name) {
			rs.Handover, rs.Agent = HandoverAddress, l.agentStatus(r.Name)
		}
		st.Replicas = append(st.Replicas, rs)
	}
	if o, err := l.Outage(time.Now().Add(-10*time.Second), time.Now()); err == nil {
		st.Last10s.Sent, st.Last10s.Lost = o.Sent, o.Lost
	}
	if u := l.DeadWebhookURL(); u != "" {
		st.DeadWebhook = &DeadWebhookStatus{URL: u, Attempts: l.DeadWebhookConnections()}
	}
	return st
}

// Attack carries out req.
func (l *Lab) Attack(ctx context.Context, req AttackRequest) (AttackResponse, error) {
	wait := 30 * time.Second
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d <= 0 || d > MaxAttack {
			return AttackResponse{}, badRequest("timeout %q: want a duration from 1ms to %s", req.Timeout, MaxAttack)
		}
		wait = d
	}
	var gen uint64
	if req.Wait {
		var err error
		if gen, err = l.Generation(ctx); err != nil {
			return AttackResponse{}, err
		}
	}
	if req.Active {
		if req.Replica != "" || req.Impl != "" {
			return AttackResponse{}, badRequest("an attack on the active replica names no other target")
		}
		s, err := l.service(ctx)
		if err != nil {
			return AttackResponse{}, err
		}
		a, ok := s.Active()
		if !ok {
			return AttackResponse{}, fmt.Errorf("lab: service %s has no active replica", l.cfg.Service)
		}
		req.Replica = a.Name
	}
	resp := AttackResponse{At: time.Now()}
	var err error
	switch {
	case req.Kind == "dos" && req.Impl != "" && req.Replica == "":
		d := time.Minute
		if req.Duration != "" {
			if d, err = time.ParseDuration(req.Duration); err != nil {
				return resp, badRequest("duration %q: %v", req.Duration, err)
			}
		}
		resp.Target = "impl " + req.Impl
		resp.Wedged, err = l.DoSImpl(req.Impl, d)
	case req.Kind == "dos" && req.Replica != "" && req.Impl == "":
		resp.Target = req.Replica
		if err = l.DoS(req.Replica); err == nil {
			resp.Wedged = []string{req.Replica}
		}
	case req.Kind == "exploit" && req.Replica != "" && req.Impl == "":
		resp.Target = req.Replica
		resp.Record, err = l.Exploit(req.Replica)
	case req.Kind != "dos" && req.Kind != "exploit":
		return resp, badRequest("attack kind %q: want dos or exploit", req.Kind)
	default:
		return resp, badRequest("a %s attack names one target: a replica (dos, exploit) or an implementation (dos only)", req.Kind)
	}
	if err != nil {
		return resp, err
	}
	if req.Wait {
		wctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		ev, err := l.Await(wctx, resp.At, gen, 300*time.Millisecond)
		resp.Event = &ev
		if err != nil {
			resp.Error = err.Error()
		}
	}
	return resp, nil
}

type badRequestError struct{ msg string }

func (e badRequestError) Error() string { return e.msg }

func badRequest(format string, a ...any) error {
	return badRequestError{fmt.Sprintf("lab: "+format, a...)}
}

// KillNode kills a node's agent with SIGKILL; StartNode starts it again
// from its data dir.
func (l *Lab) KillNode(node string) error {
	if !slices.Contains(l.Net.Topology().Nodes, node) {
		return badRequest("no node %q", node)
	}
	return l.recordNode(node, EvNodeKill, l.nodes.kill(node))
}

// StartNode starts a stopped node again.
func (l *Lab) StartNode(node string) error {
	if !slices.Contains(l.Net.Topology().Nodes, node) {
		return badRequest("no node %q", node)
	}
	return l.recordNode(node, EvNodeStart, l.nodes.start(node))
}

// MaxControlBody is the largest request body the control API reads; a
// larger one is answered 413.
const MaxControlBody = 1 << 16

// ControlServer is the http.Server for the control socket around h: the
// headers must arrive within 5 s and the whole request within 10 s, so a
// slow client cannot hold a connection or a handler; idle connections are
// closed after a minute. There is no write timeout: an attack with -wait
// answers when the switch has been seen.
func ControlServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		IdleTimeout: time.Minute, MaxHeaderBytes: 64 << 10}
}

// Handler is the daemon's control API. down is called (once) for
// POST /v1/down, after the answer is written.
func (l *Lab) Handler(down func()) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, l.Status(r.Context()))
	})
	mux.HandleFunc("POST /v1/attack", func(w http.ResponseWriter, r *http.Request) {
		var req AttackRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxControlBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{
					"error": fmt.Sprintf("lab: attack request: larger than %d bytes", mbe.Limit)})
				return
			}
			writeErr(w, badRequest("attack request: %v", err))
			return
		}
		// The request is read (within ControlServer's ReadTimeout); the
		// answer of an attack with -wait may take longer than that.
		_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
		resp, err := l.Attack(r.Context(), req)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})
	mux.HandleFunc("POST /v1/nodes/{node}/{action}", func(w http.ResponseWriter, r *http.Request) {
		node := r.PathValue("node")
		var err error
		switch r.PathValue("action") {
		case "kill":
			err = l.KillNode(node)
		case "start":
			err = l.StartNode(node)
		case "stop":
			err = l.StopNode(node)
		case "cont":
			err = l.ContNode(node)
		case "partition":
			err = l.PartitionNode(node)
		case "heal":
			err = l.HealNode(node)
		default:
			err = badRequest("node action %q: want kill, start, stop, cont, partition or heal", r.PathValue("action"))
		}
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"node": node, "done": r.PathValue("action")})
	})
	mux.HandleFunc("POST /v1/nodes/{node}/link", func(w http.ResponseWriter, r *http.Request) {
		var f netlab.LinkFault
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxControlBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			writeErr(w, badRequest("link fault: %v", err))
			return
		}
		node := r.PathValue("node")
		if err := l.DegradeNodeLink(node, f); err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"node": node, "link": f.String()})
	})
	mux.HandleFunc("DELETE /v1/nodes/{node}/link", func(w http.ResponseWriter, r *http.Request) {
		node := r.PathValue("node")
		if err := l.ClearNodeLink(node); err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"node": node, "link": "clear"})
	})
	mux.HandleFunc("POST /v1/engine/restart", func(w http.ResponseWriter, r *http.Request) {
		// A restart takes longer than ControlServer's read limit (up to
		// twice maxEngineRestart); the request itself has no body.
		_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
		took, err := l.RestartEngine(r.Context())
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, EngineRestart{AwayMS: float64(took.Microseconds()) / 1000})
	})
	mux.HandleFunc("GET /v1/outage", func(w http.ResponseWriter, r *http.Request) {
		from, err1 := time.Parse(time.RFC3339Nano, r.URL.Query().Get("from"))
		to, err2 := time.Parse(time.RFC3339Nano, r.URL.Query().Get("to"))
		if err := errors.Join(err1, err2); err != nil {
			writeErr(w, badRequest("from and to must be RFC 3339 times: %v", err))
			return
		}
		o, err := l.Outage(from, to)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"sent": o.Sent, "lost_queries": o.Lost, "gaps": o.Gaps,
			"downtime_ms": float64(o.Longest.Microseconds()) / 1000, "gap_list": o.Spans})
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		var since time.Time
		if v := r.URL.Query().Get("since"); v != "" {
			var err error
			if since, err = time.Parse(time.RFC3339Nano, v); err != nil {
				writeErr(w, badRequest("since must be an RFC 3339 time: %v", err))
				return
			}
		}
		writeJSON(w, http.StatusOK, l.Events(since))
	})
	mux.HandleFunc("GET /v1/vcenter/faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, l.VCFaults())
	})
	mux.HandleFunc("POST /v1/vcenter/faults", func(w http.ResponseWriter, r *http.Request) {
		var req VCFaultRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeErr(w, badRequest("vCenter fault request: %v", err))
			return
		}
		f, err := req.Rule(time.Now())
		if err != nil {
			writeErr(w, err)
			return
		}
		l.AddVCFault(f)
		writeJSON(w, http.StatusOK, f)
	})
	mux.HandleFunc("DELETE /v1/vcenter/faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"cleared": l.ClearVCFaults()})
	})
	mux.HandleFunc("GET /v1/vcenter/sessions", func(w http.ResponseWriter, r *http.Request) {
		ss, err := l.VCSessions(r.Context())
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, ss)
	})
	mux.HandleFunc("POST /v1/vcenter/terminate", func(w http.ResponseWriter, r *http.Request) {
		n, err := l.TerminateVCSessions(r.Context())
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"terminated": n})
	})
	mux.HandleFunc("POST /v1/heal", func(w http.ResponseWriter, r *http.Request) {
		if err := l.Heal(); err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"healed": true})
	})
	mux.HandleFunc("POST /v1/down", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"down": true})
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		go down()
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	var br badRequestError
	if errors.As(err, &br) {
		code = http.StatusBadRequest
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// Control is a client of a lab daemon's control socket.
type Control struct {
	sock string
	hc   *http.Client
}

// ErrNoLab says that no lab daemon answers on the socket.
var ErrNoLab = errors.New("no lab is running")

// NewControl returns a client for the daemon whose state dir is stateDir.
func NewControl(stateDir string) *Control {
	sock := ControlSocket(stateDir)
	return &Control{sock: sock, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}}
}

func (c *Control) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://lab"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) && (errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), "connection refused")) {
			return fmt.Errorf("%w (no daemon at %s)", ErrNoLab, c.sock)
		}
		return fmt.Errorf("lab daemon: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("lab daemon: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			if resp.StatusCode == http.StatusBadRequest {
				return badRequestError{e.Error}
			}
			return errors.New(e.Error)
		}
		return fmt.Errorf("lab daemon: %s", resp.Status)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// IsBadRequest reports whether err is the daemon refusing bad input.
func IsBadRequest(err error) bool {
	var br badRequestError
	return errors.As(err, &br)
}

// Status asks the daemon for the lab's status.
func (c *Control) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Attack asks the daemon for an attack.
func (c *Control) Attack(ctx context.Context, req AttackRequest) (AttackResponse, error) {
	var resp AttackResponse
	err := c.do(ctx, http.MethodPost, "/v1/attack", req, &resp)
	return resp, err
}

// Node kills or starts a node.
func (c *Control) Node(ctx context.Context, node, action string) error {
	return c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(node)+"/"+url.PathEscape(action), nil, nil)
}

// DegradeLink puts a link fault (loss, delay or both) on a node's link,
// replacing the one it had; ClearLink ends it.
func (c *Control) DegradeLink(ctx context.Context, node string, f netlab.LinkFault) error {
	return c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(node)+"/link", f, nil)
}

// ClearLink ends a node's link fault (none: nothing changes).
func (c *Control) ClearLink(ctx context.Context, node string) error {
	return c.do(ctx, http.MethodDelete, "/v1/nodes/"+url.PathEscape(node)+"/link", nil, nil)
}

// EngineRestart is what a Docker engine restart reports.
type EngineRestart struct {
	AwayMS float64 `json:"away_ms"` // from SIGTERM to the restarted engine's first answer
}

// RestartEngine restarts the Docker engine under the lab's containers.
func (c *Control) RestartEngine(ctx context.Context) (EngineRestart, error) {
	var out EngineRestart
	err := c.do(ctx, http.MethodPost, "/v1/engine/restart", nil, &out)
	return out, err
}

// VCFault puts a vCenter fault rule in force.
func (c *Control) VCFault(ctx context.Context, req VCFaultRequest) (VCFault, error) {
	var f VCFault
	err := c.do(ctx, http.MethodPost, "/v1/vcenter/faults", req, &f)
	return f, err
}

// ClearVCFaults removes every vCenter fault rule.
func (c *Control) ClearVCFaults(ctx context.Context) error {
	return c.do(ctx, http.MethodDelete, "/v1/vcenter/faults", nil, nil)
}

// VCSessions lists the nodes' live vCenter sessions.
func (c *Control) VCSessions(ctx context.Context) ([]VCSession, error) {
	var ss []VCSession
	err := c.do(ctx, http.MethodGet, "/v1/vcenter/sessions", nil, &ss)
	return ss, err
}

// TerminateVCSessions terminates every node's vCenter session.
func (c *Control) TerminateVCSessions(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/vcenter/terminate", nil, nil)
}

// Heal undoes every fault (vCenter rules, partitions, stopped and killed
// nodes).
func (c *Control) Heal(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/heal", nil, nil)
}

// Down asks the daemon to tear the lab down and exit.
func (c *Control) Down(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/down", nil, nil)
}
