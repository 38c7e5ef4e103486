package transport

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestHTTPServerDropsSlowClients(t *testing.T) {
	api, err := NewServer(ServerConfig{Backend: newFakeBackend("n1", true), Tokens: testTokens(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv := NewHTTPServer("127.0.0.1:0", api.Handler(), mustServerTLS(t, pkiDir, "n1", false), nil)
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 {
		t.Fatalf("timeouts not set: %+v", srv)
	}
	srv.ReadHeaderTimeout = 200 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })

	conn, err := tls.Dial("tcp", ln.Addr().String(), caOnly(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Start a request and never finish the headers.
	if _, err := conn.Write([]byte("GET /v1/status HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	for {
		_, err = conn.Read(buf)
		if err != nil {
			break
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("server kept a connection with unfinished headers open")
	}

	// A normal request still works.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: caOnly(t)}}
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "https://"+ln.Addr().String()+"/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+secretReader)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}
