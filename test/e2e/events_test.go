package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/test/harness"
)

// The event stream of GET /v1/events resumes on another node after a
// leader change without a gap or a duplicate: events read from one node,
// then the leader stopped, commands committed by the new leader, and the
// rest read from another node after the last index seen, make exactly the
// list that node holds from the start. A stream followed on a surviving
// node across the change gets the new leader's commands too.
func TestEventsResumeAcrossALeaderChange(t *testing.T) {
	c := harness.New(t, 3)
	leader := c.Leader(20 * time.Second)
	var survivors []*harness.Node
	for _, n := range c.Nodes {
		if n != leader {
			survivors = append(survivors, n)
		}
	}
	a, b := survivors[0], survivors[1]
	harness.Apply(t, c.Client(leader, "operator"), spec("dns", 2))
	harness.Apply(t, c.Client(leader, "operator"), spec("web", 2))

	read := func(n *harness.Node, q api.EventsQuery) []api.Event {
		t.Helper()
		var out []api.Event
		if err := c.Client(n, "reader").Events(harness.Ctx(t), q, func(e api.Event) error {
			out = append(out, e)
			return nil
		}); err != nil {
			t.Fatalf("events from %s: %v", n.Name, err)
		}
		return out
	}
	var first []api.Event
	harness.WaitFor(t, 10*time.Second, "both applies in "+a.Name+"'s events", func() error {
		if first = read(a, api.EventsQuery{}); len(first) < 2 {
			return fmt.Errorf("%d events", len(first))
		}
		return nil
	})
	seen := first[len(first)-1].Index

	// A reader following a's stream across the change.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	followed := make(chan api.Event, 64)
	go func() {
		_ = c.Client(a, "reader").Events(ctx, api.EventsQuery{After: seen, HasAfter: true, Follow: true}, func(e api.Event) error {
			if e.Type != api.EventHeartbeat {
				followed <- e
			}
			return nil
		})
	}()

	c.Stop(leader)
	newLeader := c.Leader(20 * time.Second)
	harness.WaitFor(t, 20*time.Second, "a write through the new leader "+newLeader.Name, func() error {
		_, err := c.Client(newLeader, "operator").ApplyService(harness.Ctx(t), spec("mail", 2))
		return err
	})

	var rest, whole []api.Event
	harness.WaitFor(t, 10*time.Second, "the new leader's write in "+b.Name+"'s events", func() error {
		rest = read(b, api.EventsQuery{After: seen, HasAfter: true})
		whole = read(b, api.EventsQuery{})
		if !slices.ContainsFunc(rest, func(e api.Event) bool { return e.Service == "mail" }) {
			return errors.New("not yet")
		}
		return nil
	})
	joined := append(append([]api.Event{}, first...), rest...)
	if fmt.Sprint(indexList(joined)) != fmt.Sprint(indexList(whole)) {
		t.Fatalf("resumed on %s: %v + %v, but it holds %v", b.Name, indexList(first), indexList(rest), indexList(whole))
	}
	for i := 1; i < len(joined); i++ {
		if joined[i].Index <= joined[i-1].Index {
			t.Fatalf("indexes not increasing: %v", indexList(joined))
		}
		if i < len(first) && (joined[i].Type != whole[i].Type || joined[i].Service != whole[i].Service) {
			t.Fatalf("event %d differs between %s and %s: %+v vs %+v", joined[i].Index, a.Name, b.Name, joined[i], whole[i])
		}
	}
	select {
	case e := <-followed:
		for e.Service != "mail" {
			select {
			case e = <-followed:
			case <-time.After(10 * time.Second):
				t.Fatal("the followed stream did not get the new leader's write")
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the followed stream got nothing after the leader change")
	}
}

func indexList(es []api.Event) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Index
	}
	return out
}
