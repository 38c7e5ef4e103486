package apiserver

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/pki"
	"github.com/ars-project/ars/transport"
)

// Server is the HTTP API of one node. Build it with NewServer and serve
// Handler() (NewHTTPServer gives an http.Server with sane timeouts).
type Server struct {
	cfg     ServerConfig
	b       Backend
	log     *slog.Logger
	handler http.Handler
	proxy   *httputil.ReverseProxy
	fwd     *http.Transport
	metrics *serverMetrics
	mh      http.Handler
	routes  []*route
	self    atomic.Pointer[string] // cached node name
	alerts  *alertLimiter
	streams *streamLimiter
}

// Principal is the authenticated caller of a request.
type Principal struct {
	Name string // token name, node name, or "dev"
	Role pki.Role
	Via  string // "token", "node-cert" or "dev"
}

type principalKey struct{}
type reqInfoKey struct{}
type forwardKey struct{}

// PrincipalFromContext returns the caller of the request whose context this
// is (available inside route handlers).
func PrincipalFromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// reqInfo is filled in along the handler chain and read by the outer
// logging/metrics middleware.
type reqInfo struct {
	route       string
	principal   string
	forwardedTo string
	err         string
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// route is one API endpoint and its access rules.
type route struct {
	method, path string
	// allow lists the roles that may call the route. Listing RoleReader
	// implies RoleOperator (operator ⊇ reader); RoleDetector and RoleNode
	// must be listed explicitly.
	allow []pki.Role
	// leader routes run on the leader only; followers forward them.
	leader bool
	// consistent routes become leader routes when the query has
	// ?consistent (the handler then runs a Barrier before reading).
	consistent bool
	// snapshot routes get the snapshot body limit and timeout.
	snapshot bool
	// basicAuth: a 401 invites a browser to prompt (the status page).
	basicAuth bool
	// stream routes answer for as long as the handler streams (bounded by
	// MaxStreamDuration); the handler sets its own write deadlines.
	stream bool
	// maxBody, if set, replaces ServerConfig.MaxBodyBytes for the route.
	maxBody int64
	h       handlerFunc
}

func (rt *route) pattern() string { return rt.method + " " + rt.path }

func (rt *route) allows(role pki.Role) bool {
	return slices.Contains(rt.allow, role) ||
		(role == pki.RoleOperator && slices.Contains(rt.allow, pki.RoleReader))
}

func (rt *route) leaderOnly(r *http.Request) bool {
	return rt.leader || (rt.consistent && r.URL.Query().Has("consistent"))
}

var (
	readers   = []pki.Role{pki.RoleReader}
	operators = []pki.Role{pki.RoleOperator}
	nodes     = []pki.Role{pki.RoleNode}
	// detectors may post alerts; so may operators (listed explicitly: the
	// operator ⊇ reader rule does not cover detector routes).
	detectors = []pki.Role{pki.RoleDetector, pki.RoleOperator}
)

// NewServer builds the API server.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Backend == nil {
		return nil, errors.New("transport: ServerConfig.Backend is required")
	}
	if cfg.Tokens == nil && !cfg.Dev {
		return nil, errors.New("transport: ServerConfig.Tokens is required unless Dev is set")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LeaderWait <= 0 {
		cfg.LeaderWait = DefaultLeaderWait
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.SnapshotTimeout <= 0 {
		cfg.SnapshotTimeout = DefaultSnapshotTimeout
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxSnapshotBytes <= 0 {
		cfg.MaxSnapshotBytes = DefaultMaxSnapshotBytes
	}
	if cfg.AlertRate == 0 {
		cfg.AlertRate = DefaultAlertRate
	}
	if cfg.AlertBurst <= 0 {
		cfg.AlertBurst = DefaultAlertBurst
	}
	s := &Server{cfg: cfg, b: cfg.Backend, log: cfg.Logger.With("component", "leaderAPI"),
		alerts: newAlertLimiter(cfg.AlertRate, cfg.AlertBurst), streams: newStreamLimiter()}

	if cfg.Dev {
		s.log.Warn("API AUTHENTICATION IS DISABLED (dev mode): every request is treated as an operator; never run a production node like this")
	}
	if cfg.NodeClientTLS == nil && !cfg.Dev {
		s.log.Warn("no node client TLS configured: requests forwarded to the leader travel over plain HTTP")
	}

	var err error
	if s.metrics, err = newServerMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	s.mh = cfg.Metrics
	if s.mh == nil {
		if g, ok := cfg.Registerer.(prometheus.Gatherer); ok {
			s.mh = promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)})
		}
	}

	s.fwd = &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	if cfg.NodeClientTLS != nil {
		// The leader gets the caller's token: it must prove it is a node.
		s.fwd.TLSClientConfig = cfg.NodeClientTLS.Clone()
		s.fwd.TLSClientConfig.ServerName = "" // checked against the leader's address
		transport.RequireNodePeer(s.fwd.TLSClientConfig, "leader API")
	}
	s.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := pr.In.Context().Value(forwardKey{}).(forwardTarget)
			pr.SetURL(t.url)
			pr.SetXForwarded()
			pr.Out.Header.Set(api.HeaderForwarded, t.self)
		},
		ModifyResponse: func(resp *http.Response) error {
			t := resp.Request.Context().Value(forwardKey{}).(forwardTarget)
			resp.Header.Set(api.HeaderLeader, t.leader)
			// outer() already set these on our response; don't duplicate.
			for _, h := range securityHeaders {
				resp.Header.Del(h[0])
			}
			return nil
		},
		Transport:     s.fwd,
		FlushInterval: -1,
		ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ErrorHandler:  s.proxyError,
	}

	s.routes = s.routeTable()
	mux := http.NewServeMux()
	methods := map[string][]string{}
	for _, rt := range s.routes {
		mux.Handle(rt.pattern(), s.wrap(rt))
		methods[rt.path] = append(methods[rt.path], rt.method)
	}
	// Same path, wrong method: 405 with Allow, as a JSON error.
	for path, ms := range methods {
		allow := strings.Join(ms, ", ")
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			infoOf(r).route = "method_not_allowed"
			w.Header().Set("Allow", allow)
			writeAPIError(w, &api.APIError{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
				Message: fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow)})
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		infoOf(r).route = "not_found"
		writeAPIError(w, &api.APIError{Status: http.StatusNotFound, Code: api.CodeNotFound,
			Message: fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)})
	})
	s.handler = s.outer(mux)
	return s, nil
}

// routeTable is the API. Every route names the roles allowed to call it.
func (s *Server) routeTable() []*route {
	return []*route{
		{method: "GET", path: "/v1/status", allow: readers, h: s.handleStatus},
		{method: "GET", path: "/v1/members", allow: readers, h: s.handleMembers},
		{method: "GET", path: "/v1/raft/peers", allow: readers, h: s.handlePeers},
		{method: "POST", path: "/v1/join", allow: operators, h: s.handleJoin},
		{method: "POST", path: "/v1/leave", allow: operators, h: s.handleLeave},
		{method: "POST", path: "/v1/raft/transfer-leader", allow: operators, leader: true, h: s.handleTransferLeader},
		{method: "POST", path: "/v1/raft/remove-peer", allow: operators, leader: true, h: s.handleRemovePeer},
		{method: "POST", path: "/v1/services", allow: operators, leader: true, h: s.handleApplyService},
		{method: "GET", path: "/v1/services", allow: readers, consistent: true, h: s.handleServices},
		{method: "GET", path: "/v1/services/{name}", allow: readers, consistent: true, h: s.handleService},
		{method: "POST", path: "/v1/services/{name}/switch", allow: operators, leader: true, maxBody: api.MaxOperateBodyBytes, h: s.handleSwitch},
		{method: "POST", path: "/v1/services/{name}/replicas/{replica}/{action}", allow: operators, leader: true, maxBody: api.MaxOperateBodyBytes, h: s.handleReplicaAction},
		{method: "GET", path: "/v1/history", allow: readers, consistent: true, h: s.handleHistory},
		{method: "GET", path: "/v1/snapshot", allow: operators, leader: true, snapshot: true, h: s.handleSnapshotSave},
		{method: "POST", path: "/v1/snapshot", allow: operators, leader: true, snapshot: true, h: s.handleSnapshotRestore},
		{method: "POST", path: "/v1/alerts", allow: detectors, leader: true, maxBody: api.MaxAlertBodyBytes, h: s.handlePostAlert},
		{method: "POST", path: "/v1/alerts/webhook", allow: detectors, leader: true, maxBody: api.MaxAlertEvidenceBytes, h: s.handleAlertWebhook},
		{method: "GET", path: "/v1/alerts", allow: readers, consistent: true, h: s.handleAlerts},
		{method: "GET", path: "/v1/events", allow: readers, stream: true, h: s.handleEvents},
		{method: "POST", path: "/v1/internal/apply", allow: nodes, leader: true, h: s.handleInternalApply},
		{method: "GET", path: "/metrics", allow: readers, h: s.handleMetrics},
		{method: "GET", path: "/{$}", allow: readers, basicAuth: true, h: s.handleStatusPage},
		{method: "GET", path: "/ui/status.js", allow: readers, basicAuth: true, h: s.handleStatusScript},
	}
}

// Handler is the server's root handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Close releases idle connections used for forwarding.
func (s *Server) Close() { s.fwd.CloseIdleConnections() }

func infoOf(r *http.Request) *reqInfo {
	if ri, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
		return ri
	}
	return &reqInfo{}
}

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var securityHeaders = [][2]string{
	{"X-Content-Type-Options", "nosniff"},
	{"Cache-Control", "no-store"},
	{"X-Frame-Options", "DENY"},
}

// outer adds security headers, panic recovery, request metrics and the
// access log around the mux.
func (s *Server) outer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &reqInfo{route: "unmatched"}
		sw := &statusWriter{ResponseWriter: w}
		for _, kv := range securityHeaders {
			sw.Header().Set(kv[0], kv[1])
		}
		r = r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, ri))
		defer func() {
			rec := recover()
			if rec != nil && rec != http.ErrAbortHandler {
				s.log.Error("panic in API handler", "route", ri.route, "panic", fmt.Sprint(rec), "stack", string(debug.Stack()))
				if sw.status == 0 {
					writeAPIError(sw, &api.APIError{Status: http.StatusInternalServerError, Code: api.CodeInternal, Message: "internal error"})
				}
				rec = nil
			}
			status := sw.status
			if rec != nil {
				status = 0 // aborted mid-response
			}
			s.observe(r, ri, status, time.Since(start))
			if rec != nil {
				panic(rec)
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

func (s *Server) observe(r *http.Request, ri *reqInfo, status int, d time.Duration) {
	code := "aborted"
	if status != 0 {
		code = fmt.Sprint(status)
	}
	s.metrics.observe(ri.route, code, ri.forwardedTo != "", d)
	attrs := []any{"method", r.Method, "path", r.URL.Path, "route", ri.route, "status", code,
		"duration", d.Round(time.Microsecond), "remote", r.RemoteAddr}
	if ri.principal != "" {
		attrs = append(attrs, "caller", ri.principal)
	}
	if ri.forwardedTo != "" {
		attrs = append(attrs, "forwarded_to", ri.forwardedTo)
	}
	if by := r.Header.Get(api.HeaderForwarded); by != "" {
		attrs = append(attrs, "forwarded_by", by)
	}
	switch {
	case status == 0 || status >= 500:
		if ri.err != "" {
			attrs = append(attrs, "error", ri.err)
		}
		s.log.Warn("leaderAPI request failed", attrs...)
	default:
		s.log.Debug("leaderAPI request", attrs...)
	}
}

// wrap applies authentication, authorization, body limits, timeouts and
// leader forwarding to a route handler.
func (s *Server) wrap(rt *route) http.Handler {
	pattern := rt.pattern()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ri := infoOf(r)
		ri.route = pattern
		fail := func(err error) {
			ae := ToAPIError(err)
			if ae.Status >= 500 {
				ri.err = ae.Message
			}
			writeAPIError(w, ae)
		}

		p, err := s.authenticate(r)
		if err != nil {
			s.metrics.authFailure("unauthenticated")
			s.log.Warn("leaderAPI: rejected unauthenticated request", "route", pattern, "remote", r.RemoteAddr, "reason", err.Error())
			w.Header().Set("WWW-Authenticate", `Bearer realm="ars"`)
			if rt.basicAuth {
				w.Header().Add("WWW-Authenticate", `Basic realm="ars"`)
			}
			fail(err)
			return
		}
		ri.principal = p.Name
		if !s.cfg.Dev && !rt.allows(p.Role) {
			s.metrics.authFailure("forbidden")
			s.log.Warn("leaderAPI: forbidden", "route", pattern, "caller", p.Name, "role", string(p.Role), "remote", r.RemoteAddr)
			fail(&requestError{status: http.StatusForbidden, code: api.CodeForbidden,
				msg: fmt.Sprintf("%s %q (role %s) may not call %s (allowed: %s)", callerKind(p), p.Name, p.Role, pattern, roleList(rt))})
			return
		}

		limit, timeout := s.cfg.MaxBodyBytes, s.cfg.RequestTimeout
		if rt.maxBody > 0 {
			limit = rt.maxBody
		}
		if rt.snapshot {
			limit, timeout = s.cfg.MaxSnapshotBytes, s.cfg.SnapshotTimeout
			// Let the transfer outlive the http.Server's read/write timeouts.
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Now().Add(timeout))
			_ = rc.SetWriteDeadline(time.Now().Add(timeout + 5*time.Second))
		}
		if r.ContentLength > limit {
			// Declared too large: refuse before reading (or forwarding) it.
			fail(&http.MaxBytesError{Limit: limit})
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		if rt.stream {
			timeout = MaxStreamDuration + 5*time.Second
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		ctx = context.WithValue(ctx, principalKey{}, p)
		r = r.WithContext(ctx)

		if rt.leaderOnly(r) && !s.b.IsLeader() {
			if handled := s.forward(w, r, ri, fail); handled {
				return
			}
		}
		if err := rt.h(w, r); err != nil {
			fail(err)
		}
	})
}

func callerKind(p Principal) string {
	switch p.Via {
	case "node-cert":
		return "node"
	default:
		return "token"
	}
}

func roleList(rt *route) string {
	var out []string
	for _, r := range rt.allow {
		out = append(out, string(r))
		if r == pki.RoleReader && !slices.Contains(rt.allow, pki.RoleOperator) {
			out = append(out, string(pki.RoleOperator))
		}
	}
	return strings.Join(out, ", ")
}

// authenticate identifies the caller: a token (Authorization: Bearer or
// X-Ars-Token; Basic with the token as password on GET, for browsers)
// always wins; without one, a verified node certificate makes the caller a
// node. In dev mode everyone is an operator.
func (s *Server) authenticate(r *http.Request) (Principal, error) {
	if s.cfg.Dev {
		if name, ok := transport.NodeName(r.TLS); ok {
			return Principal{Name: name, Role: pki.RoleNode, Via: "node-cert"}, nil
		}
		return Principal{Name: "dev", Role: pki.RoleOperator, Via: "dev"}, nil
	}
	secret, present, err := tokenFromRequest(r)
	if err != nil {
		return Principal{}, err
	}
	if present {
		name, role, ok := s.cfg.Tokens.Lookup(secret)
		if !ok {
			return Principal{}, &requestError{status: http.StatusUnauthorized, code: api.CodeUnauthorized, msg: "invalid API token"}
		}
		return Principal{Name: name, Role: role, Via: "token"}, nil
	}
	if name, ok := transport.NodeName(r.TLS); ok {
		return Principal{Name: name, Role: pki.RoleNode, Via: "node-cert"}, nil
	}
	return Principal{}, &requestError{status: http.StatusUnauthorized, code: api.CodeUnauthorized,
		msg: "missing API token: send \"Authorization: Bearer <token>\" or \"" + api.HeaderToken + ": <token>\""}
}

func unauthorized(msg string) error {
	return &requestError{status: http.StatusUnauthorized, code: api.CodeUnauthorized, msg: msg}
}

// tokenFromRequest extracts the token; error messages never echo it.
func tokenFromRequest(r *http.Request) (secret string, present bool, err error) {
	auths, xs := r.Header.Values("Authorization"), r.Header.Values(api.HeaderToken)
	if len(auths) > 1 || len(xs) > 1 {
		return "", false, unauthorized("more than one token header")
	}
	var fromAuth string
	if len(auths) == 1 {
		scheme, rest, _ := strings.Cut(strings.TrimSpace(auths[0]), " ")
		switch strings.ToLower(scheme) {
		case "bearer":
			fromAuth = strings.TrimSpace(rest)
		case "basic":
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				return "", false, unauthorized("basic authentication is only accepted for GET; send a bearer token")
			}
			_, pw, ok := r.BasicAuth()
			if !ok {
				return "", false, unauthorized("malformed basic authorization header")
			}
			fromAuth = pw
		default:
			return "", false, unauthorized("unsupported Authorization scheme; use \"Bearer <token>\"")
		}
		if fromAuth == "" {
			return "", false, unauthorized("empty token in Authorization header")
		}
	}
	var fromX string
	if len(xs) == 1 {
		if fromX = strings.TrimSpace(xs[0]); fromX == "" {
			return "", false, unauthorized("empty " + api.HeaderToken + " header")
		}
	}
	switch {
	case fromAuth != "" && fromX != "":
		if subtle.ConstantTimeCompare([]byte(fromAuth), []byte(fromX)) != 1 {
			return "", false, unauthorized("Authorization and " + api.HeaderToken + " carry different tokens")
		}
		return fromAuth, true, nil
	case fromAuth != "":
		return fromAuth, true, nil
	case fromX != "":
		return fromX, true, nil
	}
	return "", false, nil
}

// writeAPIError writes {"error":{"code","message"}} with the error's status.
func writeAPIError(w http.ResponseWriter, e *api.APIError) {
	h := w.Header()
	h.Del("Content-Disposition")
	h.Del("Trailer")
	h.Set("Content-Type", "application/json")
	status := e.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	body, _ := json.Marshal(struct {
		Error *api.APIError `json:"error"`
	}{e})
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// writeJSON writes v as a 200 JSON response.
func writeJSON(w http.ResponseWriter, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(body, '\n'))
	return nil
}

// ---- forwarding ----

type forwardTarget struct {
	url    *url.URL
	self   string
	leader string
}

func (s *Server) nodeName() string {
	if s.cfg.NodeName != "" {
		return s.cfg.NodeName
	}
	if p := s.self.Load(); p != nil {
		return *p
	}
	name := s.b.Status().Node
	if name != "" {
		s.self.Store(&name)
	}
	return name
}

// forward sends a leader-only request to the leader. It returns false if
// this node became the leader meanwhile (the caller then handles the
// request itself).
func (s *Server) forward(w http.ResponseWriter, r *http.Request, ri *reqInfo, fail func(error)) bool {
	self := s.nodeName()
	if by := r.Header.Get(api.HeaderForwarded); by != "" {
		fail(fmt.Errorf("%w: request forwarded by %s reached %s, which is not the leader (not forwarding it again)",
			api.ErrNotLeader, by, self))
		return true
	}
	name, leaderAPI, err := s.waitLeader(r.Context(), self)
	if err != nil {
		fail(err)
		return true
	}
	if leaderAPI == "" { // became leader while waiting
		return false
	}
	target, err := s.leaderURL(leaderAPI)
	if err != nil {
		fail(fmt.Errorf("%w: leader %s advertises a bad API address %q: %v", api.ErrNoLeader, name, leaderAPI, err))
		return true
	}
	ri.forwardedTo = name
	ctx := context.WithValue(r.Context(), forwardKey{}, forwardTarget{url: target, self: self, leader: name})
	s.proxy.ServeHTTP(w, r.WithContext(ctx))
	return true
}

// waitLeader polls the backend until a leader other than this node is
// known (returns its name and API address), this node becomes leader
// (returns empty strings), LeaderWait passes (ErrNoLeader) or ctx ends.
func (s *Server) waitLeader(ctx context.Context, self string) (name, leaderAPI string, err error) {
	deadline := time.NewTimer(s.cfg.LeaderWait)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.b.IsLeader() {
			return "", "", nil
		}
		if n, a, ok := s.b.LeaderAPI(); ok && a != "" && n != self {
			return n, a, nil
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return "", "", fmt.Errorf("%w: no leader elected after waiting %s", api.ErrNoLeader, s.cfg.LeaderWait)
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return "", "", fmt.Errorf("%w: request timed out waiting for a leader", api.ErrNoLeader)
			}
			return "", "", ctx.Err()
		}
	}
}

func (s *Server) leaderURL(leaderAPI string) (*url.URL, error) {
	if !strings.Contains(leaderAPI, "://") {
		scheme := "https"
		if s.cfg.NodeClientTLS == nil {
			scheme = "http"
		}
		leaderAPI = scheme + "://" + leaderAPI
	}
	u, err := url.Parse(leaderAPI)
	if err != nil {
		return nil, err
	}
	if u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, errors.New("want host:port or an http(s) URL")
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimSuffix(u.Path, "/")}, nil
}

func (s *Server) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	t, _ := r.Context().Value(forwardKey{}).(forwardTarget)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeAPIError(w, ToAPIError(err))
	case r.Context().Err() != nil && errors.Is(err, context.DeadlineExceeded):
		writeAPIError(w, ToAPIError(fmt.Errorf("%w: forwarding to leader %s", api.ErrTimeout, t.leader)))
	case errors.Is(err, context.Canceled):
		// The caller went away; nobody reads this.
		writeAPIError(w, ToAPIError(fmt.Errorf("%w: request cancelled", api.ErrUnavailable)))
	default:
		msg := fmt.Sprintf("leader %s at %s is unreachable: %v", t.leader, t.url, err)
		infoOf(r).err = msg
		writeAPIError(w, &api.APIError{Status: http.StatusServiceUnavailable, Code: api.CodeNoLeader, Message: msg})
	}
}
