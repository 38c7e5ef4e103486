package apiserver

import (
	"bytes"
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/transport"
)

// TestAPIRefusesPeersWithoutClusterCA: the API takes node requests
// (/v1/internal/*, and forwarded requests, which a follower sends with its
// node certificate) only from a certificate of the cluster CA with the
// node marker. A node certificate of another CA does not even finish the
// handshake — with or without a token, directly or posing as a forwarding
// follower — and a cluster-CA certificate without the marker is no node.
// Nothing reaches the backend.
func TestAPIRefusesPeersWithoutClusterCA(t *testing.T) {
	b := newFakeBackend("n1", true)
	ts := startServer(t, "n1", b, nil)
	apply0, _, _, _, _ := b.counts()

	// A foreign node certificate, trusting our CA so only our side can refuse.
	foreign := mustClientTLS(t, transport.TLSFiles{CA: nodeFiles(pkiDir, "n2").CA, Cert: nodeFiles(foreignDir, "n2").Cert, Key: nodeFiles(foreignDir, "n2").Key})
	nonNode := caOnly(t)
	nonNode.Certificates = []tls.Certificate{issueNonNodeCert(t, "operator-alice")}

	send := func(cfg *tls.Config, method, path string, hdr http.Header, body []byte) (int, error) {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
		defer hc.CloseIdleConnections()
		req, err := http.NewRequest(method, ts.URL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, vs := range hdr {
			req.Header[k] = vs
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	cmd := encodedApply(t, "dns")
	for _, c := range []struct {
		name string
		hdr  http.Header
		path string
		body []byte
	}{
		{"internal apply", nil, "/v1/internal/apply", cmd},
		{"forwarded service apply", http.Header{api.HeaderForwarded: {"n2"}, "Authorization": {"Bearer " + secretOperator}}, "/v1/services", validSpec("dns")},
		{"alert with a detector token", bearer(secretDetector), "/v1/alerts", alertJSON("foreign-1")},
	} {
		t.Run("foreign CA/"+c.name, func(t *testing.T) {
			if status, err := send(foreign, "POST", c.path, c.hdr, c.body); err == nil {
				t.Fatalf("a certificate of another CA was accepted: status %d", status)
			}
		})
	}
	t.Run("cluster CA without node marker/internal apply", func(t *testing.T) {
		status, err := send(nonNode, "POST", "/v1/internal/apply", nil, cmd)
		if err != nil || status != http.StatusUnauthorized {
			t.Fatalf("status %d %v, want 401 (not a node, no token)", status, err)
		}
		status, err = send(nonNode, "POST", "/v1/internal/apply", bearer(secretOperator), cmd)
		if err != nil || status != http.StatusForbidden {
			t.Fatalf("with an operator token: status %d %v, want 403", status, err)
		}
	})
	if apply1, _, _, _, _ := b.counts(); apply1 != apply0 {
		t.Fatalf("%d applies reached the backend", apply1-apply0)
	}
	// The listener still serves a real node.
	if status, err := send(mustClientTLS(t, nodeFiles(pkiDir, "n2")), "POST", "/v1/internal/apply", nil, cmd); err != nil || status != http.StatusOK {
		t.Fatalf("a cluster node after the refusals: %d %v", status, err)
	}
}
