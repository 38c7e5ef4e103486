package lab

import (
	"context"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/lab/netlab"
)

const exposition = `# HELP ars_controller_verdicts_total Probe verdict transitions seen by the leader, by service and new state.
# TYPE ars_controller_verdicts_total counter
ars_controller_verdicts_total{service="s000",state="up"} 2
ars_controller_verdicts_total{service="s000",state="down"} 1
ars_controller_verdicts_total{service="s\"1",state="up"} 1
ars_controller_verdicts_total_extra{service="s000"} 50
ars_controller_reconcile_passes_total 17
ars_controller_reconcile_passes_totally 3
`

func TestMetricSum(t *testing.T) {
	for _, c := range []struct {
		name, metric, label string
		text                string
		want                map[string]float64
		err                 bool
	}{
		{"by service", metricVerdicts, "service", exposition, map[string]float64{"s000": 3, `s"1`: 1}, false},
		{"by state", metricVerdicts, "state", exposition, map[string]float64{"up": 3, "down": 1}, false},
		{"unlabelled", metricPasses, "", exposition, map[string]float64{"": 17}, false},
		{"absent", "ars_nothing_total", "", exposition, map[string]float64{}, false},
		{"missing label", metricVerdicts, "replica", exposition, map[string]float64{}, false},
		{"bad value", metricPasses, "", "ars_controller_reconcile_passes_total x\n", nil, true},
		{"unterminated labels", metricVerdicts, "service", `ars_controller_verdicts_total{service="a" 1`, nil, true},
	} {
		got, err := metricSum(c.text, c.metric, c.label)
		if (err != nil) != c.err || !c.err && !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %v, %v; want %v (error %t)", c.name, got, err, c.want, c.err)
		}
	}
}

func TestTakeoverCounts(t *testing.T) {
	base, err := parseTakeoverCounts("ars_controller_verdicts_total{service=\"a\",state=\"up\"} 1\nars_controller_reconcile_passes_total 4\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name               string
		text               string
		judged, reconciled bool
	}{
		{"nothing new", "ars_controller_verdicts_total{service=\"a\",state=\"up\"} 1\nars_controller_reconcile_passes_total 4\n", false, false},
		{"a judged, b not", "ars_controller_verdicts_total{service=\"a\",state=\"up\"} 2\nars_controller_reconcile_passes_total 4\n", false, false},
		{"both judged, no pass", "ars_controller_verdicts_total{service=\"a\",state=\"up\"} 2\nars_controller_verdicts_total{service=\"b\",state=\"up\"} 1\nars_controller_reconcile_passes_total 4\n", true, false},
		{"a pass only", "ars_controller_reconcile_passes_total 5\n", false, true},
	} {
		now, err := parseTakeoverCounts(c.text)
		if err != nil {
			t.Fatal(err)
		}
		if j, r := now.judged(base, []string{"a", "b"}), now.reconciled(base); j != c.judged || r != c.reconciled {
			t.Errorf("%s: judged %t, reconciled %t; want %t, %t", c.name, j, r, c.judged, c.reconciled)
		}
	}
}

// The specs of a lab with further services: each service its address and
// its own replicas, the lab's service the replicas without a service.
func TestServiceSpecsOfFurtherServices(t *testing.T) {
	cfg := Config{Service: "s000", ServiceAddrs: map[string]netip.Addr{"s001": netip.MustParseAddr("10.253.54.1")},
		Replicas: []Replica{
			{Name: "a", Impl: "bind9", OS: fsm.OSWindows, Platform: fsm.PlatformVM},
			{Name: "b", Impl: "unbound", OS: fsm.OSWindows, Platform: fsm.PlatformVM, Service: "s000"},
			{Name: "c", Impl: "bind9", OS: fsm.OSWindows, Platform: fsm.PlatformVM, Service: "s001"},
			{Name: "d", Impl: "knot-resolver", OS: fsm.OSLinux, Platform: fsm.PlatformVM, Service: "s001"},
		}}
	nl, err := netlab.New(netlab.Topology{Prefix: "arstest", Subnet: netip.MustParsePrefix("10.253.52.0/22"),
		Replicas: []string{"a", "b", "c", "d"}, Addrs: map[string]netip.Addr{"c": cfg.ServiceAddrs["s001"], "d": cfg.ServiceAddrs["s001"]}})
	if err != nil {
		t.Fatal(err)
	}
	l := &Lab{cfg: cfg, Net: nl, vms: map[string]string{"a": "vm-a", "b": "vm-b", "c": "vm-c", "d": "vm-d"}}
	if got := l.ServiceNames(); !reflect.DeepEqual(got, []string{"s000", "s001"}) {
		t.Errorf("services %v", got)
	}
	names := func(s fsm.ServiceSpec) string {
		var out []string
		for _, r := range s.Replicas {
			out = append(out, r.Name+"@"+r.VM)
		}
		return s.Address + " " + strings.Join(out, ",")
	}
	for svc, want := range map[string]string{
		"s000": "10.253.53.53:53 a@vm-a,b@vm-b",
		"s001": "10.253.54.1:53 c@vm-c,d@vm-d",
	} {
		if got := names(l.ServiceSpec(svc)); got != want {
			t.Errorf("spec of %s: %s, want %s", svc, got, want)
		}
	}
}

// Up refuses a further service without an address, or with a container
// replica, before it touches anything (no root needed).
func TestUpRefusesBadFurtherServices(t *testing.T) {
	for name, c := range map[string]struct {
		cfg  Config
		want string
	}{
		"no address": {Config{Replicas: []Replica{{Name: "a", Impl: "bind9", OS: fsm.OSLinux, Service: "x"}}}, `service "x" has no address`},
		"container": {Config{ServiceAddrs: map[string]netip.Addr{"x": netip.MustParseAddr("10.253.54.1")},
			Replicas: []Replica{{Name: "a", Impl: "bind9", OS: fsm.OSLinux, Platform: fsm.PlatformContainer, Service: "x"}}}, "container replicas serve the lab's service only"},
		"main service among the further": {Config{Service: "dns", ServiceAddrs: map[string]netip.Addr{"dns": netip.MustParseAddr("10.253.54.1")},
			Replicas: []Replica{{Name: "a", Impl: "bind9", OS: fsm.OSLinux}}}, "ServiceAddrs names further services"},
		"unknown responder": {Config{Responder: "nsd", Replicas: []Replica{{Name: "a", Impl: "bind9", OS: fsm.OSLinux}}}, `unknown implementation "nsd"`},
	} {
		_, err := Up(context.Background(), c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, c.want)
		}
	}
}

func TestSwitchesBetween(t *testing.T) {
	at := func(sec int64) fsm.SwitchRecord { return fsm.SwitchRecord{StartedAt: time.Unix(sec, 0).UnixNano()} }
	all := []fsm.Service{{History: []fsm.SwitchRecord{at(5), at(10), at(20)}}, {History: []fsm.SwitchRecord{at(15)}}, {}}
	for _, c := range []struct {
		from, to int64
		want     int
	}{{0, 4, 0}, {5, 20, 4}, {6, 19, 2}, {21, 30, 0}} {
		if got := switchesBetween(all, time.Unix(c.from, 0), time.Unix(c.to, 0)); got != c.want {
			t.Errorf("[%d, %d]: %d switches, want %d", c.from, c.to, got, c.want)
		}
	}
}
