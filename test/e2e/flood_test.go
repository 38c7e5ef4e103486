package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/apiserver"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/test/harness"
)

// floodCaller is one party of the flood and what its answers were.
type floodCaller struct {
	name     string
	node     *harness.Node
	token    string // role name in the harness's tokens; "" = no token
	requests int
	workers  int
	next     func(i int) api.AlertRequest

	created, duplicate, limited, refused, unavailable atomic.Int64
	other                                             atomic.Pointer[error]
}

func (fc *floodCaller) accepted() int64 { return fc.created.Load() + fc.duplicate.Load() }

func (fc *floodCaller) run(ctx context.Context, cl *api.Client) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < fc.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= fc.requests || ctx.Err() != nil {
					return
				}
				res, err := cl.PostAlert(ctx, fc.next(i))
				switch {
				case err == nil && res.Duplicate:
					fc.duplicate.Add(1)
				case err == nil:
					fc.created.Add(1)
				case errors.Is(err, api.ErrRateLimited):
					fc.limited.Add(1)
				case errors.Is(err, api.ErrUnauthorized), errors.Is(err, api.ErrForbidden):
					fc.refused.Add(1)
				case errors.Is(err, api.ErrNoLeader), errors.Is(err, api.ErrNotLeader),
					errors.Is(err, api.ErrUnavailable), errors.Is(err, api.ErrTimeout):
					// Leadership moved under load: the alert was not
					// acknowledged (a detector retries it). It may or may
					// not have been committed.
					fc.unavailable.Add(1)
				default:
					fc.other.CompareAndSwap(nil, &err)
				}
			}
		}()
	}
	wg.Wait()
}

// TestAlertFloodIsBounded floods a three-node cluster (vCenter simulator,
// real DNS servers behind the service address, production timings) with
// authenticated alerts from several callers at once and checks the bound
// that transport/doc.go ("Alert floods") states:
//
//   - per caller, alerts acknowledged (201 new + 200 duplicate) ≤
//     AlertBurst × (leader terms seen) + AlertRate × elapsed seconds; the
//     rest is 429 and commits nothing;
//   - thousands of copies of one alert id are one ledger record and at
//     most one switch (dedup);
//   - DoS switches ≤ policy.max_switches in policy.window (flap damping),
//     exploit switches ≤ one per distinct exploit alert on the active;
//   - Raft log entries added ≤ accepted + 3 × new alerts (a decision, with
//     up to two retries on a stale generation) + 4 per switch or
//     quarantine (SwitchDone, up to three "restored" attempts) + 4 per
//     term;
//   - a caller without a token commits nothing;
//   - every node keeps answering reads throughout, every acknowledged
//     alert is in the leader's ledger, and the service settles and answers
//     DNS afterwards.
func TestAlertFloodIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes, a vCenter simulator and a flood: not in -short")
	}
	l := newSwitchLab(t)
	l.settled("steady service before the flood")
	leader := l.c.Leader(15 * time.Second)

	// Damping tight enough to matter within the test: two switches per
	// ten minutes.
	const maxSwitches = 2
	svc := l.service()
	spec := svc.Spec
	spec.Policy.MaxSwitches, spec.Policy.Window = maxSwitches, fsm.Duration(10*time.Minute)
	body, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	harness.Apply(t, l.c.Client(leader, "operator"), body)
	l.c.SameState(10 * time.Second)
	victim := l.active().Name
	historyBefore := len(l.service().History)

	var others []*harness.Node
	for _, n := range l.c.Nodes {
		if n != leader {
			others = append(others, n)
		}
	}
	follower := others[0]
	activeOn := func(n *harness.Node) string {
		if s, ok := n.Agent.Cluster.Service(labService); ok {
			if a, ok := s.Active(); ok {
				return a.Name
			}
		}
		return victim
	}
	callers := []*floodCaller{
		// A detector gone mad through a follower: a fresh DoS alert on
		// whatever is active, as fast as it can.
		{name: "dos", node: follower, token: "detector", requests: 2000, workers: 8, next: func(i int) api.AlertRequest {
			return api.AlertRequest{ID: fmt.Sprintf("flood-dos-%d", i), Service: labService,
				Replica: activeOn(follower), Kind: fsm.KindDoS, Source: "flood-dos"}
		}},
		// A detector retrying one exploit alert forever, at the leader.
		{name: "exploit", node: leader, token: "operator", requests: 600, workers: 2, next: func(int) api.AlertRequest {
			return api.AlertRequest{ID: "flood-exploit-once", Service: labService, Replica: victim,
				Kind: fsm.KindExploit, Source: "flood-exploit"}
		}},
		// Someone without a token.
		{name: "anonymous", node: others[1], token: "", requests: 500, workers: 1, next: func(i int) api.AlertRequest {
			return api.AlertRequest{ID: fmt.Sprintf("flood-anon-%d", i), Service: labService,
				Replica: victim, Kind: fsm.KindExploit, Source: "flood-anon"}
		}},
	}

	term0 := leader.Agent.Cluster.Term()
	_, index0, err := leader.Agent.Cluster.State()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Readers: every node must keep answering during the flood.
	var reads sync.Map // node name → *atomic.Int64
	readCtx, stopReads := context.WithCancel(ctx)
	var readers sync.WaitGroup
	for _, n := range l.c.Nodes {
		cnt := new(atomic.Int64)
		reads.Store(n.Name, cnt)
		cl := l.c.Client(n, "reader")
		readers.Add(1)
		go func() {
			defer readers.Done()
			for readCtx.Err() == nil {
				rctx, rcancel := context.WithTimeout(readCtx, 10*time.Second)
				if _, err := cl.Status(rctx); err == nil {
					cnt.Add(1)
				}
				rcancel()
			}
		}()
	}

	start := time.Now()
	var wg sync.WaitGroup
	for _, fc := range callers {
		cl, err := api.NewClient(fc.node.Agent.APIURL(), l.c.Tokens[fc.token], l.c.ClientTLS())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		wg.Add(1)
		go func() { defer wg.Done(); fc.run(ctx, cl) }()
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopReads()
	readers.Wait()
	if ctx.Err() != nil {
		t.Fatalf("the flood did not finish within the test's deadline (%s)", elapsed)
	}

	term1 := l.c.Leader(15 * time.Second).Agent.Cluster.Term()
	terms := int64(term1-term0) + 1
	total := 0
	for _, fc := range callers {
		if p := fc.other.Load(); p != nil {
			t.Fatalf("%s: unexpected answer: %v", fc.name, *p)
		}
		n := fc.accepted() + fc.limited.Load() + fc.refused.Load() + fc.unavailable.Load()
		total += int(n)
		t.Logf("%s via %s: %d requests: %d new, %d duplicate, %d rate-limited, %d refused, %d unavailable",
			fc.name, fc.node.Name, n, fc.created.Load(), fc.duplicate.Load(), fc.limited.Load(), fc.refused.Load(), fc.unavailable.Load())
	}
	t.Logf("%d alert requests in %s (%.0f/s), %d leader term(s)", total, elapsed.Round(time.Millisecond),
		float64(total)/elapsed.Seconds(), terms)

	// The rate limit: one bucket per caller and leader term.
	bound := terms*int64(apiserver.DefaultAlertBurst) + int64(apiserver.DefaultAlertRate*elapsed.Seconds()) + 1
	var accepted, created int64
	for _, fc := range callers[:2] {
		if got := fc.accepted(); got > bound {
			t.Errorf("%s: %d alerts acknowledged in %s; the bound is %d", fc.name, got, elapsed, bound)
		}
		accepted += fc.accepted()
		created += fc.created.Load()
	}
	if callers[0].limited.Load() == 0 {
		t.Errorf("%s: %d requests and none rate-limited: the flood did not exceed the limit, the test proves nothing", callers[0].name, callers[0].requests)
	}
	anon := callers[2]
	if anon.accepted() != 0 || anon.refused.Load() != int64(anon.requests) {
		t.Errorf("anonymous: %d accepted, %d of %d refused", anon.accepted(), anon.refused.Load(), anon.requests)
	}

	// docs/design.md §4.3 and dedup: the ledger holds exactly the new alerts.
	ledger := map[string]int{}
	for _, a := range leader.Agent.Cluster.Alerts() {
		if strings.HasPrefix(a.Source, "flood-") {
			ledger[a.Source]++
		}
	}
	// Acknowledged means committed; an unanswered request may be either.
	if d := callers[0]; int64(ledger["flood-dos"]) < d.created.Load() || int64(ledger["flood-dos"]) > d.created.Load()+d.unavailable.Load() {
		t.Errorf("ledger holds %d DoS flood alerts; %d were acknowledged as new and %d not answered",
			ledger["flood-dos"], d.created.Load(), d.unavailable.Load())
	}
	if int64(ledger["flood-dos"]) > bound {
		t.Errorf("ledger holds %d DoS flood alerts; the bound is %d", ledger["flood-dos"], bound)
	}
	if ledger["flood-exploit"] != 1 || callers[1].created.Load() > 1 {
		t.Errorf("one exploit id sent %d times: %d ledger records, %d acknowledged as new",
			callers[1].requests, ledger["flood-exploit"], callers[1].created.Load())
	}
	if ledger["flood-anon"] != 0 {
		t.Errorf("%d alerts without a token in the ledger", ledger["flood-anon"])
	}

	// Damping and dedup bound the switches.
	after := l.settled("the service settles and answers after the flood")
	var dos, exploit int
	for _, rec := range after.History[historyBefore:] {
		switch rec.Reason {
		case fsm.ReasonDoS:
			dos++
		case fsm.ReasonExploit:
			exploit++
		default:
			t.Errorf("unexpected switch %+v", rec)
		}
	}
	t.Logf("switches during the flood: %d dos, %d exploit", dos, exploit)
	if dos > maxSwitches {
		t.Errorf("%d DoS switches; damping allows %d per window", dos, maxSwitches)
	}
	if exploit > 1 {
		t.Errorf("%d exploit switches from one exploit alert id", exploit)
	}
	if dos+exploit == 0 {
		t.Error("no switch at all: the flood's alerts were never decided on")
	}

	// The log grew by what the stated bound allows, not by the flood.
	_, index1, err := l.c.Leader(15 * time.Second).Agent.Cluster.State()
	if err != nil {
		t.Fatal(err)
	}
	actions := int64(dos + exploit + 1) // the switches, and one quarantine at most
	logBound := accepted + 3*created + 4*actions + 4*terms
	t.Logf("log grew by %d entries (bound %d)", index1-index0, logBound)
	if int64(index1-index0) > logBound {
		t.Errorf("log grew by %d entries; the bound is %d", index1-index0, logBound)
	}

	reads.Range(func(k, v any) bool {
		if v.(*atomic.Int64).Load() == 0 {
			t.Errorf("%s answered no read during the flood", k)
		}
		return true
	})
	l.checkInvariants()
}
