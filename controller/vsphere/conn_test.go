package vsphere

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"
)

// TestChunkedAnswersKeepTheConnection: govmomi decodes a SOAP answer up to
// the envelope's end tag and closes the body. An answer sent chunked (any
// answer larger than the server's buffer, such as a VM's devices) whose
// last chunk arrives after the envelope was still unread then, and
// net/http does not reuse a connection closed before the end of its body:
// every such call made a new TCP connection and TLS handshake (in the lab,
// behind its TCP proxy: one per VM read, a quarter of the leader's CPU at
// 25 services). The client drains the rest of the body, so calls share one
// connection.
func TestChunkedAnswersKeepTheConnection(t *testing.T) {
	const envelope = "<Envelope>answer</Envelope>"
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, envelope)
		w.(http.Flusher).Flush() // chunked: no length known
		time.Sleep(5 * time.Millisecond)
		_, _ = io.WriteString(w, "\n") // the last bytes come later
	}))
	var conns atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	u, err := url.Parse(srv.URL + "/sdk")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Insecure: true, CallTimeout: 5 * time.Second}
	tc, err := tlsConfig(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	sc := newSOAPClient(u, &cfg, tc)
	t.Cleanup(sc.CloseIdleConnections)
	for i := range 5 {
		req, err := http.NewRequest(http.MethodPost, u.String(), nil)
		if err != nil {
			t.Fatal(err)
		}
		err = sc.Do(context.Background(), req, func(res *http.Response) error {
			buf := make([]byte, len(envelope)) // as the decoder: up to the end tag
			_, err := io.ReadFull(res.Body, buf)
			return err
		})
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("5 calls opened %d connections, want 1", n)
	}
}
