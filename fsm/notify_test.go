package fsm

import (
	"bytes"
	"strings"
	"testing"
)

func TestNotifyCursor(t *testing.T) {
	h := newHarness(t)
	h.must(ServiceApply{Spec: paperSpec("dns")}) // 1
	h.must(ServiceApply{Spec: paperSpec("rr")})  // 2
	plain := snapshot(t, h.m)
	if bytes.Contains(plain, []byte(`"notify"`)) {
		t.Fatalf("a state without cursors snapshots a notify key: %s", plain)
	}

	h.must(NotifyCursor{Sink: "pager", Index: 2}) // 3
	if got := h.m.NotifyCursor("pager"); got != 2 {
		t.Fatalf("cursor %d, want 2", got)
	}
	if got := h.m.NotifyCursor("hook"); got != 0 {
		t.Fatalf("unrecorded sink's cursor %d, want 0", got)
	}
	// A cursor never moves back: an older leader's late record is a no-op.
	h.must(NotifyCursor{Sink: "pager", Index: 1}) // 4
	if got := h.m.NotifyCursor("pager"); got != 2 {
		t.Fatalf("cursor moved back to %d", got)
	}
	h.must(NotifyCursor{Sink: "hook", Index: 4})  // 5
	h.must(NotifyCursor{Sink: "pager", Index: 5}) // 6

	h.reject(NotifyCursor{Sink: "Bad Name", Index: 1}, ErrInvalid, "sink")
	h.reject(NotifyCursor{Sink: "pager", Index: 99}, ErrInvalid, "not before")
	h.reject(NotifyCursor{Sink: "", Index: 1}, ErrInvalid, "sink")

	// The cursors survive a snapshot and restore, byte for byte.
	s1 := snapshot(t, h.m)
	if !bytes.Contains(s1, []byte(`"notify":{"hook":4,"pager":5}`)) {
		t.Fatalf("snapshot lacks the cursors: %s", s1)
	}
	r := New()
	if err := r.Restore(s1); err != nil {
		t.Fatal(err)
	}
	if r.NotifyCursor("pager") != 5 || r.NotifyCursor("hook") != 4 {
		t.Fatalf("restored cursors pager=%d hook=%d", r.NotifyCursor("pager"), r.NotifyCursor("hook"))
	}
	if s2 := snapshot(t, r); !bytes.Equal(s1, s2) {
		t.Fatalf("round trip differs:\n%s\n%s", s1, s2)
	}

	// A snapshot with a cursor it cannot hold is refused, state unchanged.
	for _, bad := range []string{`"notify":{"pager":999}`, `"notify":{"Pager":1}`, `"notify":{"pager":0}`} {
		data := strings.Replace(string(s1), `"notify":{"hook":4,"pager":5}`, bad, 1)
		if err := r.Restore([]byte(data)); err == nil {
			t.Errorf("Restore accepted %s", bad)
		}
		if r.NotifyCursor("pager") != 5 {
			t.Fatalf("a refused restore changed the cursor")
		}
	}
}
