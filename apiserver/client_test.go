package apiserver

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ars-project/ars/api"
)

func TestClientNetworkErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := newTestClient(t, addr, secretReader, caOnly(t))
	_, err = c.Status(context.Background())
	var ne *api.NetworkError
	if !errors.As(err, &ne) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("refused connection: %v (%T)", err, err)
	}
	var ae *api.APIError
	if errors.As(err, &ae) {
		t.Fatal("network error is also an APIError")
	}

	// A server that accepts and never answers: the context deadline ends
	// the call with a timeout.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	c = newTestClient(t, hang.Addr().String(), secretReader, caOnly(t))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = c.Status(ctx)
	if !errors.Is(err, api.ErrTimeout) || !errors.As(err, &ne) {
		t.Fatalf("hanging server: %v", err)
	}

	// A server with a certificate from another CA is a TLS failure.
	ts := startServerTLS(t, "n1", newFakeBackend("n1", true), nil, mustServerTLS(t, foreignDir, "n1", false))
	_, err = newTestClient(t, ts.URL, secretReader, caOnly(t)).Status(context.Background())
	if !errors.As(err, &ne) {
		t.Fatalf("foreign server cert: %v", err)
	}
}

func TestClientNonJSONError(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
	}))
	defer ts.Close()
	_, err := newTestClient(t, ts.URL, "", nil).Status(context.Background())
	var ae *api.APIError
	if !errors.As(err, &ae) || ae.Status != 502 || ae.Code != api.CodeUnavailable {
		t.Fatalf("non-JSON error: %v", err)
	}
}

func TestClientSendsTokenAndNoRedirects(t *testing.T) {
	var gotAuth string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("redirect followed; token sent to %s: %q", r.Host, r.Header.Get("Authorization"))
	}))
	defer other.Close()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		http.Redirect(w, r, other.URL+"/v1/status", http.StatusTemporaryRedirect)
	}))
	defer ts.Close()
	_, err := newTestClient(t, ts.URL, secretReader, nil).Status(context.Background())
	if err == nil {
		t.Fatal("redirect answer treated as success")
	}
	if gotAuth != "Bearer "+secretReader {
		t.Fatalf("Authorization = %q", gotAuth)
	}
}

func TestClientSnapshotDigest(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", api.SnapshotDigestTrailer)
		_, _ = w.Write([]byte("tampered snapshot"))
		w.Header().Set(api.SnapshotDigestTrailer, strings.Repeat("0", 64))
	}))
	defer ts.Close()
	err := newTestClient(t, ts.URL, "", nil).SnapshotSave(context.Background(), &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "digest mismatch") {
		t.Fatalf("digest mismatch not detected: %v", err)
	}
}

func TestClientSnapshotRoundTrip(t *testing.T) {
	b := newFakeBackend("n1", true)
	b.snapshot = bytes.Repeat([]byte("0123456789"), 300_000) // 3 MB, beyond the JSON limit
	ts := startServer(t, "n1", b, nil)
	c := newTestClient(t, ts.URL, secretOperator, caOnly(t))
	var buf bytes.Buffer
	if err := c.SnapshotSave(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), b.snapshot) {
		t.Fatalf("snapshot differs (%d bytes vs %d)", buf.Len(), len(b.snapshot))
	}
	if err := c.SnapshotRestore(context.Background(), bytes.NewReader(b.snapshot)); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	same := bytes.Equal(b.restored, b.snapshot)
	b.mu.Unlock()
	if !same {
		t.Fatal("restored snapshot differs")
	}
	// Over the snapshot limit: 413 and nothing restored.
	b2 := newFakeBackend("n2", true)
	ts2 := startServer(t, "n2", b2, func(c *ServerConfig) { c.MaxSnapshotBytes = 1 << 20 })
	err := newTestClient(t, ts2.URL, secretOperator, caOnly(t)).SnapshotRestore(context.Background(), bytes.NewReader(b.snapshot))
	if !errors.Is(err, api.ErrTooLarge) {
		t.Fatalf("oversized snapshot: %v", err)
	}
}

func TestClientOperations(t *testing.T) {
	b := newFakeBackend("n1", true)
	ts := startServer(t, "n1", b, nil)
	c := newTestClient(t, ts.URL, secretOperator, caOnly(t))
	ctx := context.Background()
	if n, err := c.Join(ctx, []string{"127.0.0.1:7502", "127.0.0.2:7502"}); err != nil || n != 2 {
		t.Fatalf("join: %d %v", n, err)
	}
	if ms, err := c.Members(ctx); err != nil || len(ms) != 1 || ms[0].Name != "n1" {
		t.Fatalf("members: %v %v", ms, err)
	}
	if ps, err := c.Peers(ctx); err != nil || len(ps) != 1 || ps[0].Suffrage != "Voter" {
		t.Fatalf("peers: %v %v", ps, err)
	}
	if err := c.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.TransferLeader(ctx, ""); err != nil {
		t.Fatal(err)
	}
	_, join, leave, transfer, _ := b.counts()
	if join != 1 || leave != 1 || transfer != 1 {
		t.Fatalf("backend calls join=%d leave=%d transfer=%d", join, leave, transfer)
	}
	// InternalApply needs a node certificate; a token is refused.
	if _, err := c.InternalApply(ctx, encodedApply(t, "dns")); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("internal apply with token: %v", err)
	}
	nc := newTestClient(t, ts.URL, "", mustClientTLS(t, nodeFiles(pkiDir, "n2")))
	res, err := nc.InternalApply(ctx, encodedApply(t, "dns"))
	if err != nil || res.Service != "dns" {
		t.Fatalf("internal apply: %+v %v", res, err)
	}
}

// Metrics returns the node's text exposition, readable with a reader
// token, as the scale benchmark reads a new leader's counters.
func TestClientMetrics(t *testing.T) {
	ts := startServer(t, "n1", newFakeBackend("n1", true), func(c *ServerConfig) { c.Registerer = prometheus.NewRegistry() })
	c := newTestClient(t, ts.URL, secretReader, caOnly(t))
	if _, err := c.Status(context.Background()); err != nil { // one request counted
		t.Fatal(err)
	}
	text, err := c.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "# TYPE ars_http_requests_total counter") {
		t.Fatalf("no metrics in %.200q", text)
	}
}
