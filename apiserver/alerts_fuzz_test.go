package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
)

// FuzzAlertBody posts arbitrary bodies to POST /v1/alerts and arbitrary
// query strings and bodies to the webhook, with a detector token: every
// answer is 200/201 (and then the alert is in the ledger) or a 4xx that
// committed nothing — never a 5xx, never a commit of an invalid alert
// (docs/design.md §4.7).
func FuzzAlertBody(f *testing.F) {
	f.Add([]byte(`{"id":"a-1","service":"dns","replica":"win-bind","kind":"exploit","evidence":"apparmor=\"DENIED\""}`), "service=dns&replica=win-bind&kind=exploit")
	f.Add([]byte(`{"id":"a-1","service":"dns","replica":"nope","kind":"exploit"}`), "service=dns&replica=nope&kind=dos")
	f.Add([]byte(`{"id":"","service":"dns","replica":"win-bind","kind":"exploit"}`), "kind=exploit")
	f.Add([]byte(`{"id":"a 1","service":"dns","replica":"win-bind","kind":"worm","x":1}`), "service=dns&service=dns")
	f.Add([]byte("\x00\xff{"), "%zz")
	f.Add([]byte(`{"id":"a-2","service":"dns","replica":"win-bind","kind":"dos","evidence":"line\u0001"}`), "")
	h, b := alertFuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte, query string) {
		for _, target := range []string{"/v1/alerts", "/v1/alerts/webhook"} {
			before := b.Status().AppliedIndex
			q := ""
			if target != "/v1/alerts" {
				q = query
			}
			code, resp := postDetector(h, target, q, body)
			after := b.Status().AppliedIndex
			switch {
			case code == http.StatusCreated || code == http.StatusOK:
				var ar api.AlertResponse
				if err := json.Unmarshal([]byte(resp), &ar); err != nil {
					t.Fatalf("%s: %d with an undecodable answer %q", target, code, resp)
				}
				if _, ok := b.m.Alert(ar.ID); !ok || after == before {
					t.Fatalf("%s: %d for alert %q, but it is not in the ledger (index %d -> %d)", target, code, ar.ID, before, after)
				}
			case code >= 400 && code < 500,
				// The server and its ledger live across iterations and no
				// leader decides the alerts, so after 4096 accepted ones the
				// ledger is full: refused, changing nothing.
				code == http.StatusServiceUnavailable && strings.Contains(resp, `"ledger_full"`):
				if after != before {
					t.Fatalf("%s: %d but the log moved %d -> %d: %s", target, code, before, after, resp)
				}
			default:
				t.Fatalf("%s: status %d for body %q: %s", target, code, body, resp)
			}
		}
	})
}

func alertFuzzServer(tb testing.TB, mods ...func(*ServerConfig)) (http.Handler, *fakeBackend) {
	b := newFakeBackend("n1", true)
	if _, err := b.Apply(context.Background(), encodedApply(tb, "dns")); err != nil {
		tb.Fatal(err)
	}
	cfg := ServerConfig{Backend: b, Tokens: testTokens(tb), NodeName: "n1",
		Logger: slog.New(slog.DiscardHandler), LeaderWait: 50 * time.Millisecond, AlertRate: -1}
	for _, m := range mods {
		m(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(srv.Close)
	return srv.Handler(), b
}

func postDetector(h http.Handler, target, rawQuery string, body []byte) (int, string) {
	req := httptest.NewRequest(http.MethodPost, "https://n1"+target, bytes.NewReader(body))
	req.URL.RawQuery = rawQuery // any bytes, as a hostile client could send them
	req.Header.Set("Authorization", "Bearer "+secretDetector)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// The fuzz harness reaches the commit path: a valid alert is committed
// through it, so the fuzzer explores more than the authentication wall.
func TestAlertFuzzHarnessCommits(t *testing.T) {
	h, b := alertFuzzServer(t)
	code, resp := postDetector(h, "/v1/alerts", "", []byte(`{"id":"a-1","service":"dns","replica":"win-bind","kind":"exploit"}`))
	if code != http.StatusCreated || len(b.m.Alerts()) != 1 {
		t.Fatalf("status %d (%s), %d alerts", code, resp, len(b.m.Alerts()))
	}
	code, _ = postDetector(h, "/v1/alerts/webhook", "service=dns&replica=win-bind&kind=exploit", []byte("denied"))
	if code != http.StatusCreated || len(b.m.Alerts()) != 2 {
		t.Fatalf("webhook status %d, %d alerts", code, len(b.m.Alerts()))
	}
}
