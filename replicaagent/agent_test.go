package replicaagent

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeNet is an Addresser in memory.
type fakeNet struct {
	mu                       sync.Mutex
	held                     bool
	claims, releases, frames int
	noCarrier                bool
}

func (f *fakeNet) Held() (bool, error) { f.mu.Lock(); defer f.mu.Unlock(); return f.held, nil }
func (f *fakeNet) Claim() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.claims++
	added := !f.held
	f.held = true
	return added, nil
}
func (f *fakeNet) Release() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.releases++
	removed := f.held
	f.held = false
	return removed, nil
}
func (f *fakeNet) Announce(n int, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frames += n
	return nil
}
func (f *fakeNet) Carrier() (bool, error) { f.mu.Lock(); defer f.mu.Unlock(); return !f.noCarrier, nil }
func (f *fakeNet) counts() (claims, releases, frames int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.claims, f.releases, f.frames
}

const testAddr = "10.53.0.53"

func newTestAgent(t *testing.T, statePath string, net *fakeNet, mod ...func(*Config)) *Agent {
	t.Helper()
	cfg := Config{Replica: "lin-bind", Interface: "svc0", Address: netip.MustParsePrefix(testAddr + "/32"),
		StatePath: statePath, Net: net, Announcements: 1,
		Caller: func(*http.Request) (string, bool) { return "n1", true }}
	for _, m := range mod {
		m(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// send posts body to path and returns the status and the decoded answer.
func send(t *testing.T, a *Agent, method, path, body string) (int, Result, *Error) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, req)
	var res Result
	var eb errorBody
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
			t.Fatalf("%s %s: answer %q: %v", method, path, rec.Body, err)
		}
		return rec.Code, res, nil
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error == nil {
		t.Fatalf("%s %s: error answer %q is not an error body", method, path, rec.Body)
	}
	return rec.Code, res, eb.Error
}

func cmd(term, gen uint64) string {
	b, _ := json.Marshal(Command{Replica: "lin-bind", Address: testAddr, Fence: Fence{Term: term, Generation: gen}})
	return string(b)
}

// TestFencing: the agent obeys a command only if its fence is not older
// than the highest it has seen; the same fence again is a repeat that
// changes nothing, and the same fence with the other action is refused.
// A newer term wins whatever the generation.
func TestFencing(t *testing.T) {
	net := &fakeNet{}
	a := newTestAgent(t, filepath.Join(t.TempDir(), "state.json"), net)
	steps := []struct {
		path          string
		term, gen     uint64
		status        int
		code          string
		held, changed bool
	}{
		{PathClaim, 1, 5, 200, "", true, true},
		{PathClaim, 1, 5, 200, "", true, false},                  // repeat: nothing changes
		{PathRelease, 1, 5, 409, CodeFenceConflict, true, false}, // same fence, other action
		{PathRelease, 1, 4, 409, CodeStaleFence, true, false},
		{PathRelease, 2, 3, 200, "", false, true}, // newer term, older generation
		{PathClaim, 1, 9, 409, CodeStaleFence, false, false},
		{PathRelease, 2, 3, 200, "", false, false},
		{PathClaim, 2, 4, 200, "", true, true},
	}
	for i, s := range steps {
		status, res, e := send(t, a, http.MethodPost, s.path, cmd(s.term, s.gen))
		if status != s.status {
			t.Fatalf("step %d (%s %d/%d): status %d, want %d (%v)", i, s.path, s.term, s.gen, status, s.status, e)
		}
		if e != nil && e.Code != s.code {
			t.Fatalf("step %d: code %s, want %s (%s)", i, e.Code, s.code, e.Message)
		}
		if held, _ := net.Held(); held != s.held {
			t.Fatalf("step %d: held %v, want %v", i, held, s.held)
		}
		if status == 200 && (res.Changed != s.changed || res.Held != s.held) {
			t.Fatalf("step %d: answer %+v, want changed %v held %v", i, res, s.changed, s.held)
		}
	}
	if c, r, _ := net.counts(); c != 3 || r != 2 {
		t.Errorf("claims %d releases %d reached the network, want 3 and 2 (refused commands must not)", c, r)
	}
}

// TestFenceSurvivesRestart: the highest fence is on disk before the
// agent acts, so an agent started again still refuses what is older.
func TestFenceSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	net := &fakeNet{}
	a := newTestAgent(t, path, net)
	if status, _, e := send(t, a, http.MethodPost, PathClaim, cmd(7, 2)); status != 200 {
		t.Fatalf("claim: %d %v", status, e)
	}
	b := newTestAgent(t, path, net)
	if status, _, e := send(t, b, http.MethodPost, PathRelease, cmd(6, 99)); status != http.StatusConflict || e.Code != CodeStaleFence {
		t.Fatalf("release with an older term after a restart: %d %v, want 409 stale_fence", status, e)
	}
	if held, _ := net.Held(); !held {
		t.Fatal("the refused release took the address")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, mode %v; want 0600", err, fi.Mode())
	}
}

// TestBadInputChangesNothing: every malformed or misdirected command is
// refused with a clear error, and neither the network nor the state file
// is touched.
func TestBadInputChangesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	net := &fakeNet{}
	a := newTestAgent(t, path, net)
	if status, _, _ := send(t, a, http.MethodPost, PathRelease, cmd(3, 3)); status != 200 {
		t.Fatal("first release failed")
	}
	before, _ := os.ReadFile(path)
	for _, tt := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"POST", PathClaim, `{"replica":"other","address":"10.53.0.53","term":4,"generation":1}`, 400, `reached the agent of "lin-bind"`},
		{"POST", PathClaim, `{"replica":"lin-bind","address":"10.53.0.54","term":4,"generation":1}`, 400, "not this agent's service address"},
		{"POST", PathClaim, `{"replica":"lin-bind","address":"x","term":4,"generation":1}`, 400, "not an IP address"},
		{"POST", PathClaim, `{"replica":"lin-bind","address":"10.53.0.53","term":0,"generation":1}`, 400, "term must be at least 1"},
		{"POST", PathClaim, `{"replica":"lin-bind","address":"10.53.0.53","term":4,"generation":1,"force":true}`, 400, "unknown field"},
		{"POST", PathClaim, cmd(4, 1) + cmd(4, 1), 400, "more than one JSON value"},
		{"POST", PathClaim, `{"replica":"lin-bind","term":-1}`, 400, "not a command"},
		{"POST", PathClaim, `{"replica":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, 413, "body over"},
		{"GET", PathClaim, "", 405, "use POST"},
		{"POST", PathState, "", 405, "use GET"},
		{"POST", "/v1/other", cmd(4, 1), 404, "no route"},
	} {
		status, _, e := send(t, a, tt.method, tt.path, tt.body)
		if status != tt.status || e == nil || !strings.Contains(e.Message, tt.want) {
			t.Errorf("%s %s %.60q: %d %v; want %d mentioning %q", tt.method, tt.path, tt.body, status, e, tt.status, tt.want)
		}
	}
	if c, r, f := net.counts(); c != 0 || r != 1 || f != 0 {
		t.Errorf("bad input reached the network: %d claims, %d releases, %d announcements", c, r-1, f)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Errorf("bad input changed the state file:\n%s\n%s", before, after)
	}
}

// TestCallerMustBeANode: without a node identity every route is refused.
func TestCallerMustBeANode(t *testing.T) {
	net := &fakeNet{}
	a := newTestAgent(t, filepath.Join(t.TempDir(), "state.json"), net, func(c *Config) {
		c.Caller = func(*http.Request) (string, bool) { return "", false }
	})
	for _, p := range []string{PathClaim, PathRelease, PathState} {
		method := http.MethodPost
		if p == PathState {
			method = http.MethodGet
		}
		if status, _, e := send(t, a, method, p, cmd(1, 1)); status != http.StatusForbidden || e.Code != CodeForbidden {
			t.Errorf("%s: %d %v, want 403", p, status, e)
		}
	}
	if c, r, _ := net.counts(); c+r != 0 {
		t.Error("a refused caller reached the network")
	}
}

// TestStateFileRefused: an agent does not start on a state file it cannot
// trust, rather than forget the fence in it.
func TestStateFileRefused(t *testing.T) {
	dir := t.TempDir()
	for name, tt := range map[string]struct{ content, want string }{
		"corrupt": {`{"version":1,`, "is not valid"},
		"other":   {`{"version":1,"replica":"win-bind","term":1,"generation":1,"action":"claim"}`, `belongs to replica "win-bind"`},
		"version": {`{"version":2,"replica":"lin-bind","term":1,"generation":1,"action":"claim"}`, "format version 2"},
		"action":  {`{"version":1,"replica":"lin-bind","term":1,"generation":1,"action":"steal"}`, `unknown action "steal"`},
		"unknown": {`{"version":1,"replica":"lin-bind","term":1,"generation":1,"action":"claim","x":1}`, "is not valid"},
	} {
		path := filepath.Join(dir, name+".json")
		if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := New(Config{Replica: "lin-bind", Interface: "svc0", Address: netip.MustParsePrefix(testAddr + "/32"), StatePath: path, Net: &fakeNet{}})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New = %v, want an error mentioning %q", name, err, tt.want)
		}
	}
}

// TestUnsavedFenceActsNot: a command whose fence cannot be written is
// refused before it reaches the network.
func TestUnsavedFenceActsNot(t *testing.T) {
	// The state directory removed under the agent (root writes into
	// read-only directories).
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	net := &fakeNet{}
	a := newTestAgent(t, filepath.Join(dir, "state.json"), net)
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	status, _, e := send(t, a, http.MethodPost, PathClaim, cmd(1, 1))
	if status != http.StatusInternalServerError || e.Code != CodeFailed || !strings.Contains(e.Message, "nothing changed") {
		t.Fatalf("claim with an unwritable state file: %d %v, want 500 failed", status, e)
	}
	if c, _, _ := net.counts(); c != 0 {
		t.Fatal("the claim reached the network although its fence was not saved")
	}
}

// TestReleaseStopsAnnouncements: a claim's later announcements stop when
// a newer command comes, so a released replica does not go on drawing
// the clients.
func TestReleaseStopsAnnouncements(t *testing.T) {
	net := &fakeNet{}
	a := newTestAgent(t, filepath.Join(t.TempDir(), "state.json"), net, func(c *Config) {
		c.Announcements, c.AnnounceGap = 10, 50*time.Millisecond
	})
	if status, _, _ := send(t, a, http.MethodPost, PathClaim, cmd(1, 1)); status != 200 {
		t.Fatal("claim failed")
	}
	if _, _, f := net.counts(); f != 1 {
		t.Fatalf("%d announcements before the claim was answered, want 1", f)
	}
	// Wait for a second announcement, so the background sender is seen to run.
	deadline := time.Now().Add(10 * time.Second)
	for _, _, f := net.counts(); f < 2; _, _, f = net.counts() {
		if time.Now().After(deadline) {
			t.Fatal("no announcement after the first")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if status, _, _ := send(t, a, http.MethodPost, PathRelease, cmd(1, 2)); status != 200 {
		t.Fatal("release failed")
	}
	_, _, at := net.counts()
	time.Sleep(300 * time.Millisecond) // 6 gaps: the sender would have sent more
	if _, _, f := net.counts(); f != at || f >= 10 {
		t.Fatalf("announcements went on after the release: %d then %d", at, f)
	}
}

// TestClaimWithoutCarrier: a claim on a service link without carrier (a
// disconnected NIC) is refused with no_carrier and changes nothing on the
// link; once the link is back, the same command is carried out.
func TestClaimWithoutCarrier(t *testing.T) {
	net := &fakeNet{noCarrier: true}
	a := newTestAgent(t, filepath.Join(t.TempDir(), "state.json"), net)
	status, _, e := send(t, a, http.MethodPost, PathClaim, cmd(3, 7))
	if status != http.StatusServiceUnavailable || e.Code != CodeNoCarrier {
		t.Fatalf("claim without carrier: %d %v, want 503 no_carrier", status, e)
	}
	if c, _, f := net.counts(); c != 0 || f != 0 {
		t.Fatal("a claim without carrier reached the link")
	}
	net.mu.Lock()
	net.noCarrier = false
	net.mu.Unlock()
	if status, res, e := send(t, a, http.MethodPost, PathClaim, cmd(3, 7)); status != 200 || !res.Held {
		t.Fatalf("the same claim with carrier: %d %+v %v", status, res, e)
	}
}
