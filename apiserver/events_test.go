package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/fsm"
)

// collect reads GET /v1/events with q until it ends.
func collect(t *testing.T, c *api.Client, q api.EventsQuery) ([]api.Event, error) {
	t.Helper()
	var out []api.Event
	err := c.Events(context.Background(), q, func(e api.Event) error {
		out = append(out, e)
		return nil
	})
	return out, err
}

func indexes(es []api.Event) []uint64 {
	var out []uint64
	for _, e := range es {
		out = append(out, e.Index)
	}
	return out
}

// The event stream lists the commands applied, oldest first, each once:
// from the oldest held, after an index, the last N, of one service; a
// refused command is listed with its code.
func TestEventsList(t *testing.T) {
	b := newFakeBackend("n1", true)
	ctx := context.Background()
	for _, name := range []string{"dns", "web"} {
		if _, err := b.Apply(ctx, encodedApply(t, name)); err != nil {
			t.Fatal(err)
		}
	}
	stale, err := fsm.Encode(0, fsm.Switch{Service: "dns", To: "win-unbound", Reason: fsm.ReasonManual, ExpectGeneration: 99, At: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Apply(ctx, stale); !errors.Is(err, fsm.ErrStaleGeneration) {
		t.Fatalf("stale switch: %v", err)
	}
	ts := startServer(t, "n1", b, nil)
	c := newTestClient(t, ts.URL, secretReader, caOnly(t))

	all, err := collect(t, c, api.EventsQuery{})
	if err != nil || fmt.Sprint(indexes(all)) != "[1 2 3]" {
		t.Fatalf("all: %v %v", err, indexes(all))
	}
	if all[0].Type != string(fsm.CmdServiceApply) || all[0].Service != "dns" || len(all[0].Body) == 0 ||
		all[2].Type != string(fsm.CmdSwitch) || all[2].Refused != fsm.CodeStaleGeneration || all[2].Error == "" {
		t.Fatalf("events %+v", all)
	}
	if es, err := collect(t, c, api.EventsQuery{After: 1, HasAfter: true}); err != nil || fmt.Sprint(indexes(es)) != "[2 3]" {
		t.Fatalf("after 1: %v %v", err, indexes(es))
	}
	if es, err := collect(t, c, api.EventsQuery{Tail: 1}); err != nil || fmt.Sprint(indexes(es)) != "[3]" {
		t.Fatalf("tail 1: %v %v", err, indexes(es))
	}
	if es, err := collect(t, c, api.EventsQuery{Service: "web"}); err != nil || fmt.Sprint(indexes(es)) != "[2]" {
		t.Fatalf("service web: %v %v", err, indexes(es))
	}

	// Events no longer held (a snapshot replaced the state) are 410.
	b.events.Reset(3)
	var ae *api.APIError
	if _, err := collect(t, c, api.EventsQuery{After: 1, HasAfter: true}); !errors.As(err, &ae) ||
		ae.Status != http.StatusGone || ae.Code != api.CodeEventsGone {
		t.Fatalf("after 1 once gone: %v", err)
	}
}

// Bad parameters are refused before anything is streamed.
func TestEventsBadQuery(t *testing.T) {
	ts := startServer(t, "n1", newFakeBackend("n1", true), nil)
	for _, q := range []string{"?after=-1", "?after=x", "?tail=5000", "?tail=-2", "?after=1&tail=2",
		"?follow=maybe", "?service=", "?nope=1", "?after=1&after=2"} {
		status, ae, _ := rawRequest(t, ts, caOnly(t), "GET", "/v1/events"+q,
			http.Header{"Authorization": {"Bearer " + secretReader}}, nil)
		if status != http.StatusBadRequest || ae == nil || ae.Code != api.CodeInvalid {
			t.Errorf("%s: %d %+v", q, status, ae)
		}
	}
}

// A followed stream sends each command as it is applied, and a caller
// gets at most MaxStreamsPerCaller streams at once.
func TestEventsFollow(t *testing.T) {
	b := newFakeBackend("n1", true)
	ts := startServer(t, "n1", b, nil)
	c := newTestClient(t, ts.URL, secretReader, caOnly(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan api.Event, 16)
	done := make(chan error, MaxStreamsPerCaller)
	for range MaxStreamsPerCaller {
		go func() {
			done <- c.Events(ctx, api.EventsQuery{Follow: true}, func(e api.Event) error {
				if e.Type != api.EventHeartbeat {
					got <- e
				}
				return nil
			})
		}()
	}
	// The streams are open once one more is refused.
	var ae *api.APIError
	var last error
	waitForCond(t, "a fifth stream refused", func() bool {
		select {
		case err := <-done:
			t.Fatalf("a followed stream ended before the test closed it: %v", err)
		default:
		}
		_, last = collect(t, c, api.EventsQuery{})
		return errors.As(last, &ae) && ae.Code == api.CodeRateLimited
	}, func() string { return fmt.Sprintf("the fifth stream's last answer: %v", last) })
	if _, err := b.Apply(context.Background(), encodedApply(t, "dns")); err != nil {
		t.Fatal(err)
	}
	for i := range MaxStreamsPerCaller {
		select {
		case e := <-got:
			if e.Index != 1 || e.Service != "dns" {
				t.Fatalf("stream %d: %+v", i, e)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("stream %d: no event after an apply", i)
		}
	}
	cancel()
	for range MaxStreamsPerCaller {
		<-done
	}
	// The streams' slots are free again.
	waitForCond(t, "a stream once the others closed", func() bool {
		_, err := collect(t, c, api.EventsQuery{})
		return err == nil
	})
}

// waitForCond polls cond until it holds; the bound is generous (a loaded
// CI machine running every package's tests under -race at once), and
// the optional why says what was seen last when it runs out.
func waitForCond(t *testing.T, what string, cond func() bool, why ...func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			var seen []string
			for _, w := range why {
				seen = append(seen, w())
			}
			t.Fatalf("timed out waiting for %s %v", what, seen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FuzzEventsQuery sends arbitrary query strings to GET /v1/events: the
// answer is the event lines (200) or a 4xx, never a 5xx, and nothing is
// committed.
func FuzzEventsQuery(f *testing.F) {
	for _, q := range []string{"", "after=1", "tail=2&service=dns", "follow=false", "after=x", "tail=-1",
		"after=1&tail=1", "service=", "%zz", "after=18446744073709551615", "service=dns&service=dns"} {
		f.Add(q)
	}
	b := newFakeBackend("n1", true)
	if _, err := b.Apply(context.Background(), encodedApply(f, "dns")); err != nil {
		f.Fatal(err)
	}
	srv, err := NewServer(ServerConfig{Backend: b, Tokens: testTokens(f), NodeName: "n1"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(srv.Close)
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, query string) {
		before := b.Status().AppliedIndex
		// A followed stream ends with its request.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "https://n1/v1/events", nil)
		req.URL.RawQuery = query
		req.Header.Set("Authorization", "Bearer "+secretReader)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK && (rec.Code < 400 || rec.Code >= 500) {
			t.Fatalf("query %q: status %d: %s", query, rec.Code, rec.Body)
		}
		if after := b.Status().AppliedIndex; after != before {
			t.Fatalf("query %q moved the log %d -> %d", query, before, after)
		}
	})
}
