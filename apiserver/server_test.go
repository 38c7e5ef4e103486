package apiserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/pki"
	"github.com/ars-project/ars/test/testpki"
)

type routeCase struct {
	method, path string
	body         []byte
	class        pki.Role // the least role that may call it: reader, operator, node or classAlert
}

// classAlert marks routes that detectors and operators may call (and
// nobody else).
const classAlert pki.Role = "detector+operator"

// created reports whether a successful call of rc answers 201 (a new
// alert) rather than 200; repeated calls of the same alert answer 200.
func (rc routeCase) created(status int) bool {
	return rc.class == classAlert && (status == http.StatusCreated || status == http.StatusOK)
}

func allRouteCases(t *testing.T) []routeCase {
	return []routeCase{
		{"GET", "/v1/status", nil, pki.RoleReader},
		{"GET", "/v1/members", nil, pki.RoleReader},
		{"GET", "/v1/raft/peers", nil, pki.RoleReader},
		{"POST", "/v1/join", []byte(`{"addresses":["127.0.0.1:7502"]}`), pki.RoleOperator},
		{"POST", "/v1/leave", nil, pki.RoleOperator},
		{"POST", "/v1/raft/transfer-leader", []byte(`{"to":"n2"}`), pki.RoleOperator},
		{"POST", "/v1/raft/remove-peer", []byte(`{"id":"n3"}`), pki.RoleOperator},
		{"POST", "/v1/services", validSpec("dns"), pki.RoleOperator},
		{"GET", "/v1/services", nil, pki.RoleReader},
		{"GET", "/v1/services/{name}", nil, pki.RoleReader},
		{"POST", "/v1/services/{name}/switch", []byte(`{"reason":"matrix"}`), pki.RoleOperator},
		{"POST", "/v1/services/{name}/replicas/{replica}/{action}", []byte(`{"reason":"matrix"}`), pki.RoleOperator},
		{"GET", "/v1/history", nil, pki.RoleReader},
		{"GET", "/v1/snapshot", nil, pki.RoleOperator},
		{"POST", "/v1/snapshot", []byte("snapshot-data"), pki.RoleOperator},
		{"POST", "/v1/alerts", []byte(`{"id":"matrix-1","service":"dns","replica":"win-bind","kind":"exploit"}`), classAlert},
		{"POST", "/v1/alerts/webhook", []byte("AppArmor said no"), classAlert},
		{"GET", "/v1/alerts", nil, pki.RoleReader},
		{"GET", "/v1/events", nil, pki.RoleReader},
		{"POST", "/v1/internal/apply", encodedApply(t, "dns"), pki.RoleNode},
		{"GET", "/metrics", nil, pki.RoleReader},
		{"GET", "/{$}", nil, pki.RoleReader},
		{"GET", "/ui/status.js", nil, pki.RoleReader},
	}
}

func concretePath(p string) string {
	if p == "/v1/alerts/webhook" {
		return p + "?service=dns&replica=win-bind&kind=exploit&source=edr"
	}
	p = strings.ReplaceAll(p, "{name}", "dns")
	p = strings.ReplaceAll(p, "{replica}", "win-bind")
	p = strings.ReplaceAll(p, "{action}", "quarantine")
	return strings.ReplaceAll(p, "{$}", "")
}

// TestRouteTableCovered fails when a route is added without a row in the
// role matrix below.
func TestRouteTableCovered(t *testing.T) {
	s, err := NewServer(ServerConfig{Backend: newFakeBackend("n1", true), Tokens: testTokens(t)})
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, rt := range s.routes {
		want = append(want, rt.pattern())
		if len(rt.allow) == 0 {
			t.Errorf("route %s allows no role", rt.pattern())
		}
	}
	for _, rc := range allRouteCases(t) {
		got = append(got, rc.method+" "+rc.path)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		t.Fatalf("route matrix out of date:\n routes: %v\n tested: %v", want, got)
	}
}

func TestRouteRoleMatrix(t *testing.T) {
	b := newFakeBackend("n1", true)
	if _, err := b.Apply(context.Background(), encodedApply(t, "dns")); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, "n1", b, func(c *ServerConfig) { c.Registerer = prometheus.NewRegistry() })

	nodeTLS := mustClientTLS(t, nodeFiles(pkiDir, "n2"))
	nonNodeTLS := caOnly(t)
	nonNodeTLS.Certificates = []tls.Certificate{issueNonNodeCert(t, "operator-alice")}
	type caller struct {
		name string
		tls  *tls.Config
		hdr  http.Header
		role pki.Role // "" = unauthenticated
	}
	callers := []caller{
		{"no token", caOnly(t), nil, ""},
		{"bad token", caOnly(t), bearer("not-a-valid-token-at-all"), ""},
		{"reader", caOnly(t), bearer(secretReader), pki.RoleReader},
		{"reader via X-Ars-Token", caOnly(t), http.Header{api.HeaderToken: {secretReader}}, pki.RoleReader},
		{"operator", caOnly(t), bearer(secretOperator), pki.RoleOperator},
		{"detector", caOnly(t), bearer(secretDetector), pki.RoleDetector},
		{"node cert", nodeTLS, nil, pki.RoleNode},
		{"node cert with reader token", nodeTLS, bearer(secretReader), pki.RoleReader},
		{"node cert with detector token", nodeTLS, bearer(secretDetector), pki.RoleDetector},
		{"cluster-CA cert without node marker", nonNodeTLS, nil, ""},
	}
	allowed := func(role, class pki.Role) bool {
		switch class {
		case pki.RoleReader:
			return role == pki.RoleReader || role == pki.RoleOperator
		case pki.RoleOperator:
			return role == pki.RoleOperator
		case pki.RoleNode:
			return role == pki.RoleNode
		case classAlert:
			return role == pki.RoleDetector || role == pki.RoleOperator
		}
		return false
	}
	for _, rc := range allRouteCases(t) {
		for _, c := range callers {
			t.Run(rc.method+" "+rc.path+"/"+c.name, func(t *testing.T) {
				status, apiErr, body := rawRequest(t, ts, c.tls, rc.method, concretePath(rc.path), c.hdr, rc.body)
				switch {
				case c.role == "":
					if status != http.StatusUnauthorized || apiErr.Code != api.CodeUnauthorized {
						t.Fatalf("status %d %+v, want 401 unauthorized", status, apiErr)
					}
				case allowed(c.role, rc.class):
					if status != http.StatusOK && !rc.created(status) {
						t.Fatalf("status %d (%s), want 200", status, body)
					}
				default:
					if status != http.StatusForbidden || apiErr.Code != api.CodeForbidden {
						t.Fatalf("status %d %+v, want 403 forbidden", status, apiErr)
					}
				}
			})
		}
	}
}

// TestReplicaCertRefusedOnEveryRoute: a replica certificate is no API
// caller at all. Every route refuses it in the TLS handshake, with or
// without a valid token: the real one (server authentication only) and
// one with the replica marker that is also valid for client
// authentication, with or without the node marker beside it. Nothing
// reaches the backend.
func TestReplicaCertRefusedOnEveryRoute(t *testing.T) {
	b := newFakeBackend("n1", true)
	if _, err := b.Apply(context.Background(), encodedApply(t, "dns")); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, "n1", b, func(c *ServerConfig) { c.Registerer = prometheus.NewRegistry() })
	apply0, join0, leave0, transfer0, remove0 := b.counts()

	with := func(cert tls.Certificate) *tls.Config {
		c := caOnly(t)
		c.Certificates = []tls.Certificate{cert}
		return c
	}
	certs := map[string]*tls.Config{
		"replica certificate":             mustClientTLS(t, testpki.ReplicaFiles(pkiDir, "r1")),
		"replica marker with client auth": with(testpki.ReplicaMarkedCert(t, pkiDir, "r1", false)),
		"node and replica markers":        with(testpki.ReplicaMarkedCert(t, pkiDir, "n2", true)),
	}
	tokens := map[string]http.Header{"no token": nil, "operator token": bearer(secretOperator), "detector token": bearer(secretDetector)}
	for _, rc := range allRouteCases(t) {
		for cn, cfg := range certs {
			for tn, hdr := range tokens {
				t.Run(rc.method+" "+rc.path+"/"+cn+"/"+tn, func(t *testing.T) {
					hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
					defer hc.CloseIdleConnections()
					req, err := http.NewRequest(rc.method, ts.URL+concretePath(rc.path), bytes.NewReader(rc.body))
					if err != nil {
						t.Fatal(err)
					}
					for k, vs := range hdr {
						req.Header[k] = vs
					}
					resp, err := hc.Do(req)
					if err == nil {
						resp.Body.Close()
						t.Fatalf("status %d, want a refused handshake", resp.StatusCode)
					}
					if !strings.Contains(err.Error(), "remote error: tls:") {
						t.Fatalf("error %v, want the server's TLS alert", err)
					}
				})
			}
		}
	}
	if apply, join, leave, transfer, remove := b.counts(); apply != apply0 || join != join0 || leave != leave0 || transfer != transfer0 || remove != remove0 {
		t.Fatalf("requests reached the backend: apply %d join %d leave %d transfer %d remove %d",
			apply-apply0, join-join0, leave-leave0, transfer-transfer0, remove-remove0)
	}
	// The listener still serves a node.
	if status, _, body := rawRequest(t, ts, mustClientTLS(t, nodeFiles(pkiDir, "n2")), "GET", "/v1/status", bearer(secretReader), nil); status != http.StatusOK {
		t.Fatalf("a node after the refusals: %d %s", status, body)
	}
}

func TestUnauthorizedAdvertisesScheme(t *testing.T) {
	ts := startServer(t, "n1", newFakeBackend("n1", true), nil)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: caOnly(t)}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !slices.Contains(resp.Header.Values("WWW-Authenticate"), `Basic realm="ars"`) {
		t.Fatalf("GET / without token: %d %v", resp.StatusCode, resp.Header.Values("WWW-Authenticate"))
	}
}

func TestTokenHeaders(t *testing.T) {
	ts := startServer(t, "n1", newFakeBackend("n1", true), nil)
	basic := func(pw string) string {
		r, _ := http.NewRequest("GET", "/", nil)
		r.SetBasicAuth("anyone", pw)
		return r.Header.Get("Authorization")
	}
	cases := []struct {
		name   string
		method string
		path   string
		hdr    http.Header
		want   int
	}{
		{"bearer", "GET", "/v1/status", bearer(secretReader), 200},
		{"bearer lower-case scheme", "GET", "/v1/status", http.Header{"Authorization": {"bearer " + secretReader}}, 200},
		{"x-ars-token", "GET", "/v1/status", http.Header{api.HeaderToken: {secretReader}}, 200},
		{"both equal", "GET", "/v1/status", http.Header{"Authorization": {"Bearer " + secretReader}, api.HeaderToken: {secretReader}}, 200},
		{"both differ", "GET", "/v1/status", http.Header{"Authorization": {"Bearer " + secretReader}, api.HeaderToken: {secretOperator}}, 401},
		{"two authorization headers", "GET", "/v1/status", http.Header{"Authorization": {"Bearer " + secretReader, "Bearer " + secretReader}}, 401},
		{"raw token without scheme", "GET", "/v1/status", http.Header{"Authorization": {secretReader}}, 401},
		{"empty bearer", "GET", "/v1/status", http.Header{"Authorization": {"Bearer "}}, 401},
		{"basic on GET (browser)", "GET", "/", http.Header{"Authorization": {basic(secretReader)}}, 200},
		{"basic on POST refused", "POST", "/v1/leave", http.Header{"Authorization": {basic(secretOperator)}}, 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, apiErr, _ := rawRequest(t, ts, caOnly(t), c.method, c.path, c.hdr, nil)
			if status != c.want {
				t.Fatalf("status %d (%+v), want %d", status, apiErr, c.want)
			}
		})
	}
}

func TestDevModeAllowsEverything(t *testing.T) {
	b := newFakeBackend("n1", true)
	ts := startServer(t, "n1", b, func(c *ServerConfig) { c.Dev = true; c.Tokens = nil; c.Registerer = prometheus.NewRegistry() })
	if !strings.Contains(ts.logs.String(), "AUTHENTICATION IS DISABLED") {
		t.Fatalf("no dev-mode warning logged: %s", ts.logs.String())
	}
	for _, rc := range allRouteCases(t) {
		status, apiErr, _ := rawRequest(t, ts, caOnly(t), rc.method, concretePath(rc.path), nil, rc.body)
		if status != 200 && !rc.created(status) {
			t.Errorf("dev %s %s: %d %+v", rc.method, rc.path, status, apiErr)
		}
	}
	if _, err := NewServer(ServerConfig{Backend: b}); err == nil {
		t.Fatal("NewServer without tokens outside dev mode succeeded")
	}
}

func TestNotFoundAndMethodNotAllowed(t *testing.T) {
	ts := startServer(t, "n1", newFakeBackend("n1", true), nil)
	status, apiErr, _ := rawRequest(t, ts, caOnly(t), "GET", "/v1/nope", bearer(secretOperator), nil)
	if status != 404 || apiErr.Code != api.CodeNotFound {
		t.Fatalf("unknown path: %d %+v", status, apiErr)
	}
	status, apiErr, _ = rawRequest(t, ts, caOnly(t), "DELETE", "/v1/status", bearer(secretOperator), nil)
	if status != 405 || apiErr.Code != "method_not_allowed" {
		t.Fatalf("wrong method: %d %+v", status, apiErr)
	}
	status, apiErr, _ = rawRequest(t, ts, caOnly(t), "GET", "/v1/services/nosuch", bearer(secretReader), nil)
	if status != 404 || apiErr.Code != "unknown_service" {
		t.Fatalf("unknown service: %d %+v", status, apiErr)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	b := newFakeBackend("n1", true)
	ts := startServer(t, "n1", b, nil)
	big := bytes.Repeat([]byte(" "), DefaultMaxBodyBytes+10)
	big = append(append([]byte(`{"addresses":["a"]`), big...), '}')
	cases := []struct {
		name, path string
		body       []byte
		status     int
		code       string
		msg        string
	}{
		{"services: malformed", "/v1/services", []byte(`{"name":`), 400, "invalid", ""},
		{"services: unknown field", "/v1/services", []byte(`{"name":"dns","colour":"red"}`), 400, "invalid", "colour"},
		{"services: wrong type", "/v1/services", []byte(`{"name":42}`), 400, "invalid", ""},
		{"services: two objects", "/v1/services", append(validSpec("dns"), validSpec("dns")...), 400, "invalid", ""},
		{"services: empty", "/v1/services", []byte(""), 400, "invalid", "empty"},
		{"services: array", "/v1/services", []byte(`[]`), 400, "invalid", ""},
		{"services: invalid value", "/v1/services", bytes.Replace(validSpec("dns"), []byte(`"windows"`), []byte(`"beos"`), 1), 400, "invalid", "os"},
		{"join: malformed", "/v1/join", []byte(`{"addresses":[`), 400, "invalid", "malformed JSON"},
		{"join: unknown field", "/v1/join", []byte(`{"addresses":["a"],"force":true}`), 400, "invalid", `unknown field "force"`},
		{"join: wrong type", "/v1/join", []byte(`{"addresses":"127.0.0.1"}`), 400, "invalid", `field "addresses": expected an array`},
		{"join: trailing data", "/v1/join", []byte(`{"addresses":["a"]} {}`), 400, "invalid", "exactly one JSON object"},
		{"join: not an object", "/v1/join", []byte(`["a"]`), 400, "invalid", "JSON object"},
		{"join: null", "/v1/join", []byte(`null`), 400, "invalid", "JSON object"},
		{"join: empty list", "/v1/join", []byte(`{"addresses":[]}`), 400, "invalid", "addresses"},
		{"join: empty address", "/v1/join", []byte(`{"addresses":[""]}`), 400, "invalid", "addresses[0]"},
		{"join: empty body", "/v1/join", nil, 400, "invalid", "empty"},
		{"join: too large", "/v1/join", big, 413, api.CodeTooLarge, "limit"},
		{"leave: unknown field", "/v1/leave", []byte(`{"now":true}`), 400, "invalid", "now"},
		{"transfer: wrong type", "/v1/raft/transfer-leader", []byte(`{"to":1}`), 400, "invalid", `"to"`},
		{"remove-peer: missing id", "/v1/raft/remove-peer", []byte(`{}`), 400, "invalid", "id"},
		{"remove-peer: unknown field", "/v1/raft/remove-peer", []byte(`{"ID":"n2","id":"n2","x":1}`), 400, "invalid", "x"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, apiErr, _ := rawRequest(t, ts, caOnly(t), "POST", c.path, bearer(secretOperator), c.body)
			if status != c.status || apiErr == nil || apiErr.Code != c.code {
				t.Fatalf("got %d %+v, want %d %s", status, apiErr, c.status, c.code)
			}
			if !strings.Contains(apiErr.Message, c.msg) {
				t.Fatalf("message %q does not mention %q", apiErr.Message, c.msg)
			}
		})
	}
	// Internal apply with garbage, authenticated as a node.
	nodeTLS := mustClientTLS(t, nodeFiles(pkiDir, "n2"))
	for _, body := range [][]byte{[]byte("garbage"), []byte(`{"v":1,"type":"nope","term":1,"body":{}}`), nil} {
		status, apiErr, _ := rawRequest(t, ts, nodeTLS, "POST", "/v1/internal/apply", nil, body)
		if status != 400 || apiErr == nil {
			t.Fatalf("internal apply %q: %d %+v, want 400", body, status, apiErr)
		}
	}
	apply, join, leave, transfer, remove := b.counts()
	if apply+join+leave+transfer+remove != 0 {
		t.Fatalf("bad input reached the backend: apply=%d join=%d leave=%d transfer=%d remove=%d", apply, join, leave, transfer, remove)
	}
	if len(b.Services()) != 0 {
		t.Fatal("bad input created a service")
	}
}

func TestApplyServiceAndRead(t *testing.T) {
	b := newFakeBackend("n1", true)
	ts := startServer(t, "n1", b, func(c *ServerConfig) { c.Term = func() uint64 { return 3 } })
	c := newTestClient(t, ts.URL, secretOperator, caOnly(t))
	ctx := context.Background()
	res, err := c.ApplyService(ctx, validSpec("dns"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Service != "dns" || res.Index == 0 || res.Generation == 0 {
		t.Fatalf("result %+v", res)
	}
	svc, err := c.Service(ctx, "dns")
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Name != "dns" || len(svc.Replicas) != 2 {
		t.Fatalf("service %+v", svc)
	}
	list, err := c.Services(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("services %v %v", list, err)
	}
	// A command the leader stamped with a term that ended before the
	// append is rejected by the fsm: nothing is committed, and the caller
	// is told to retry (503 unavailable), not that its request conflicts.
	b2 := newFakeBackend("n2", true)
	ts2 := startServer(t, "n2", b2, func(c *ServerConfig) { c.Term = func() uint64 { return 1 } })
	_, err = newTestClient(t, ts2.URL, secretOperator, caOnly(t)).ApplyService(ctx, validSpec("dns"))
	if !errors.Is(err, api.ErrUnavailable) || errors.Is(err, fsm.ErrStaleTerm) {
		t.Fatalf("stale term apply: %v", err)
	}
	if _, ok := b2.Service("dns"); ok {
		t.Fatal("a stale-term apply committed the service")
	}
	_, err = c.Service(ctx, "nosuch")
	if !errors.Is(err, fsm.ErrUnknownService) || !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("unknown service error %v lacks identity", err)
	}
	// Status page shows the service and its replicas' roles.
	status, _, body := rawRequest(t, ts, caOnly(t), "GET", "/", bearer(secretReader), nil)
	if status != 200 || !bytes.Contains(body, []byte("win-bind")) || !bytes.Contains(body, []byte("role-active")) {
		t.Fatalf("status page: %d %s", status, body)
	}
}

func TestConsistentReadRunsBarrierOnLeader(t *testing.T) {
	b := newFakeBackend("n1", true)
	ts := startServer(t, "n1", b, nil)
	status, _, _ := rawRequest(t, ts, caOnly(t), "GET", "/v1/services?consistent", bearer(secretReader), nil)
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	b.mu.Lock()
	n := b.barrierN
	b.mu.Unlock()
	if n != 1 {
		t.Fatalf("barrier calls = %d, want 1", n)
	}
}

func TestErrorIdentityRoundTrip(t *testing.T) {
	b := newFakeBackend("n1", true)
	ts := startServer(t, "n1", b, nil)
	c := newTestClient(t, ts.URL, secretOperator, caOnly(t))
	cases := []struct {
		backendErr error
		status     int
		code       string
		is         []error
	}{
		{fmt.Errorf("%w: x", fsm.ErrStaleGeneration), 409, "stale_generation", []error{fsm.ErrStaleGeneration}},
		{fmt.Errorf("%w: x", fsm.ErrConflict), 409, "conflict", []error{fsm.ErrConflict}},
		{fmt.Errorf("%w: x", fsm.ErrInvalid), 400, "invalid", []error{fsm.ErrInvalid, api.ErrBadRequest}},
		{fmt.Errorf("%w: replica r9", fsm.ErrUnknownReplica), 404, "unknown_replica", []error{fsm.ErrUnknownReplica, api.ErrNotFound}},
		{fmt.Errorf("%w: x", fsm.ErrCorrupt), 500, "corrupt", []error{fsm.ErrCorrupt}},
		{fmt.Errorf("raft apply: %w", raft.ErrNotLeader), 503, api.CodeNotLeader, []error{api.ErrNotLeader}},
		{fmt.Errorf("raft apply: %w", raft.ErrLeadershipLost), 503, api.CodeNotLeader, []error{api.ErrNotLeader}},
		{fmt.Errorf("raft apply: %w", raft.ErrEnqueueTimeout), 504, api.CodeTimeout, []error{api.ErrTimeout}},
		{fmt.Errorf("raft: %w", raft.ErrRaftShutdown), 503, api.CodeUnavailable, []error{api.ErrUnavailable}},
		{api.ErrNoLeader, 503, api.CodeNoLeader, []error{api.ErrNoLeader}},
		{fmt.Errorf("wrapped: %w", api.ErrNotLeader), 503, api.CodeNotLeader, []error{api.ErrNotLeader}},
		{errors.New("disk on fire"), 500, api.CodeInternal, nil},
	}
	for _, tc := range cases {
		t.Run(tc.code+"/"+tc.backendErr.Error(), func(t *testing.T) {
			b.mu.Lock()
			b.applyErr = tc.backendErr
			b.mu.Unlock()
			_, err := c.ApplyService(context.Background(), validSpec("dns"))
			var ae *api.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v (%T) is not an *APIError", err, err)
			}
			if ae.Status != tc.status || ae.Code != tc.code {
				t.Fatalf("got %d %s, want %d %s", ae.Status, ae.Code, tc.status, tc.code)
			}
			for _, target := range tc.is {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(%v, %v) = false", err, target)
				}
			}
			for _, other := range []error{api.ErrNotLeader, api.ErrNoLeader, fsm.ErrStaleTerm, api.ErrUnauthorized} {
				if !slices.Contains(tc.is, other) && errors.Is(err, other) {
					t.Errorf("errors.Is(%v, %v) = true unexpectedly", err, other)
				}
			}
			if fsm.Code(err) != "" && fsm.Code(err) != tc.code {
				t.Errorf("fsm.Code(client error) = %q, want %q", fsm.Code(err), tc.code)
			}
		})
	}
}

func TestSecretsNeverLogged(t *testing.T) {
	leader := newFakeBackend("n1", true)
	lts := startServer(t, "n1", leader, nil)
	fb := newFakeBackend("n2", false)
	fb.leaderFn = func() (string, string, bool) { return "n1", lts.hostPort(), true }
	fts := startServer(t, "n2", fb, func(c *ServerConfig) {
		c.Tokens = testTokens(t, pki.Token{Name: "fonly", Role: pki.RoleOperator, Secret: secretOther})
	})
	ctx := context.Background()
	for _, secret := range []string{secretOperator, secretReader, secretDetector, secretOther, secretOperator + "x", "short"} {
		for _, ts := range []*testServer{lts, fts} {
			c := newTestClient(t, ts.URL, secretOperator, caOnly(t))
			_, _ = c.ApplyService(ctx, validSpec("dns"))
			c2 := newTestClient(t, ts.URL, secret, caOnly(t))
			_, _ = c2.Status(ctx)
			_, _ = c2.ApplyService(ctx, validSpec("dns"))
			_ = c2.TransferLeader(ctx, "")
			rawRequest(t, ts, caOnly(t), "GET", "/v1/status", http.Header{api.HeaderToken: {secret}, "Authorization": {"Bearer x" + secret}}, nil)
		}
	}
	logs := lts.logs.String() + fts.logs.String()
	if !strings.Contains(logs, `"caller":"ops"`) {
		t.Fatalf("access log lacks token names; logs:\n%s", logs)
	}
	for _, secret := range []string{secretOperator, secretReader, secretDetector, secretOther} {
		if strings.Contains(logs, secret) {
			t.Fatalf("secret %q appears in logs", secret)
		}
	}
}
