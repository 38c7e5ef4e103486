package apiserver

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/fsm"
)

// operateServer is a leader with service "dns" (win-bind active).
func operateServer(t *testing.T) (*testServer, *fakeBackend) {
	t.Helper()
	b := newFakeBackend("n1", true)
	if _, err := b.Apply(context.Background(), encodedApply(t, "dns")); err != nil {
		t.Fatal(err)
	}
	return startServer(t, "n1", b, nil), b
}

func applyCount(b *fakeBackend) int { a, _, _, _, _ := b.counts(); return a }

func TestManualSwitchAndReplicaActions(t *testing.T) {
	ts, b := operateServer(t)
	c := newTestClient(t, ts.URL, secretOperator, caOnly(t))
	ctx := context.Background()

	res, err := c.Switch(ctx, "dns", api.SwitchRequest{Reason: "drill"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Service != "dns" || res.From != "win-bind" || res.To != "lin-unbound" || res.Generation == 0 ||
		res.Index == 0 || res.Outcome != "switch" || !strings.Contains(res.Reason, "drill") {
		t.Fatalf("switch response %+v", res)
	}
	svc, _ := b.Service("dns")
	if a, _ := svc.Active(); a.Name != "lin-unbound" {
		t.Fatalf("active after switch = %q", a.Name)
	}

	// Quarantine the old active, then restore it (marks it clean).
	rr, err := c.ReplicaAction(ctx, "dns", "win-bind", "quarantine", "suspicious")
	if err != nil {
		t.Fatal(err)
	}
	if rr.Action != "quarantine" || rr.Replica != "win-bind" || rr.Result.Index == 0 {
		t.Fatalf("quarantine response %+v", rr)
	}
	// A switch to a quarantined replica is refused: 409 with the leader
	// loop's reason; the request is in the ledger, answered, and nothing
	// switched.
	before, _ := b.Service("dns")
	_, err = c.Switch(ctx, "dns", api.SwitchRequest{To: "win-bind"})
	var ae *api.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Code != fsm.CodeConflict ||
		!strings.Contains(ae.Message, "quarantined") {
		t.Fatalf("switch to quarantined: %v, want 409 conflict naming the cause", err)
	}
	if after, _ := b.Service("dns"); len(after.History) != len(before.History) {
		t.Fatal("refused switch request switched")
	}
	ledger := b.Alerts()
	if last := ledger[len(ledger)-1]; last.Kind != fsm.KindManual || last.Replica != "win-bind" ||
		!strings.HasPrefix(last.Outcome, "rejected: ") || last.Source != "ops" {
		t.Fatalf("ledger entry %+v", last)
	}
	if _, err := c.ReplicaAction(ctx, "dns", "win-bind", "restore", ""); err != nil {
		t.Fatal(err)
	}
	svc, _ = b.Service("dns")
	for _, rs := range svc.Replicas {
		if rs.Name == "win-bind" && (!rs.Clean || rs.Role == fsm.RoleQuarantined) {
			t.Fatalf("after restore: %+v", rs)
		}
	}
	// The fsm refuses quarantining the active replica: 409.
	if _, err := c.ReplicaAction(ctx, "dns", "lin-unbound", "quarantine", ""); !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Fatalf("quarantine active: %v, want 409", err)
	}

	// Unknown names: 404, nothing applied.
	applied := applyCount(b)
	for _, f := range []func() error{
		func() error { _, err := c.Switch(ctx, "nope", api.SwitchRequest{}); return err },
		func() error { _, err := c.Switch(ctx, "dns", api.SwitchRequest{To: "nope"}); return err },
		func() error { _, err := c.ReplicaAction(ctx, "nope", "win-bind", "release", ""); return err },
		func() error { _, err := c.ReplicaAction(ctx, "dns", "nope", "release", ""); return err },
		func() error { _, err := c.ReplicaAction(ctx, "dns", "win-bind", "explode", ""); return err },
	} {
		if err := f(); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
			t.Fatalf("got %v, want 404", err)
		}
	}
	if applyCount(b) != applied {
		t.Fatal("unknown names reached Apply")
	}
}

func TestOperateRefusedAndBadInput(t *testing.T) {
	ts, b := operateServer(t)
	before := applyCount(b)
	long := `{"reason":"` + strings.Repeat("x", api.MaxOperateReasonBytes+1) + `"}`
	cases := []struct {
		name, path string
		hdr        http.Header
		body       string
		status     int
	}{
		{"no token", "/v1/services/dns/switch", nil, `{}`, 401},
		{"reader", "/v1/services/dns/switch", bearer(secretReader), `{}`, 403},
		{"detector", "/v1/services/dns/switch", bearer(secretDetector), `{}`, 403},
		{"reader replica", "/v1/services/dns/replicas/win-bind/maintenance", bearer(secretReader), `{}`, 403},
		{"detector replica", "/v1/services/dns/replicas/win-bind/maintenance", bearer(secretDetector), `{}`, 403},
		{"unknown field", "/v1/services/dns/switch", bearer(secretOperator), `{"to":"lin-unbound","force":true}`, 400},
		{"wrong type", "/v1/services/dns/switch", bearer(secretOperator), `{"to":1}`, 400},
		{"malformed", "/v1/services/dns/switch", bearer(secretOperator), `{"to":`, 400},
		{"trailing", "/v1/services/dns/switch", bearer(secretOperator), `{} {}`, 400},
		{"reason too long", "/v1/services/dns/switch", bearer(secretOperator), long, 400},
		{"control char", "/v1/services/dns/switch", bearer(secretOperator), `{"reason":"a\u0007b"}`, 400},
		{"too large", "/v1/services/dns/switch", bearer(secretOperator), `{"reason":"` + strings.Repeat(" ", api.MaxOperateBodyBytes) + `"}`, 413},
		{"replica unknown field", "/v1/services/dns/replicas/win-bind/maintenance", bearer(secretOperator), `{"why":"x"}`, 400},
		{"replica reason too long", "/v1/services/dns/replicas/win-bind/maintenance", bearer(secretOperator), long, 400},
		{"replica not an object", "/v1/services/dns/replicas/win-bind/maintenance", bearer(secretOperator), `"x"`, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, apiErr, body := rawRequest(t, ts, caOnly(t), "POST", c.path, c.hdr, []byte(c.body))
			if status != c.status || apiErr == nil {
				t.Fatalf("got %d %s, want %d", status, body, c.status)
			}
		})
	}
	if applyCount(b) != before {
		t.Fatal("refused or bad requests reached Apply")
	}
	// An empty body is fine for both.
	if status, _, body := rawRequest(t, ts, caOnly(t), "POST", "/v1/services/dns/replicas/lin-unbound/maintenance", bearer(secretOperator), nil); status != 200 {
		t.Fatalf("maintenance with empty body: %d %s", status, body)
	}
}

func TestOperateForwardedFromFollower(t *testing.T) {
	lts, fts := leaderAndFollower(t)
	ctx := context.Background()
	c := newTestClient(t, fts.URL, secretOperator, caOnly(t))
	if _, err := c.ApplyService(ctx, validSpec("dns")); err != nil {
		t.Fatal(err)
	}
	res, err := c.Switch(ctx, "dns", api.SwitchRequest{To: "lin-unbound"})
	if err != nil {
		t.Fatal(err)
	}
	if res.To != "lin-unbound" {
		t.Fatalf("switch via follower: %+v", res)
	}
	if _, err := c.ReplicaAction(ctx, "dns", "win-bind", "maintenance", "patching"); err != nil {
		t.Fatal(err)
	}
	if a := applyCount(lts.b); a != 3 {
		t.Fatalf("leader apply calls = %d, want 3", a)
	}
	if a := applyCount(fts.b); a != 0 {
		t.Fatalf("follower apply calls = %d, want 0", a)
	}
	svc, _ := lts.b.Service("dns")
	for _, rs := range svc.Replicas {
		if rs.Name == "win-bind" && rs.Role != fsm.RoleMaintenance {
			t.Fatalf("win-bind on the leader: %+v", rs)
		}
	}
}

func TestHistoryRoute(t *testing.T) {
	ts, b := operateServer(t)
	c := newTestClient(t, ts.URL, secretOperator, caOnly(t))
	ctx := context.Background()
	res, err := c.Switch(ctx, "dns", api.SwitchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := fsm.Encode(3, fsm.SwitchDone{Service: "dns", Generation: res.Generation, SwitchMS: 40, TotalMS: 90, At: 1,
		OutageMS: ptr(0.0), ProbesSent: ptr(4), ProbesLost: ptr(0), ExposureMS: ptr(85.5)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Apply(ctx, cmd); err != nil {
		t.Fatal(err)
	}
	rc := newTestClient(t, ts.URL, secretReader, caOnly(t))
	for _, svc := range []string{"", "dns"} {
		h, err := rc.History(ctx, svc)
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Switches) != 1 || !h.Switches[0].Done || len(h.Aggregates) != 1 {
			t.Fatalf("history %+v", h)
		}
		if a := h.Aggregates[0]; a.Reason != fsm.ReasonManual || a.Pair != "vm-container" || a.Count != 1 || a.MeanTotalMS != 90 ||
			!reflect.DeepEqual(a.Outage, &api.MeasuredStat{Count: 1}) || !reflect.DeepEqual(a.Exposure, &api.MeasuredStat{Count: 1, MeanMS: 85.5, MaxMS: 85.5}) {
			t.Fatalf("aggregate %+v", a)
		}
		if r := h.Switches[0]; r.OutageMS == nil || *r.OutageMS != 0 || *r.ProbesSent != 4 || *r.ExposureMS != 85.5 {
			t.Fatalf("record %+v", r)
		}
	}
	var ae *api.APIError
	if _, err := rc.History(ctx, "nope"); !errors.As(err, &ae) || ae.Status != 404 {
		t.Fatalf("history of unknown service: %v", err)
	}
	if status, _, _ := rawRequest(t, ts, caOnly(t), "GET", "/v1/history?bogus=1", bearer(secretReader), nil); status != 400 {
		t.Fatalf("unknown query parameter: %d", status)
	}
}

func ptr[T any](v T) *T { return &v }

// measured sets a record's outage (with made-up probe counts) and exposure.
func measured(r fsm.SwitchRecord, outage, exposure *float64) fsm.SwitchRecord {
	if outage != nil {
		r.OutageMS, r.ProbesSent, r.ProbesLost = outage, ptr(10), ptr(5)
	}
	r.ExposureMS = exposure
	return r
}

func TestAggregate(t *testing.T) {
	rec := func(reason, from, to string, sw, total float64, done bool) fsm.SwitchRecord {
		return fsm.SwitchRecord{Reason: reason, FromPlatform: from, ToPlatform: to, SwitchMS: sw, TotalMS: total, Done: done}
	}
	cases := []struct {
		name string
		in   []fsm.SwitchRecord
		want []api.HistoryAggregate
	}{
		{"empty", nil, []api.HistoryAggregate{}},
		{"open only", []fsm.SwitchRecord{rec("dos", "vm", "vm", 1, 2, false)}, []api.HistoryAggregate{}},
		{"one pair", []fsm.SwitchRecord{rec("dos", "vm", "container", 10, 100, true), rec("dos", "vm", "container", 30, 300, true),
			rec("dos", "vm", "container", 1000, 1000, false)},
			[]api.HistoryAggregate{{Reason: "dos", Pair: "vm-container", Count: 2, MeanSwitchMS: 20, MaxSwitchMS: 30, MeanTotalMS: 200, MaxTotalMS: 300}}},
		{"sorted by reason then pair", []fsm.SwitchRecord{rec("manual", "vm", "vm", 5, 6, true), rec("exploit", "vm", "vm", 1, 2, true),
			rec("exploit", "container", "vm", 3, 4, true), rec("exploit", "vm", "container", 7, 8, true)},
			[]api.HistoryAggregate{
				{Reason: "exploit", Pair: "container-vm", Count: 1, MeanSwitchMS: 3, MaxSwitchMS: 3, MeanTotalMS: 4, MaxTotalMS: 4},
				{Reason: "exploit", Pair: "vm-container", Count: 1, MeanSwitchMS: 7, MaxSwitchMS: 7, MeanTotalMS: 8, MaxTotalMS: 8},
				{Reason: "exploit", Pair: "vm-vm", Count: 1, MeanSwitchMS: 1, MaxSwitchMS: 1, MeanTotalMS: 2, MaxTotalMS: 2},
				{Reason: "manual", Pair: "vm-vm", Count: 1, MeanSwitchMS: 5, MaxSwitchMS: 5, MeanTotalMS: 6, MaxTotalMS: 6},
			}},
		{"outage and exposure over the records that measured them", []fsm.SwitchRecord{
			measured(rec("dos", "vm", "vm", 10, 300, true), ptr(250.0), ptr(40.0)),
			measured(rec("dos", "vm", "vm", 20, 500, true), ptr(450.0), nil),
			rec("dos", "vm", "vm", 30, 700, true),
			measured(rec("dos", "vm", "vm", 30, 700, false), ptr(5000.0), ptr(5000.0))},
			[]api.HistoryAggregate{{Reason: "dos", Pair: "vm-vm", Count: 3, MeanSwitchMS: 20, MaxSwitchMS: 30, MeanTotalMS: 500, MaxTotalMS: 700,
				Outage:   &api.MeasuredStat{Count: 2, MeanMS: 350, MaxMS: 450},
				Exposure: &api.MeasuredStat{Count: 1, MeanMS: 40, MaxMS: 40}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := api.Aggregate(c.in)
			if len(got) != len(c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
			for i := range got {
				if !reflect.DeepEqual(got[i], c.want[i]) {
					t.Fatalf("row %d: got %+v, want %+v", i, got[i], c.want[i])
				}
			}
		})
	}
}

// TestShownFieldsAreMeasured: what the API and the status page show of a
// service carries measured values: no replica health (the state holds a
// constant there), the switch records' outage, probes lost and exposure
// when measured, and "-" on the page when not.
func TestShownFieldsAreMeasured(t *testing.T) {
	ts, b := operateServer(t)
	ctx := context.Background()
	apply := func(c fsm.Command) fsm.Result {
		t.Helper()
		cmd, err := fsm.Encode(3, c)
		if err != nil {
			t.Fatal(err)
		}
		res, err := b.Apply(ctx, cmd)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if svc, _ := b.Service("dns"); svc.Replicas[0].Health != fsm.HealthUnknown {
		t.Fatalf("the state machine's health is %q: this test assumes the constant", svc.Replicas[0].Health)
	}
	res := apply(fsm.Switch{Service: "dns", Reason: fsm.ReasonExploit, At: 1700000000000000000})
	apply(fsm.SwitchDone{Service: "dns", Generation: res.Generation, DetectionMS: 2, SwitchMS: 40, TotalMS: 42, At: 1700000000042000000,
		OutageMS: ptr(0.0), ProbesSent: ptr(9), ProbesLost: ptr(0), ExposureMS: ptr(37.25), Handover: fsm.HandoverAddress, OldHeldMS: ptr(1.5)})
	svc, _ := b.Service("dns")
	apply(fsm.ReplicaRole{Service: "dns", Replica: svc.History[0].From, Action: fsm.ActionRestored})
	apply(fsm.Switch{Service: "dns", Reason: fsm.ReasonDoS, At: 1700000001000000000})

	for _, path := range []string{"/v1/services/dns", "/v1/services"} {
		status, _, body := rawRequest(t, ts, caOnly(t), "GET", path, bearer(secretReader), nil)
		if status != 200 {
			t.Fatalf("%s: %d %s", path, status, body)
		}
		for _, bad := range []string{`"health"`, `"lost_queries"`} {
			if bytes.Contains(body, []byte(bad)) {
				t.Errorf("%s shows %s: %s", path, bad, body)
			}
		}
		for _, want := range []string{`"outage_ms":0`, `"probes_sent":9`, `"probes_lost":0`, `"exposure_ms":37.25`, `"handover":"address"`, `"old_held_ms":1.5`} {
			if !bytes.Contains(body, []byte(want)) {
				t.Errorf("%s lacks %s: %s", path, want, body)
			}
		}
		// The open DoS switch measured nothing yet, and shows nothing.
		if n := bytes.Count(body, []byte(`"exposure_ms"`)); n != 1 {
			t.Errorf("%s: %d records with an exposure, want 1", path, n)
		}
	}
	status, _, page := rawRequest(t, ts, caOnly(t), "GET", "/", bearer(secretReader), nil)
	if status != 200 {
		t.Fatalf("status page: %d", status)
	}
	for _, want := range []string{"<th>Outage</th>", "<th>Exposure</th>", "<th>Total</th>", "<td>0.0 ms</td>", "<td>0 of 9</td>", "<td>37.2 ms</td>", "<td>42.0 ms</td>",
		"<td>37.2 ms</td><td>address</td><td>1.5 ms</td><td>yes</td>",
		"<td>dos</td><td>make-before-break</td><td>-</td><td>-</td><td>-</td><td>-</td><td>-</td><td>-</td><td>no</td>"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("status page lacks %q:\n%s", want, page)
		}
	}
	for _, bad := range []string{"Health", "unknown", "Downtime"} {
		if bytes.Contains(page, []byte(bad)) {
			t.Errorf("status page shows %q:\n%s", bad, page)
		}
	}
}
