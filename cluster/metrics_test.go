package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ars-project/ars/fsm"
)

// serviceGauges is the part of the node's collector that reports the
// replicated service state, at a fixed time.
type serviceGauges struct {
	m   *metrics
	now time.Time
}

func (g serviceGauges) Describe(ch chan<- *prometheus.Desc) { ch <- g.m.replicas; ch <- g.m.switchOpen }
func (g serviceGauges) Collect(ch chan<- prometheus.Metric) { g.m.collectServices(ch, g.now) }

// The service gauges (what the shipped alert rules ask: a service
// without a standby, a switch that does not verify) follow the state: the
// replicas by role, every role reported, and an open switch's age.
func TestServiceGauges(t *testing.T) {
	h := newHarness(t, "n1")
	h.startCluster("n1")
	n := h.waitLeader(10 * time.Second)
	res := applyOK(t, n, serviceCmd(t, "dns", "a", "b", "c"))
	opened := time.Now().Add(-time.Minute)
	sw, err := fsm.Encode(0, fsm.Switch{Service: "dns", From: "a", To: "b", Reason: fsm.ReasonManual,
		ExpectGeneration: res.Generation, At: opened.UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	applyOK(t, n, sw)
	const head = `# HELP ars_service_replicas Replicas of each service by role, as this node's copy of the replicated state has them.
# TYPE ars_service_replicas gauge
`
	want := head + `ars_service_replicas{role="active",service="dns"} 1
ars_service_replicas{role="maintenance",service="dns"} 0
ars_service_replicas{role="quarantined",service="dns"} 0
ars_service_replicas{role="recovering",service="dns"} 0
ars_service_replicas{role="standby",service="dns"} 1
ars_service_replicas{role="suspended",service="dns"} 1
# HELP ars_service_switch_open_seconds Seconds since the service's open switch was committed (0: no switch open); a switch stays open until its target is verified answering.
# TYPE ars_service_switch_open_seconds gauge
ars_service_switch_open_seconds{service="dns"} 62.5
`
	g := serviceGauges{m: n.c.metrics, now: opened.Add(62500 * time.Millisecond)}
	if err := testutil.CollectAndCompare(g, strings.NewReader(want)); err != nil {
		svc, _ := n.c.Service("dns")
		t.Fatalf("%v\nstate: %+v", err, svc.Replicas)
	}
}
