package apiserver

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestHTTPServerDropsSlowClients(t *testing.T) {
	as, err := NewServer(ServerConfig{Backend: newFakeBackend("n1", true), Tokens: testTokens(t)})
	if err != nil {
		t.Fatal(err)
	}
	hs := NewHTTPServer("127.0.0.1:0", as.Handler(), mustServerTLS(t, pkiDir, "n1", false), nil)
	if hs.ReadHeaderTimeout <= 0 || hs.ReadTimeout <= 0 || hs.WriteTimeout <= 0 || hs.IdleTimeout <= 0 {
		t.Fatalf("timeouts not set: %+v", hs)
	}
	hs.ReadHeaderTimeout = 200 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = hs.Close() })

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

// A client that sends its headers and then trickles the body (slowloris on
// the body) is cut off at the server's ReadTimeout, and its half-sent
// alert commits nothing.
func TestHTTPServerDropsSlowBodies(t *testing.T) {
	b := newFakeBackend("n1", true)
	if _, err := b.Apply(t.Context(), encodedApply(t, "dns")); err != nil {
		t.Fatal(err)
	}
	as, err := NewServer(ServerConfig{Backend: b, Tokens: testTokens(t)})
	if err != nil {
		t.Fatal(err)
	}
	hs := NewHTTPServer("127.0.0.1:0", as.Handler(), mustServerTLS(t, pkiDir, "n1", false), nil)
	hs.ReadHeaderTimeout, hs.ReadTimeout = time.Second, time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = hs.Close() })
	applied, _, _, _, _ := b.counts()

	conn, err := tls.Dial("tcp", ln.Addr().String(), caOnly(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := alertJSON("slow-1")
	head := "POST /v1/alerts HTTP/1.1\r\nHost: n1\r\nAuthorization: Bearer " + secretDetector +
		"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	if _, err := conn.Write(append([]byte(head), body[:len(body)/2]...)); err != nil {
		t.Fatal(err)
	}
	// Keep trickling one byte now and then, never finishing.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := len(body) / 2; i < len(body)-1; i++ {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if _, err := conn.Write(body[i : i+1]); err != nil {
				return
			}
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	var resp bytes.Buffer
	_, err = io.Copy(&resp, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("server kept a connection with an unfinished body open")
	}
	if strings.HasPrefix(resp.String(), "HTTP/1.1 2") {
		t.Fatalf("a half-sent alert was accepted: %q", resp.String())
	}
	if now, _, _, _, _ := b.counts(); now != applied || len(b.Alerts()) != 0 {
		t.Fatalf("a half-sent alert reached the backend (%d applies, %d alerts)", now-applied, len(b.Alerts()))
	}
}
