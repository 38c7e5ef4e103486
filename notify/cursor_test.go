package notify

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/fsm"
)

// hookConfig is a webhook sink named "hook" posting to rcv, recording its
// cursor every interval.
func hookConfig(t *testing.T, src *fakeSource, rcv *receiver, interval time.Duration) Config {
	return Config{Source: src, Metrics: NewMetrics(nil), CursorInterval: interval, Sinks: []SinkConfig{{Name: "hook",
		Webhook: &WebhookConfig{URL: rcv.srv.URL, SecretFile: writeSecret(t, "k"), Backoff: time.Millisecond}}}}
}

// received waits until rcv got every id in want (in any number).
func received(t *testing.T, rcv *receiver, want []uint64) {
	t.Helper()
	eventually(t, func() error {
		got := rcv.got()
		for _, id := range want {
			if !slices.Contains(got, id) {
				return fmt.Errorf("event %d not received; got %v", id, got)
			}
		}
		return nil
	})
}

// cursorAt waits until the committed cursor of "hook" is at least index.
func cursorAt(t *testing.T, src *fakeSource, index uint64) {
	t.Helper()
	eventually(t, func() error {
		if c := src.NotifyCursor("hook"); c < index {
			return fmt.Errorf("cursor %d, want %d", c, index)
		}
		return nil
	})
}

func TestCursorNotResentAfterLeaderChange(t *testing.T) {
	src := newFakeSource()
	src.service(t)
	rcv := newReceiver(t, "k")

	first := start(t, hookConfig(t, src, rcv, 10*time.Millisecond))
	a := src.attack(t, 1)
	received(t, rcv, a)
	cursorAt(t, src, a[len(a)-1])
	first.stop()

	// The cursor commands are events too, but never notifications.
	for _, id := range rcv.got() {
		if rcv.typeOf(id) == string(fsm.CmdNotifyCursor) {
			t.Errorf("cursor event %d delivered", id)
		}
	}
	before := len(rcv.got())

	// The next leader starts after the recorded cursor.
	start(t, hookConfig(t, src, rcv, 10*time.Millisecond))
	b := src.attack(t, 2)
	received(t, rcv, b)
	got := rcv.got()
	if !slices.Equal(got[before:], b) {
		t.Errorf("second leader delivered %v, want exactly %v (all before the cursor already delivered)", got[before:], b)
	}
}

// TestAttackExactlyOnceAfterDedup runs an attack through leader changes,
// some of them before the leader recorded how far it got: every event id
// reaches the receiver at least once, and, deduplicated on the id, exactly
// the committed events after the start arrive, once each.
func TestAttackExactlyOnceAfterDedup(t *testing.T) {
	src := newFakeSource()
	want := []uint64{src.service(t)}
	rcv := newReceiver(t, "k")
	n := 0
	for leader := range 6 {
		// Every other leader records its cursor; the others lose leadership
		// before their first record, so the next resends what they sent.
		interval := 10 * time.Millisecond
		if leader%2 == 1 {
			interval = time.Hour
		}
		r := start(t, hookConfig(t, src, rcv, interval))
		var got []uint64
		for range 3 {
			n++
			got = append(got, src.attack(t, n)...)
		}
		want = append(want, got...)
		received(t, rcv, got)
		if leader%2 == 0 {
			cursorAt(t, src, got[len(got)-1])
		}
		r.stop()
	}
	ids := rcv.got()
	seen := map[uint64]int{}
	for _, id := range ids {
		seen[id]++
	}
	var dedup []uint64
	for id := range seen {
		dedup = append(dedup, id)
	}
	slices.Sort(dedup)
	if !slices.Equal(dedup, want) {
		t.Fatalf("after dedup the receiver holds %v, want %v", dedup, want)
	}
	// The leaders that did not record made the next one resend: delivery
	// is at least once, not exactly once, before deduplication.
	if len(ids) == len(want) {
		t.Errorf("no event was resent after a leader change without a recorded cursor: %v", ids)
	}
	for id, k := range seen {
		if k > 2 {
			t.Errorf("event %d received %d times; a leader resends at most what one leader did not record", id, k)
		}
	}
}

func TestCursorNotRecordedBelowLevel3(t *testing.T) {
	src := newFakeSource()
	src.level = 2
	src.service(t)
	rcv := newReceiver(t, "k")
	var logs syncBuffer
	cfg := hookConfig(t, src, rcv, 5*time.Millisecond)
	cfg.Logger = testLogger(&logs)
	start(t, cfg)
	a := src.attack(t, 1)
	received(t, rcv, a)
	b := src.attack(t, 2)
	received(t, rcv, b)
	// The leader tries again at every interval, and says so only once.
	eventually(t, func() error {
		src.mu.Lock()
		defer src.mu.Unlock()
		if src.refused < 5 {
			return fmt.Errorf("%d cursors refused, waiting for 5", src.refused)
		}
		return nil
	})
	if k := strings.Count(logs.String(), "below log format level 3"); k != 1 {
		t.Errorf("warning logged %d times, want once", k)
	}
	if c := src.NotifyCursor("hook"); c != 0 {
		t.Errorf("cursor %d recorded on a cluster below level 3", c)
	}
}
