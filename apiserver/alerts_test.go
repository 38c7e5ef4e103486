package apiserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/fsm"
)

var leaderClock = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// alertLeader starts a leader with service "dns" (replicas win-bind,
// lin-unbound) and a fixed clock.
func alertLeader(t *testing.T) *testServer {
	t.Helper()
	b := newFakeBackend("n1", true)
	if _, err := b.Apply(context.Background(), encodedApply(t, "dns")); err != nil {
		t.Fatal(err)
	}
	return startServer(t, "n1", b, func(c *ServerConfig) { c.Now = func() time.Time { return leaderClock } })
}

func alertJSON(id string, extra ...string) []byte {
	s := `{"id":"` + id + `","service":"dns","replica":"win-bind","kind":"exploit"`
	for _, e := range extra {
		s += "," + e
	}
	return []byte(s + "}")
}

func decodeAlertResponse(t *testing.T, body []byte) api.AlertResponse {
	t.Helper()
	var ar api.AlertResponse
	if err := json.Unmarshal(body, &ar); err != nil {
		t.Fatalf("response %q: %v", body, err)
	}
	return ar
}

func TestPostAlertCommitsOnceAndDedups(t *testing.T) {
	ts := alertLeader(t)
	status, _, body := rawRequest(t, ts, caOnly(t), "POST", "/v1/alerts", bearer(secretDetector),
		alertJSON("aa-1", `"evidence":"apparmor=\"DENIED\" operation=\"exec\"\nline 2"`))
	if status != http.StatusCreated {
		t.Fatalf("first post: %d %s, want 201", status, body)
	}
	ar := decodeAlertResponse(t, body)
	if ar.ID != "aa-1" || ar.Duplicate || ar.Index == 0 || ar.At != leaderClock.UnixNano() || ar.Source != "watcher" {
		t.Fatalf("response %+v", ar)
	}
	ledger := ts.b.Alerts()
	if len(ledger) != 1 {
		t.Fatalf("ledger %+v, want one alert", ledger)
	}
	got := ledger[0]
	if got.ID != "aa-1" || got.Kind != "exploit" || got.Replica != "win-bind" || got.At != leaderClock.UnixNano() ||
		got.Source != "watcher" || !strings.Contains(got.Evidence, "line 2") || got.Index != ar.Index {
		t.Fatalf("ledger record %+v", got)
	}

	// The retry (other kind, other evidence: the id decides) is a duplicate.
	status, _, body = rawRequest(t, ts, caOnly(t), "POST", "/v1/alerts", bearer(secretOperator),
		[]byte(`{"id":"aa-1","service":"dns","replica":"win-bind","kind":"dos","source":"cli"}`))
	if status != http.StatusOK {
		t.Fatalf("retry: %d %s, want 200", status, body)
	}
	if ar := decodeAlertResponse(t, body); !ar.Duplicate || !strings.Contains(string(body), `"duplicate":true`) {
		t.Fatalf("retry response %s", body)
	}
	if n := len(ts.b.Alerts()); n != 1 {
		t.Fatalf("ledger has %d alerts after a duplicate, want 1", n)
	}

	// Through the client.
	c := newTestClient(t, ts.URL, secretDetector, caOnly(t))
	ctx := context.Background()
	res, err := c.PostAlert(ctx, api.AlertRequest{ID: "aa-2", Service: "dns", Replica: "lin-unbound", Kind: "dos", Source: "probe"})
	if err != nil || res.Duplicate || res.Replica != "lin-unbound" || res.Source != "probe" {
		t.Fatalf("PostAlert: %+v %v", res, err)
	}
	res, err = c.PostAlert(ctx, api.AlertRequest{ID: "aa-2", Service: "dns", Replica: "lin-unbound", Kind: "dos"})
	if err != nil || !res.Duplicate {
		t.Fatalf("PostAlert retry: %+v %v", res, err)
	}

	// The ledger, newest first, bounded, filtered; a detector may not read it.
	rc := newTestClient(t, ts.URL, secretReader, caOnly(t))
	list, err := rc.Alerts(ctx, "", 0)
	if err != nil || len(list) != 2 || list[0].ID != "aa-2" || list[1].ID != "aa-1" {
		t.Fatalf("Alerts: %+v %v", list, err)
	}
	list, err = rc.Alerts(ctx, "dns", 1)
	if err != nil || len(list) != 1 || list[0].ID != "aa-2" {
		t.Fatalf("Alerts limit 1: %+v %v", list, err)
	}
	list, err = rc.Alerts(ctx, "other", 0)
	if err != nil || list == nil || len(list) != 0 {
		t.Fatalf("Alerts of another service: %#v %v", list, err)
	}
	if _, err := c.Alerts(ctx, "", 0); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("detector listing alerts: %v, want forbidden", err)
	}
	if _, err := newTestClient(t, ts.URL, secretReader, caOnly(t)).PostAlert(ctx, api.AlertRequest{ID: "r", Service: "dns", Replica: "win-bind", Kind: "dos"}); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("reader posting an alert: %v, want forbidden", err)
	}
	if n := len(ts.b.Alerts()); n != 2 {
		t.Fatalf("ledger has %d alerts, want 2", n)
	}
}

func TestAlertBadInputChangesNothing(t *testing.T) {
	ts := alertLeader(t)
	applied, _, _, _, _ := ts.b.counts()
	long := strings.Repeat("a", api.MaxAlertIDLength+1)
	bigEvidence := `"evidence":"` + strings.Repeat("e", api.MaxAlertEvidenceBytes+1) + `"`
	tooLarge := alertJSON("x", `"evidence":"`+strings.Repeat("e", api.MaxAlertBodyBytes)+`"`)
	cases := []struct {
		name   string
		hdr    http.Header
		body   []byte
		status int
		code   string
		msg    string
	}{
		{"unknown field", bearer(secretDetector), alertJSON("x", `"severity":"high"`), 400, "invalid", `unknown field "severity"`},
		{"at is the leader's", bearer(secretDetector), alertJSON("x", `"at":1`), 400, "invalid", `unknown field "at"`},
		{"malformed", bearer(secretDetector), []byte(`{"id":`), 400, "invalid", "malformed JSON"},
		{"empty body", bearer(secretDetector), nil, 400, "invalid", "empty"},
		{"two objects", bearer(secretDetector), append(alertJSON("x"), alertJSON("y")...), 400, "invalid", "exactly one"},
		{"wrong type", bearer(secretDetector), []byte(`{"id":7}`), 400, "invalid", `field "id"`},
		{"missing id", bearer(secretDetector), []byte(`{"service":"dns","replica":"win-bind","kind":"exploit"}`), 400, "invalid", "id: required"},
		{"id too long", bearer(secretDetector), alertJSON(long), 400, "invalid", "at most 128"},
		{"id charset", bearer(secretDetector), alertJSON("a b"), 400, "invalid", "letters, digits"},
		{"id leading dot", bearer(secretDetector), alertJSON(".a"), 400, "invalid", "letters, digits"},
		{"missing kind", bearer(secretDetector), []byte(`{"id":"x","service":"dns","replica":"win-bind"}`), 400, "invalid", "kind: required"},
		{"bad kind", bearer(secretDetector), []byte(`{"id":"x","service":"dns","replica":"win-bind","kind":"virus"}`), 400, "invalid", "kind"},
		{"missing service", bearer(secretDetector), []byte(`{"id":"x","replica":"win-bind","kind":"dos"}`), 400, "invalid", "service: required"},
		{"missing replica", bearer(secretDetector), []byte(`{"id":"x","service":"dns","kind":"dos"}`), 400, "invalid", "replica: required"},
		{"source with newline", bearer(secretDetector), alertJSON("x", `"source":"a\nb"`), 400, "invalid", "source"},
		{"evidence control char", bearer(secretDetector), alertJSON("x", `"evidence":"\u001b[31m"`), 400, "invalid", "U+001B"},
		{"evidence too long", bearer(secretDetector), alertJSON("x", bigEvidence), 400, "invalid", "at most 16384"},
		{"body too large", bearer(secretDetector), tooLarge, 413, api.CodeTooLarge, "65536"},
		{"unknown service", bearer(secretDetector), []byte(`{"id":"x","service":"nope","replica":"win-bind","kind":"dos"}`), 404, "unknown_service", `"nope"`},
		{"unknown replica", bearer(secretDetector), []byte(`{"id":"x","service":"dns","replica":"nope","kind":"dos"}`), 404, "unknown_replica", `"nope"`},
		{"reader token", bearer(secretReader), alertJSON("x"), 403, api.CodeForbidden, "detector, operator"},
		{"no token", nil, alertJSON("x"), 401, api.CodeUnauthorized, "missing API token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, apiErr, _ := rawRequest(t, ts, caOnly(t), "POST", "/v1/alerts", c.hdr, c.body)
			if status != c.status || apiErr == nil || apiErr.Code != c.code {
				t.Fatalf("got %d %+v, want %d %s", status, apiErr, c.status, c.code)
			}
			if !strings.Contains(apiErr.Message, c.msg) {
				t.Fatalf("message %q does not mention %q", apiErr.Message, c.msg)
			}
		})
	}
	if a, _, _, _, _ := ts.b.counts(); a != applied {
		t.Fatalf("bad alerts reached Apply %d times", a-applied)
	}
	if n := len(ts.b.Alerts()); n != 0 {
		t.Fatalf("bad alerts left %d ledger records", n)
	}
}

func TestAlertApplyErrorsKeepIdentity(t *testing.T) {
	ts := alertLeader(t)
	c := newTestClient(t, ts.URL, secretDetector, caOnly(t))
	for _, tc := range []struct {
		err  error
		want error
	}{
		{fmt.Errorf("raft apply: %w", raft.ErrLeadershipLost), api.ErrNotLeader},
		{fmt.Errorf("raft apply: %w", raft.ErrEnqueueTimeout), api.ErrTimeout},
		{fmt.Errorf("%w: service deleted meanwhile", fsm.ErrUnknownService), fsm.ErrUnknownService},
		// Leadership changed between encoding and append: nothing was
		// committed and a retry is right, so 503, never a 409 a detector
		// would take as final (found by TestAlertFloodIsBounded).
		{fmt.Errorf("apply: %w: alert command issued in term 2, appended in term 3", fsm.ErrStaleTerm), api.ErrUnavailable},
	} {
		ts.b.mu.Lock()
		ts.b.applyErr = tc.err
		ts.b.mu.Unlock()
		_, err := c.PostAlert(context.Background(), api.AlertRequest{ID: "x", Service: "dns", Replica: "win-bind", Kind: "exploit"})
		if !errors.Is(err, tc.want) {
			t.Errorf("backend error %v: client got %v, want %v", tc.err, err, tc.want)
		}
		if errors.Is(tc.err, fsm.ErrStaleTerm) && errors.Is(err, fsm.ErrStaleTerm) {
			t.Errorf("a stale term of the leader's own command reached the client as %v", err)
		}
	}
	if n := len(ts.b.Alerts()); n != 0 {
		t.Fatalf("failed applies left %d ledger records", n)
	}
}

// TestLedgerEvidenceLimitMatchesFSM fails if the fsm's evidence limit
// changes without LedgerEvidenceBytes following it.
func TestLedgerEvidenceLimitMatchesFSM(t *testing.T) {
	m := fsm.New()
	spec, err := fsm.DecodeServiceSpec(validSpec("dns"))
	if err != nil {
		t.Fatal(err)
	}
	cmd, _ := fsm.Encode(1, fsm.ServiceApply{Spec: spec})
	if _, err := m.Apply(1, 1, cmd); err != nil {
		t.Fatal(err)
	}
	for i, n := range []int{api.LedgerEvidenceBytes, api.LedgerEvidenceBytes + 1} {
		cmd, err := fsm.Encode(1, fsm.Alert{ID: fmt.Sprint("e", n), Service: "dns", Replica: "win-bind", Kind: "exploit", Evidence: strings.Repeat("x", n)})
		if err != nil {
			t.Fatal(err)
		}
		_, err = m.Apply(uint64(2+i), 1, cmd)
		if (err == nil) != (n == api.LedgerEvidenceBytes) {
			t.Fatalf("fsm with %d bytes of evidence: %v", n, err)
		}
	}
}

func TestAlertEvidenceTruncated(t *testing.T) {
	ts := alertLeader(t)
	evidence := strings.Repeat("é", 5000) // 10000 bytes, two per rune
	req, _ := json.Marshal(api.AlertRequest{ID: "big", Service: "dns", Replica: "win-bind", Kind: "exploit", Evidence: evidence})
	status, _, body := rawRequest(t, ts, caOnly(t), "POST", "/v1/alerts", bearer(secretDetector), req)
	if status != 201 || !decodeAlertResponse(t, body).EvidenceTruncated {
		t.Fatalf("post: %d %s", status, body)
	}
	got := ts.b.Alerts()[0].Evidence
	sum := sha256.Sum256([]byte(evidence))
	marker := fmt.Sprintf("\n[truncated: 10000 bytes, sha256 %s]", hex.EncodeToString(sum[:]))
	prefix, ok := strings.CutSuffix(got, marker)
	if !ok || len(got) > api.LedgerEvidenceBytes || !strings.HasPrefix(evidence, prefix) || len(prefix) < api.LedgerEvidenceBytes-len(marker)-1 {
		t.Fatalf("stored evidence (%d bytes) is not a prefix plus %q", len(got), marker)
	}
}

func TestAlertWebhook(t *testing.T) {
	ts := alertLeader(t)
	const q = "/v1/alerts/webhook?service=dns&replica=win-bind&kind=exploit&source=seconddep"
	text := []byte("SecondDEP blocked shellcode in named.exe\r\n\tat 0x41414141")

	status, _, body := rawRequest(t, ts, caOnly(t), "POST", q, bearer(secretDetector), text)
	if status != 201 {
		t.Fatalf("webhook: %d %s", status, body)
	}
	ar := decodeAlertResponse(t, body)
	if want := api.WebhookAlertID("seconddep", "dns", "win-bind", text); ar.ID != want || !strings.HasPrefix(ar.ID, "wh-") || len(ar.ID) > api.MaxAlertIDLength {
		t.Fatalf("id %q, want %q", ar.ID, want)
	}
	if rec := ts.b.Alerts()[0]; rec.Evidence != string(text) || rec.Source != "seconddep" || rec.At != leaderClock.UnixNano() {
		t.Fatalf("record %+v", rec)
	}
	// A retried delivery dedups; another body or replica does not.
	status, _, body = rawRequest(t, ts, caOnly(t), "POST", q, bearer(secretDetector), text)
	if status != 200 || !decodeAlertResponse(t, body).Duplicate {
		t.Fatalf("retried webhook: %d %s", status, body)
	}
	if api.WebhookAlertID("seconddep", "dns", "lin-unbound", text) == ar.ID || api.WebhookAlertID("seconddep", "dns", "win-bind", append(text, '!')) == ar.ID ||
		api.WebhookAlertID("a", "bc", "d", nil) == api.WebhookAlertID("ab", "c", "d", nil) {
		t.Fatal("webhook ids collide")
	}

	// The detector's own id; a binary body is kept as base64.
	bin := []byte{0xff, 0x00, 0xfe, 'M', 'Z'}
	hdr := bearer(secretDetector)
	hdr.Set(api.HeaderAlertID, "edr-4711")
	status, _, body = rawRequest(t, ts, caOnly(t), "POST", "/v1/alerts/webhook?service=dns&replica=lin-unbound&kind=dos", hdr, bin)
	if status != 201 || decodeAlertResponse(t, body).ID != "edr-4711" {
		t.Fatalf("webhook with id: %d %s", status, body)
	}
	rec := ts.b.Alerts()[1]
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(rec.Evidence, api.EvidenceBase64Prefix))
	if !strings.HasPrefix(rec.Evidence, api.EvidenceBase64Prefix) || err != nil || !bytes.Equal(raw, bin) || rec.Source != "watcher" || rec.Kind != "dos" {
		t.Fatalf("binary evidence %q (%v), record %+v", rec.Evidence, err, rec)
	}

	// A full-size binary body: stored truncated, its prefix still decodes.
	full := bytes.Repeat([]byte{0x80, 0x81, 0x82}, api.MaxAlertEvidenceBytes/3)
	status, _, body = rawRequest(t, ts, caOnly(t), "POST", q, bearer(secretOperator), full)
	if status != 201 || !decodeAlertResponse(t, body).EvidenceTruncated {
		t.Fatalf("full-size webhook: %d %s", status, body)
	}
	stored, _, _ := strings.Cut(strings.TrimPrefix(ts.b.Alerts()[2].Evidence, api.EvidenceBase64Prefix), "\n[truncated: ")
	raw, err = base64.StdEncoding.DecodeString(stored)
	if err != nil || len(raw) < 2000 || !bytes.HasPrefix(full, raw) {
		t.Fatalf("truncated base64 evidence does not decode to a prefix: %v (%d bytes)", err, len(raw))
	}

	applied, _, _, _, _ := ts.b.counts()
	for _, c := range []struct {
		name, path string
		hdr        http.Header
		body       []byte
		status     int
		code, msg  string
	}{
		{"too large", q, bearer(secretDetector), make([]byte, api.MaxAlertEvidenceBytes+1), 413, api.CodeTooLarge, "16384"},
		{"empty body without id", q, bearer(secretDetector), nil, 400, "invalid", api.HeaderAlertID},
		{"unknown parameter", q + "&severity=high", bearer(secretDetector), text, 400, "invalid", "severity"},
		{"repeated parameter", q + "&kind=dos", bearer(secretDetector), text, 400, "invalid", "kind"},
		{"missing kind", "/v1/alerts/webhook?service=dns&replica=win-bind", bearer(secretDetector), text, 400, "invalid", "kind: required"},
		{"bad id header", q, http.Header{"Authorization": {"Bearer " + secretDetector}, api.HeaderAlertID: {"a/b"}}, text, 400, "invalid", api.HeaderAlertID},
		{"unknown replica", "/v1/alerts/webhook?service=dns&replica=x&kind=exploit", bearer(secretDetector), text, 404, "unknown_replica", `"x"`},
		{"reader", q, bearer(secretReader), text, 403, api.CodeForbidden, ""},
	} {
		status, apiErr, _ := rawRequest(t, ts, caOnly(t), "POST", c.path, c.hdr, c.body)
		if status != c.status || apiErr == nil || apiErr.Code != c.code || !strings.Contains(apiErr.Message, c.msg) {
			t.Errorf("%s: %d %+v, want %d %s mentioning %q", c.name, status, apiErr, c.status, c.code, c.msg)
		}
	}
	if a, _, _, _, _ := ts.b.counts(); a != applied {
		t.Fatalf("bad webhook calls reached Apply %d times", a-applied)
	}
}

func TestAlertsForwardedToLeader(t *testing.T) {
	ctx := context.Background()
	lts := alertLeader(t)
	fb := newFakeBackend("n2", false)
	fb.leaderFn = func() (string, string, bool) { return "n1", lts.hostPort(), true }
	fts := startServer(t, "n2", fb, func(c *ServerConfig) { c.Now = func() time.Time { return leaderClock.Add(time.Hour) } })

	c := newTestClient(t, fts.URL, secretDetector, caOnly(t))
	res, err := c.PostAlert(ctx, api.AlertRequest{ID: "fwd-1", Service: "dns", Replica: "win-bind", Kind: "exploit"})
	if err != nil || res.Duplicate || res.At != leaderClock.UnixNano() {
		t.Fatalf("alert via follower: %+v %v (want the leader's clock)", res, err)
	}
	hdr := bearer(secretDetector)
	hdr.Set(api.HeaderAlertID, "fwd-2")
	status, _, body := rawRequest(t, fts, caOnly(t), "POST", "/v1/alerts/webhook?service=dns&replica=lin-unbound&kind=dos&source=edr", hdr, []byte("evidence"))
	if status != 201 {
		t.Fatalf("webhook via follower: %d %s", status, body)
	}
	ledger := lts.b.Alerts()
	if len(ledger) != 2 || ledger[1].ID != "fwd-2" || ledger[1].Source != "edr" || ledger[1].Replica != "lin-unbound" {
		t.Fatalf("leader ledger %+v", ledger)
	}
	if a, _, _, _, _ := fts.b.counts(); a != 0 {
		t.Fatalf("follower applied %d commands", a)
	}

	// Limits and roles are checked by the follower: nothing is forwarded.
	before := len(lts.forwardedHeaders())
	status, apiErr, _ := rawRequest(t, fts, caOnly(t), "POST", "/v1/alerts", bearer(secretDetector),
		alertJSON("big", `"evidence":"`+strings.Repeat("e", api.MaxAlertBodyBytes)+`"`))
	if status != 413 || apiErr.Code != api.CodeTooLarge {
		t.Fatalf("oversized alert via follower: %d %+v", status, apiErr)
	}
	status, _, _ = rawRequest(t, fts, caOnly(t), "POST", "/v1/alerts", bearer(secretReader), alertJSON("r"))
	if status != 403 {
		t.Fatalf("reader alert via follower: %d", status)
	}
	if after := len(lts.forwardedHeaders()); after != before {
		t.Fatalf("%d rejected requests were forwarded", after-before)
	}
	if logs := lts.logs.String() + fts.logs.String(); strings.Contains(logs, secretDetector) {
		t.Fatal("detector secret in logs")
	}
}

func TestAlertWithoutLeader(t *testing.T) {
	fb := newFakeBackend("n2", false)
	ts := startServer(t, "n2", fb, func(c *ServerConfig) { c.LeaderWait = 50 * time.Millisecond })
	_, err := newTestClient(t, ts.URL, secretDetector, caOnly(t)).PostAlert(context.Background(),
		api.AlertRequest{ID: "x", Service: "dns", Replica: "win-bind", Kind: "exploit"})
	if !errors.Is(err, api.ErrNoLeader) {
		t.Fatalf("alert without a leader: %v, want no_leader", err)
	}
	if a, _, _, _, _ := fb.counts(); a != 0 {
		t.Fatal("alert applied on a follower")
	}
}

// stateOnly hides fakeBackend's Alerts method and offers State() instead,
// as cluster.Cluster does.
type stateOnly struct {
	Backend
	f *fakeBackend
}

func (s stateOnly) State() ([]byte, uint64, error) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	data, err := s.f.m.Snapshot()
	return data, s.f.index, err
}

// bare has neither Alerts nor State.
type bare struct{ Backend }

func TestAlertListSourcesAndBadQueries(t *testing.T) {
	f := newFakeBackend("n1", true)
	ctx := context.Background()
	if _, err := f.Apply(ctx, encodedApply(t, "dns")); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		cmd, _ := fsm.Encode(3, fsm.Alert{ID: fmt.Sprint("a", i), Service: "dns", Replica: "win-bind", Kind: "dos", At: 1})
		if _, err := f.Apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	ts := startServer(t, "n1", f, func(c *ServerConfig) { c.Backend = stateOnly{Backend: f, f: f} })
	list, err := newTestClient(t, ts.URL, secretReader, caOnly(t)).Alerts(ctx, "dns", 2)
	if err != nil || len(list) != 2 || list[0].ID != "a2" || list[1].ID != "a1" {
		t.Fatalf("ledger through State(): %+v %v", list, err)
	}
	for _, q := range []string{"limit=0", "limit=4097", "limit=x", "limit=-1", "colour=red", "service=a&service=b"} {
		status, apiErr, _ := rawRequest(t, ts, caOnly(t), "GET", "/v1/alerts?"+q, bearer(secretReader), nil)
		if status != 400 || apiErr.Code != api.CodeInvalid {
			t.Errorf("GET /v1/alerts?%s: %d %+v, want 400 invalid", q, status, apiErr)
		}
	}
	ts2 := startServer(t, "n1", f, func(c *ServerConfig) { c.Backend = bare{f} })
	status, apiErr, _ := rawRequest(t, ts2, caOnly(t), "GET", "/v1/alerts", bearer(secretReader), nil)
	if status != 404 || apiErr.Code != api.CodeNotFound {
		t.Fatalf("ledger without support: %d %+v", status, apiErr)
	}
}

// A caller that floods alerts gets 429 with Retry-After once its burst is
// spent, and nothing more is committed for it; another caller has its own
// bucket. The bound: at most AlertBurst + AlertRate × t commits per caller.
func TestAlertFloodIsRateLimited(t *testing.T) {
	h, b := alertFuzzServer(t, func(c *ServerConfig) { c.AlertRate, c.AlertBurst = 1, 10 })
	created, limited := 0, 0
	for i := 0; i < 50; i++ {
		req := httptest.NewRequest(http.MethodPost, "https://n1/v1/alerts",
			bytes.NewReader(alertJSON(fmt.Sprintf("flood-%d", i))))
		req.Header.Set("Authorization", "Bearer "+secretDetector)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusCreated:
			created++
		case http.StatusTooManyRequests:
			limited++
			if rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), `"rate_limited"`) {
				t.Fatalf("429 without Retry-After or code: %v %s", rec.Header(), rec.Body)
			}
		default:
			t.Fatalf("alert %d: status %d: %s", i, rec.Code, rec.Body)
		}
	}
	// 10 from the burst, perhaps one more refilled while the loop ran.
	if created < 10 || created > 11 || limited != 50-created {
		t.Fatalf("%d created, %d limited; want the burst of 10 (or 11) through", created, limited)
	}
	if n := len(b.m.Alerts()); n != created {
		t.Fatalf("%d alerts in the ledger, %d acknowledged", n, created)
	}
	// The operator's bucket is its own.
	code, resp := postAs(h, secretOperator, alertJSON("op-1"))
	if code != http.StatusCreated {
		t.Fatalf("operator after the detector's flood: %d %s", code, resp)
	}
}

// A ledger full of undecided alerts (the fsm never drops one, docs/design.md §4.3)
// answers a new alert 503 ledger_full with Retry-After, records nothing,
// and takes it once an alert held is decided. Duplicates of held alerts
// are still acknowledged.
func TestFullLedgerRefusesNewAlerts(t *testing.T) {
	h, b := alertFuzzServer(t)
	for i := 0; i < fsm.AlertLedgerLimit; i++ {
		if code, resp := postAs(h, secretDetector, alertJSON(fmt.Sprintf("held-%d", i))); code != http.StatusCreated {
			t.Fatalf("alert %d: %d %s", i, code, resp)
		}
	}
	before := b.Status().AppliedIndex
	req := httptest.NewRequest(http.MethodPost, "https://n1/v1/alerts", bytes.NewReader(alertJSON("one-more")))
	req.Header.Set("Authorization", "Bearer "+secretDetector)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" ||
		!strings.Contains(rec.Body.String(), `"ledger_full"`) || !strings.Contains(rec.Body.String(), "one-more") {
		t.Fatalf("full ledger: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	// Refused before the log: no entry is committed for the fsm to refuse.
	if after := b.Status().AppliedIndex; after != before {
		t.Fatalf("refused alert moved the log %d -> %d", before, after)
	}
	if _, ok := b.m.Alert("one-more"); ok || len(b.m.Alerts()) != fsm.AlertLedgerLimit {
		t.Fatalf("refused alert recorded (%d alerts)", len(b.m.Alerts()))
	}
	if code, resp := postAs(h, secretDetector, alertJSON("held-7")); code != http.StatusOK {
		t.Fatalf("duplicate of a held alert: %d %s", code, resp)
	}
	cmd, err := fsm.Encode(3, fsm.AlertOutcome{ID: "held-7", Outcome: "ignored"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Apply(context.Background(), cmd); err != nil {
		t.Fatal(err)
	}
	if code, resp := postAs(h, secretDetector, alertJSON("one-more")); code != http.StatusCreated {
		t.Fatalf("after one was decided: %d %s", code, resp)
	}
	if _, ok := b.m.Alert("held-7"); ok {
		t.Fatal("the decided alert was not the one dropped")
	}
}

func postAs(h http.Handler, token string, body []byte) (int, string) {
	req := httptest.NewRequest(http.MethodPost, "https://n1/v1/alerts", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// Thousands of authenticated alerts from several callers at once, with
// the default limits, through the handler (no network, so the flood runs
// at thousands per second): each caller gets at most DefaultAlertBurst +
// DefaultAlertRate × elapsed alerts acknowledged — new and duplicate alike
// — and nothing else reaches the log. TestAlertFloodIsBounded (test/e2e)
// checks the same bound on a real cluster, with the switches.
func TestAlertFloodFromSeveralCallersIsBounded(t *testing.T) {
	h, b := alertFuzzServer(t, func(c *ServerConfig) { c.AlertRate, c.AlertBurst = 0, 0 }) // the defaults
	callers := map[string]string{"detector": secretDetector, "operator": secretOperator}
	const perCaller, workers = 3000, 4
	type counts struct{ ok, limited int }
	results := map[string]*counts{}
	var mu sync.Mutex
	start := time.Now()
	var wg sync.WaitGroup
	for name := range callers {
		results[name] = &counts{}
	}
	for name, secret := range callers {
		c := results[name]
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < perCaller/workers; i++ {
					// Half new ids, half one id repeated: duplicates count too.
					id := fmt.Sprintf("%s-%d-%d", name, w, i)
					if i%2 == 1 {
						id = name + "-same"
					}
					code, body := postAs(h, secret, alertJSON(id))
					mu.Lock()
					switch code {
					case http.StatusCreated, http.StatusOK:
						c.ok++
					case http.StatusTooManyRequests:
						c.limited++
					default:
						t.Errorf("%s: %d %s", name, code, body)
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	bound := DefaultAlertBurst + int(DefaultAlertRate*elapsed.Seconds()) + 1
	applies, _, _, _, _ := b.counts()
	total := 0
	for name, c := range results {
		t.Logf("%s: %d acknowledged, %d rate-limited in %s (bound %d)", name, c.ok, c.limited, elapsed.Round(time.Millisecond), bound)
		if c.ok > bound || c.ok+c.limited != perCaller {
			t.Errorf("%s: %d acknowledged, %d limited of %d; the bound is %d", name, c.ok, c.limited, perCaller, bound)
		}
		if c.limited == 0 {
			t.Errorf("%s: nothing rate-limited: the flood did not exceed the limit", name)
		}
		total += c.ok
	}
	// One log entry per acknowledged alert (and the service's apply).
	if applies != total+1 {
		t.Errorf("%d applies for %d acknowledged alerts", applies, total)
	}
}
