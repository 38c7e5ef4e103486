package e2e

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/pki"
	"github.com/ars-project/ars/test/harness"
	"github.com/ars-project/ars/test/testutil"
	"github.com/ars-project/ars/transport"
)

func spec(name string, nReplicas int) []byte {
	impls := []string{"bind9", "unbound", "knot-resolver", "pdns-recursor"}
	oses := []string{"windows", "windows", "linux", "linux"}
	var rs []string
	for i := 0; i < nReplicas; i++ {
		plat := "vm"
		extra := fmt.Sprintf(`"vm":"%s-vm%d"`, impls[i%4], i)
		if oses[i%4] == "linux" {
			plat, extra = "container", fmt.Sprintf(`"host":"local","image":"github.com/ars-project/ars/%s"`, impls[i%4])
		}
		rs = append(rs, fmt.Sprintf(`{"name":"r%d","impl":%q,"os":%q,"platform":%q,%s}`, i, impls[i%4], oses[i%4], plat, extra))
	}
	return []byte(fmt.Sprintf(`{"name":%q,"address":"192.0.2.53:53","replicas":[%s],"probe":{"query":"www.lab.internal.","type":"A","expect":"192.0.2.10"}}`,
		name, strings.Join(rs, ",")))
}

func TestServiceAppliedThroughFollowerAppearsOnAllNodes(t *testing.T) {
	c := harness.New(t, 3)
	c.Leader(10 * time.Second)
	f := c.Follower()
	ctx := harness.Ctx(t)
	res := harness.Apply(t, c.Client(f, "operator"), spec("dns", 4))
	if res.Index == 0 || res.Generation == 0 {
		t.Fatalf("result %+v", res)
	}
	c.SameState(5 * time.Second)
	for _, n := range c.Nodes {
		s, err := c.Client(n, "reader").Service(ctx, "dns")
		if err != nil {
			t.Fatalf("show on %s: %v", n.Name, err)
		}
		if len(s.Replicas) != 4 {
			t.Fatalf("%s: %d replicas", n.Name, len(s.Replicas))
		}
		active, ok := s.Active()
		if !ok || active.Name != "r0" {
			t.Fatalf("%s: active = %+v", n.Name, active)
		}
		standby, ok := s.Standby()
		if !ok || standby.Name == "r0" {
			t.Fatalf("%s: standby = %+v", n.Name, standby)
		}
	}
}

// TestBadInputChangesNothing sends every kind of bad request to a follower
// (so forwarding is on the path) and checks the error and that no node's
// state moved.
func TestBadInputChangesNothing(t *testing.T) {
	c := harness.New(t, 3)
	c.Leader(10 * time.Second)
	f := c.Follower()
	ctx := harness.Ctx(t)
	harness.Apply(t, c.Client(f, "operator"), spec("dns", 2))
	before, beforeIdx := c.SameState(5 * time.Second)

	cases := []struct {
		name   string
		role   string
		body   string
		status int
		want   error
	}{
		{"malformed json", "operator", `{"name": "dns",`, 400, fsm.ErrInvalid},
		{"unknown field", "operator", strings.Replace(string(spec("dns", 2)), `"name":"dns"`, `"name":"dns","colour":"red"`, 1), 400, fsm.ErrInvalid},
		{"bad value", "operator", strings.Replace(string(spec("dns", 2)), `"os":"windows"`, `"os":"plan9"`, 1), 400, fsm.ErrInvalid},
		{"two objects", "operator", string(spec("dns", 2)) + string(spec("dns", 2)), 400, fsm.ErrInvalid},
		{"missing token", "", string(spec("dns", 3)), 401, api.ErrUnauthorized},
		{"reader token", "reader", string(spec("dns", 3)), 403, api.ErrForbidden},
		{"detector token", "detector", string(spec("dns", 3)), 403, api.ErrForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl := c.Client(f, tc.role)
			_, err := cl.ApplyService(ctx, []byte(tc.body))
			var apiErr *api.APIError
			if !errors.As(err, &apiErr) || apiErr.Status != tc.status || !errors.Is(err, tc.want) {
				t.Fatalf("err = %v (%#v); want status %d, %v", err, apiErr, tc.status, tc.want)
			}
			if apiErr.Message == "" {
				t.Fatal("error without a message")
			}
		})
	}
	if _, err := c.Client(f, "reader").Service(ctx, "nope"); !errors.Is(err, fsm.ErrUnknownService) {
		t.Fatalf("show unknown service: %v", err)
	}
	after, afterIdx := c.SameState(5 * time.Second)
	if moved := committedBesidesRecords(t, c.Client(f, "reader"), beforeIdx, afterIdx); len(moved) > 0 ||
		testutil.StateWithoutIndex(t, before) != testutil.StateWithoutIndex(t, after) {
		t.Fatalf("state moved: index %d -> %d, entries %v", beforeIdx, afterIdx, moved)
	}
}

// committedBesidesRecords lists the entries after index from up to to
// that are not the cluster's own records (a member's status as the leader
// saw it may be committed at any time; nothing else may).
func committedBesidesRecords(t *testing.T, cl *api.Client, from, to uint64) []string {
	t.Helper()
	var moved []string
	err := cl.Events(harness.Ctx(t), api.EventsQuery{After: from, HasAfter: true}, func(e api.Event) error {
		switch fsm.CommandType(e.Type) {
		case fsm.CmdLeader, fsm.CmdMember, fsm.CmdVerdict:
		default:
			if e.Type != api.EventHeartbeat && e.Index <= to {
				moved = append(moved, fmt.Sprintf("%d %s", e.Index, e.Type))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return moved
}

func TestRaftAndInternalAPIRefusePeersWithoutNodeCertificate(t *testing.T) {
	c := harness.New(t, 3)
	leader := c.Leader(10 * time.Second)

	// Raft: TLS without a client certificate fails the handshake.
	raftAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(leader.Cfg.Ports.Raft))
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", raftAddr, c.ClientTLS())
	if err == nil {
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		// TLS 1.3 reports a missing client certificate on first read.
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("raft port accepted a peer without a client certificate")
	}

	// A node certificate of another cluster's CA (with our CA trusted, so
	// only the node can refuse): neither Raft nor the API lets it in.
	foreignDir := t.TempDir()
	if err := pki.GeneratePKI(pki.PKIRequest{Dir: foreignDir, Nodes: []pki.PKINode{{Name: leader.Name, IPs: []string{"127.0.0.1"}}}, ValidFor: time.Hour}); err != nil {
		t.Fatal(err)
	}
	foreign, err := transport.ClientTLS(transport.TLSFiles{CA: filepath.Join(c.Dir, pki.CACertFile),
		Cert: filepath.Join(foreignDir, pki.NodeCertFile(leader.Name)), Key: filepath.Join(foreignDir, pki.NodeKeyFile(leader.Name))}, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", raftAddr, foreign)
	if err == nil {
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		conn.Write([]byte{0})
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("raft port accepted a node certificate of another CA")
	}
	before, beforeIdx := c.SameState(5 * time.Second)
	foreignClient, err := api.NewClient(leader.Agent.APIURL(), "", foreign)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := foreignClient.InternalApply(harness.Ctx(t), mustEncode(t, fsm.ServiceDelete{Name: "x"})); err == nil {
		t.Fatal("the API applied a command from a node certificate of another CA")
	}
	if after, afterIdx := c.SameState(5 * time.Second); len(committedBesidesRecords(t, c.Client(leader, "reader"), beforeIdx, afterIdx)) > 0 ||
		testutil.StateWithoutIndex(t, before) != testutil.StateWithoutIndex(t, after) {
		t.Fatal("state moved after the foreign node's requests")
	}

	// Plain TCP garbage does not hurt the listener: the cluster still commits.
	if raw, err := net.DialTimeout("tcp", raftAddr, time.Second); err == nil {
		raw.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		raw.Close()
	}

	// The internal apply route wants a node certificate, not a token.
	cmd, _ := fsm.Encode(0, fsm.ServiceDelete{Name: "x"})
	_, err = c.Client(leader, "operator").InternalApply(harness.Ctx(t), cmd)
	if !errors.Is(err, api.ErrForbidden) && !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("internal apply with an operator token: %v", err)
	}
	harness.Apply(t, c.Client(c.Follower(), "operator"), spec("dns", 2))
}

func mustEncode(t *testing.T, c fsm.Command) []byte {
	t.Helper()
	b, err := fsm.Encode(0, c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLeaderOnlyRoutesAreForwarded(t *testing.T) {
	c := harness.New(t, 3)
	leader := c.Leader(10 * time.Second)
	f := c.Follower()
	ctx := harness.Ctx(t)
	if err := c.Client(f, "operator").TransferLeader(ctx, f.Name); err != nil {
		t.Fatalf("transfer through follower: %v", err)
	}
	if now := c.Leader(10 * time.Second); now.Name != f.Name {
		t.Fatalf("leader is %s, asked for %s (was %s)", now.Name, f.Name, leader.Name)
	}
	if err := c.Client(leader, "reader").TransferLeader(ctx, ""); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("reader transfer: %v", err)
	}
}

func TestSnapshotSaveAndRestore(t *testing.T) {
	c := harness.New(t, 3)
	c.Leader(10 * time.Second)
	ctx := harness.Ctx(t)
	op := c.Client(c.Follower(), "operator")
	harness.Apply(t, op, spec("keep", 2))
	var snap bytes.Buffer
	if err := op.SnapshotSave(ctx, &snap); err != nil {
		t.Fatalf("save: %v", err)
	}
	harness.Apply(t, op, spec("later", 2))
	withLater, idx := c.SameState(5 * time.Second)

	// A damaged file is refused and changes nothing.
	bad := append([]byte(nil), snap.Bytes()...)
	bad[len(bad)-2] ^= 0xff
	if err := op.SnapshotRestore(ctx, bytes.NewReader(bad)); err == nil {
		t.Fatal("restore of a damaged snapshot succeeded")
	}
	if now, nowIdx := c.SameState(5 * time.Second); len(committedBesidesRecords(t, op, idx, nowIdx)) > 0 ||
		testutil.StateWithoutIndex(t, now) != testutil.StateWithoutIndex(t, withLater) {
		t.Fatalf("failed restore changed the state: index %d -> %d", idx, nowIdx)
	}

	if err := op.SnapshotRestore(ctx, bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatalf("restore: %v", err)
	}
	c.SameState(10 * time.Second)
	for _, n := range c.Nodes {
		if _, ok := n.Agent.Cluster.Service("keep"); !ok {
			t.Fatalf("%s lost 'keep'", n.Name)
		}
		if _, ok := n.Agent.Cluster.Service("later"); ok {
			t.Fatalf("%s still has 'later' after restore", n.Name)
		}
	}
}

func TestMetricsAndStatusPage(t *testing.T) {
	c := harness.New(t, 1)
	n := c.Leader(10 * time.Second)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.ClientTLS()}, Timeout: 5 * time.Second}
	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest("GET", n.Agent.APIURL()+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	harness.Apply(t, c.Client(n, "operator"), spec("dns", 2))
	if code, _ := get("/metrics", ""); code != 401 {
		t.Fatalf("/metrics without token: %d", code)
	}
	code, body := get("/metrics", c.Tokens["reader"])
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, m := range []string{`ars_raft_state{state="leader"} 1`, "ars_raft_leadership_acquired_total 1", `ars_members{status="alive"} 1`, "ars_raft_term"} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
	// The service's apply, and the leader's own record.
	if !regexp.MustCompile(`ars_apply_duration_seconds_count\{path="local"\} [1-9]`).MatchString(body) {
		t.Errorf("/metrics counts no local apply")
	}
	code, body = get("/", c.Tokens["reader"])
	if code != 200 || !strings.Contains(body, n.Name) {
		t.Fatalf("status page: %d %q", code, body)
	}
}
