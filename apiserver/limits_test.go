package apiserver

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/pki"
)

// TestEveryPostRouteRefusesOversizedBodies walks the real route table: a
// body one byte over a route's limit is 413 too_large and reaches nothing
// behind it, whether its length is declared (refused before it is read)
// or streamed without a length (cut off while it is read).
func TestEveryPostRouteRefusesOversizedBodies(t *testing.T) {
	const maxBody, maxSnap = 4 << 10, 8 << 10
	b := newFakeBackend("n1", true)
	if _, err := b.Apply(t.Context(), encodedApply(t, "dns")); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, "n1", b, func(c *ServerConfig) { c.MaxBodyBytes, c.MaxSnapshotBytes = maxBody, maxSnap })
	nodeTLS := mustClientTLS(t, nodeFiles(pkiDir, "n2"))
	apply0, join0, leave0, transfer0, remove0 := b.counts()

	checked := 0
	for _, rt := range ts.api.routes {
		if rt.method != http.MethodPost {
			continue
		}
		limit := int64(maxBody)
		switch {
		case rt.snapshot:
			limit = maxSnap
		case rt.maxBody > 0:
			limit = rt.maxBody
		}
		tlsCfg, hdr := caOnly(t), bearer(secretOperator)
		if rt.allows(pki.RoleNode) {
			tlsCfg, hdr = nodeTLS, nil
		}
		// A JSON string that never ends before the limit: a strict decoder
		// reads the whole value before it judges the fields.
		body := []byte(`{"reason":"` + strings.Repeat("a", int(limit)))
		for _, declared := range []bool{true, false} {
			name := fmt.Sprintf("%s/declared=%v", rt.pattern(), declared)
			t.Run(name, func(t *testing.T) {
				status, code := postBody(t, ts, tlsCfg, concretePath(rt.path), hdr, body, declared)
				if status != http.StatusRequestEntityTooLarge || code != api.CodeTooLarge {
					t.Fatalf("%d bytes (limit %d): status %d %q, want 413 too_large", len(body), limit, status, code)
				}
			})
		}
		checked++
	}
	if checked < 10 {
		t.Fatalf("only %d POST routes checked", checked)
	}
	apply1, join1, leave1, transfer1, remove1 := b.counts()
	if apply1 != apply0 || join1 != join0 || leave1 != leave0 || transfer1 != transfer0 || remove1 != remove0 {
		t.Fatalf("oversized requests reached the backend: apply %d→%d join %d→%d leave %d→%d transfer %d→%d remove %d→%d",
			apply0, apply1, join0, join1, leave0, leave1, transfer0, transfer1, remove0, remove1)
	}
	b.mu.Lock()
	restored := b.restored
	b.mu.Unlock()
	if restored != nil {
		t.Fatal("an oversized snapshot was restored")
	}
}

// postBody POSTs body with its length declared, or streamed (chunked, no
// Content-Length), and returns the status and error code.
func postBody(t *testing.T, ts *testServer, tlsCfg *tls.Config, path string, hdr http.Header, body []byte, declared bool) (int, string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	var rd io.Reader = bytes.NewReader(body)
	if !declared {
		rd = io.MultiReader(rd) // hides the length: sent chunked
	}
	req, err := http.NewRequest(http.MethodPost, ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var eb struct {
		Error *api.APIError `json:"error"`
	}
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &eb); err != nil || eb.Error == nil {
		return resp.StatusCode, ""
	}
	return resp.StatusCode, eb.Error.Code
}
