package apiserver

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/pki"
)

// leaderAndFollower starts a leader n1 and a follower n2 that knows it.
func leaderAndFollower(t *testing.T) (lts, fts *testServer) {
	t.Helper()
	lts = startServer(t, "n1", newFakeBackend("n1", true), nil)
	fb := newFakeBackend("n2", false)
	fb.leaderFn = func() (string, string, bool) { return "n1", lts.hostPort(), true }
	fts = startServer(t, "n2", fb, func(c *ServerConfig) {
		c.Tokens = testTokens(t, pki.Token{Name: "follower-only", Role: pki.RoleOperator, Secret: secretOther})
	})
	return lts, fts
}

func TestForwardLeaderOnlyRoutes(t *testing.T) {
	lts, fts := leaderAndFollower(t)
	ctx := context.Background()
	c := newTestClient(t, fts.URL, secretOperator, caOnly(t))

	res, err := c.ApplyService(ctx, validSpec("dns"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Service != "dns" {
		t.Fatalf("result %+v", res)
	}
	if a, _, _, _, _ := lts.b.counts(); a != 1 {
		t.Fatalf("leader apply calls = %d, want 1", a)
	}
	if a, _, _, _, _ := fts.b.counts(); a != 0 {
		t.Fatalf("follower apply calls = %d, want 0", a)
	}
	if !slices.Contains(lts.forwardedHeaders(), "n2") {
		t.Fatalf("leader never saw %s: n2 (saw %q)", api.HeaderForwarded, lts.forwardedHeaders())
	}

	// Local routes are answered by the follower itself.
	st, err := c.Status(ctx)
	if err != nil || st.Node != "n2" {
		t.Fatalf("status via follower: %+v %v", st, err)
	}

	if err := c.TransferLeader(ctx, "n3"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemovePeer(ctx, "n4"); err != nil {
		t.Fatal(err)
	}
	lts.b.mu.Lock()
	transfer, removed := lts.b.transfer, lts.b.removed
	lts.b.mu.Unlock()
	if !slices.Equal(transfer, []string{"n3"}) || !slices.Equal(removed, []string{"n4"}) {
		t.Fatalf("leader transfer=%v removed=%v", transfer, removed)
	}

	var buf bytes.Buffer
	if err := c.SnapshotSave(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "snapshot-bytes-n1" {
		t.Fatalf("snapshot via follower = %q, want the leader's", buf.String())
	}
	if err := c.SnapshotRestore(ctx, bytes.NewReader([]byte("restore-me"))); err != nil {
		t.Fatal(err)
	}
	lts.b.mu.Lock()
	restored := string(lts.b.restored)
	lts.b.mu.Unlock()
	if restored != "restore-me" {
		t.Fatalf("leader restored %q", restored)
	}

	// A consistent read is served by the leader after a barrier.
	if _, err := newTestClient(t, fts.URL+"/", secretReader, caOnly(t)).Services(ctx); err != nil {
		t.Fatal(err)
	}
	status, _, body := rawRequest(t, fts, caOnly(t), "GET", "/v1/services/dns?consistent", bearer(secretReader), nil)
	if status != 200 || !bytes.Contains(body, []byte(`"win-bind"`)) {
		t.Fatalf("consistent read via follower: %d %s", status, body)
	}
	lts.b.mu.Lock()
	barriers := lts.b.barrierN
	lts.b.mu.Unlock()
	if barriers != 1 {
		t.Fatalf("leader barriers = %d, want 1", barriers)
	}

	// Internal apply from another node, via the follower: the follower
	// forwards with its own node certificate.
	nc := newTestClient(t, fts.URL, "", mustClientTLS(t, nodeFiles(pkiDir, "n3")))
	if _, err := nc.InternalApply(ctx, encodedApply(t, "dns2")); err != nil {
		t.Fatal(err)
	}
	if _, ok := lts.b.Service("dns2"); !ok {
		t.Fatal("internal apply via follower did not reach the leader")
	}
}

func TestForwardAuthChecks(t *testing.T) {
	lts, fts := leaderAndFollower(t)
	ctx := context.Background()
	before := len(lts.forwardedHeaders())

	// A reader is refused by the follower already; nothing is forwarded.
	_, err := newTestClient(t, fts.URL, secretReader, caOnly(t)).ApplyService(ctx, validSpec("dns"))
	if !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("reader apply via follower: %v", err)
	}
	if n := len(lts.forwardedHeaders()); n != before {
		t.Fatalf("forbidden request was forwarded")
	}
	// A token the follower knows but the leader does not: the leader
	// re-checks and refuses.
	_, err = newTestClient(t, fts.URL, secretOther, caOnly(t)).ApplyService(ctx, validSpec("dns"))
	if !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("follower-only token at leader: %v", err)
	}
	if a, _, _, _, _ := lts.b.counts(); a != 0 {
		t.Fatal("leader applied a request with a token it does not know")
	}
	// The follower's own forwarding identity (node cert) does not lend
	// node rights to a token caller on the leader.
	status, apiErr, _ := rawRequest(t, fts, caOnly(t), "POST", "/v1/internal/apply", bearer(secretOperator), encodedApply(t, "x"))
	if status != 403 {
		t.Fatalf("operator on internal route via follower: %d %+v", status, apiErr)
	}
}

func TestForwardNeverTakesASecondHop(t *testing.T) {
	lts := startServer(t, "n1", newFakeBackend("n1", true), nil)
	b3 := newFakeBackend("n3", false)
	b3.leaderFn = func() (string, string, bool) { return "n1", lts.hostPort(), true }
	f3 := startServer(t, "n3", b3, nil)
	b2 := newFakeBackend("n2", false)
	// n2 has a stale view: it thinks n3 leads.
	b2.leaderFn = func() (string, string, bool) { return "n3", f3.hostPort(), true }
	f2 := startServer(t, "n2", b2, nil)

	_, err := newTestClient(t, f2.URL, secretOperator, caOnly(t)).ApplyService(context.Background(), validSpec("dns"))
	if !errors.Is(err, api.ErrNotLeader) {
		t.Fatalf("two-hop request: %v, want not_leader", err)
	}
	var ae *api.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
		t.Fatalf("error %v, want 503", err)
	}
	if !slices.Contains(f3.forwardedHeaders(), "n2") {
		t.Fatalf("n3 did not receive the forwarded request")
	}
	if len(lts.forwardedHeaders()) != 0 {
		t.Fatalf("request took a second hop to the leader: %q", lts.forwardedHeaders())
	}
	for _, b := range []*fakeBackend{lts.b, b2, b3} {
		if a, _, _, _, _ := b.counts(); a != 0 {
			t.Fatalf("%s applied the command", b.name)
		}
	}
}

func TestForwardNoLeader(t *testing.T) {
	fb := newFakeBackend("n2", false)
	var polls atomic.Int64
	fb.leaderFn = func() (string, string, bool) { polls.Add(1); return "", "", false }
	fts := startServer(t, "n2", fb, func(c *ServerConfig) { c.LeaderWait = 100 * time.Millisecond })
	_, err := newTestClient(t, fts.URL, secretOperator, caOnly(t)).ApplyService(context.Background(), validSpec("dns"))
	if !errors.Is(err, api.ErrNoLeader) {
		t.Fatalf("apply without a leader: %v", err)
	}
	if polls.Load() < 2 {
		t.Fatalf("LeaderAPI polled %d times; the follower did not wait", polls.Load())
	}
	// The follower itself claiming to be the leader in LeaderAPI (stale)
	// while not being leader is not a leader either.
	fb.mu.Lock()
	fb.leaderFn = func() (string, string, bool) { return "n2", fts.hostPort(), true }
	fb.mu.Unlock()
	_, err = newTestClient(t, fts.URL, secretOperator, caOnly(t)).ApplyService(context.Background(), validSpec("dns"))
	if !errors.Is(err, api.ErrNoLeader) {
		t.Fatalf("self as stale leader: %v", err)
	}
}

func TestForwardWaitsForLeader(t *testing.T) {
	lts := startServer(t, "n1", newFakeBackend("n1", true), nil)
	fb := newFakeBackend("n2", false)
	var polls atomic.Int64
	fb.leaderFn = func() (string, string, bool) {
		if polls.Add(1) < 4 {
			return "", "", false
		}
		return "n1", lts.hostPort(), true
	}
	fts := startServer(t, "n2", fb, func(c *ServerConfig) { c.LeaderWait = 10 * time.Second })
	if _, err := newTestClient(t, fts.URL, secretOperator, caOnly(t)).ApplyService(context.Background(), validSpec("dns")); err != nil {
		t.Fatalf("apply once a leader appears: %v", err)
	}
	if a, _, _, _, _ := lts.b.counts(); a != 1 {
		t.Fatalf("leader apply calls = %d", a)
	}
}

func TestForwardBecomesLeaderWhileWaiting(t *testing.T) {
	fb := newFakeBackend("n2", false)
	var polls atomic.Int64
	fb.leaderFn = func() (string, string, bool) {
		if polls.Add(1) == 3 {
			fb.setLeader(true)
		}
		return "", "", false
	}
	fts := startServer(t, "n2", fb, func(c *ServerConfig) { c.LeaderWait = 10 * time.Second })
	if _, err := newTestClient(t, fts.URL, secretOperator, caOnly(t)).ApplyService(context.Background(), validSpec("dns")); err != nil {
		t.Fatal(err)
	}
	if a, _, _, _, _ := fb.counts(); a != 1 {
		t.Fatalf("new leader applied %d times, want 1", a)
	}
}

func TestForwardLeaderUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	fb := newFakeBackend("n2", false)
	fb.leaderFn = func() (string, string, bool) { return "n1", dead, true }
	fts := startServer(t, "n2", fb, nil)
	_, err = newTestClient(t, fts.URL, secretOperator, caOnly(t)).ApplyService(context.Background(), validSpec("dns"))
	var ae *api.APIError
	if !errors.As(err, &ae) || ae.Status != 503 || !errors.Is(err, api.ErrNoLeader) {
		t.Fatalf("unreachable leader: %v", err)
	}
}

func TestForwardRequiresLeaderNodeCert(t *testing.T) {
	// The "leader" presents a certificate from another CA: the follower
	// must not hand it the caller's token.
	impostor := startServerTLS(t, "n1", newFakeBackend("n1", true), nil, mustServerTLS(t, foreignDir, "n1", false))
	fb := newFakeBackend("n2", false)
	fb.leaderFn = func() (string, string, bool) { return "n1", impostor.hostPort(), true }
	fts := startServer(t, "n2", fb, nil)
	_, err := newTestClient(t, fts.URL, secretOperator, caOnly(t)).ApplyService(context.Background(), validSpec("dns"))
	if !errors.Is(err, api.ErrNoLeader) {
		t.Fatalf("forward to impostor: %v", err)
	}
	if len(impostor.forwardedHeaders()) != 0 {
		t.Fatal("request (with token) reached a server with a foreign certificate")
	}
}

func TestSnapshotFailureMidStreamIsNotSuccess(t *testing.T) {
	lts, fts := leaderAndFollower(t)
	lts.b.mu.Lock()
	lts.b.snapshot = bytes.Repeat([]byte("x"), 1<<20)
	lts.b.snapErr = errors.New("disk read failed")
	lts.b.snapAfter = 512 << 10
	lts.b.mu.Unlock()
	for _, ts := range []*testServer{lts, fts} {
		var buf bytes.Buffer
		err := newTestClient(t, ts.URL, secretOperator, caOnly(t)).SnapshotSave(context.Background(), &buf)
		if err == nil {
			t.Fatalf("snapshot via %s: truncated snapshot (%d bytes) reported as success", ts.b.name, buf.Len())
		}
	}
	// Failing before any byte is a proper API error.
	lts.b.mu.Lock()
	lts.b.snapAfter = 0
	lts.b.mu.Unlock()
	err := newTestClient(t, lts.URL, secretOperator, caOnly(t)).SnapshotSave(context.Background(), &bytes.Buffer{})
	var ae *api.APIError
	if !errors.As(err, &ae) || ae.Status != 500 {
		t.Fatalf("snapshot failing upfront: %v", err)
	}
}
