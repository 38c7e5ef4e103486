// Package testutil holds small helpers shared by the tests of several
// packages. It imports only the standard library, so any package's tests
// may use it.
package testutil

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// SyncBuffer is an io.Writer safe for concurrent writers (a log sink that a
// test reads while the code under test still logs).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// StateWithoutIndex is a node's state (the JSON of its State or snapshot)
// without the applied index and term, which move on with entries that
// change nothing else (the leader's records). It fails t on state that is
// not such JSON.
func StateWithoutIndex(t testing.TB, state []byte) string {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(state, &v); err != nil {
		t.Fatalf("state %s: %v", state, err)
	}
	st, ok := v["state"].(map[string]any)
	if !ok {
		t.Fatalf("state %s: no state object", state)
	}
	delete(st, "index")
	delete(st, "term")
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// IP runs ip(8) with args and returns its output; a failure fails the
// test with the command and what it printed.
func IP(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
