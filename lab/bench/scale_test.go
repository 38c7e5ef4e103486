package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"image/png"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseScaleNs(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []int
		err  string
	}{
		{in: "1,10,50,200", want: []int{1, 10, 50, 200}},
		{in: " 50, 1 ,", want: []int{1, 50}},
		{in: "250", want: []int{250}},
		{in: "", err: "no service count"},
		{in: "0", err: "from 1 to 250"},
		{in: "251", err: "from 1 to 250"},
		{in: "ten", err: "from 1 to 250"},
		{in: "10,10", err: "10 twice"},
	} {
		got, err := ParseScaleNs(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseScaleNs(%q) = %v, %v; want an error with %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseScaleNs(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestScaleServices(t *testing.T) {
	for _, n := range []int{1, 10, 200, MaxScaleServices} {
		svcs, err := ScaleServices(n)
		if err != nil {
			t.Fatalf("%d: %v", n, err)
		}
		if len(svcs) != n {
			t.Fatalf("%d: %d services", n, len(svcs))
		}
		names, addrs := map[string]bool{}, map[netip.Addr]bool{}
		for i, s := range svcs {
			if (i == 0) == s.Addr.IsValid() {
				t.Errorf("%d: service %d (%s) address %v: want the lab's own for the first only", n, i, s.Name, s.Addr)
			}
			if i > 0 && (!ScaleSubnet.Contains(s.Addr) || addrs[s.Addr]) {
				t.Errorf("%d: service %s address %s: outside %s or taken twice", n, s.Name, s.Addr, ScaleSubnet)
			}
			addrs[s.Addr] = true
			impls := map[string]bool{}
			for _, r := range s.Replicas {
				if names[r.Name] || len(r.Name) > 32 {
					t.Errorf("%d: replica name %q twice or too long", n, r.Name)
				}
				names[r.Name] = true
				impls[r.Impl] = true
			}
			if len(s.Replicas) != 4 || len(impls) != 4 {
				t.Errorf("%d: service %s: %d replicas of %d implementations, want 4 diverse", n, s.Name, len(s.Replicas), len(impls))
			}
		}
	}
	svcs, err := ScaleServices(2)
	if err != nil {
		t.Fatal(err)
	}
	if got := svcs[1]; got.Name != "s001" || got.Addr != netip.MustParseAddr("10.253.54.1") || got.Replicas[0].Name != "s001-bind9" {
		t.Errorf("second service %+v", got)
	}
	for _, n := range []int{0, MaxScaleServices + 1} {
		if _, err := ScaleServices(n); err == nil {
			t.Errorf("ScaleServices(%d): no error", n)
		}
	}
}

func TestScaleSampleAndConcurrent(t *testing.T) {
	for _, c := range []struct {
		n, k int
		want []int
	}{
		{1, 10, []int{0}},
		{10, 10, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{50, 10, []int{0, 5, 10, 15, 20, 25, 30, 35, 40, 45}},
		{200, 4, []int{0, 50, 100, 150}},
		{3, 0, nil},
	} {
		if got := ScaleSample(c.n, c.k); !reflect.DeepEqual(got, c.want) {
			t.Errorf("ScaleSample(%d, %d) = %v, want %v", c.n, c.k, got, c.want)
		}
	}
	for _, c := range []struct {
		n    int
		pct  float64
		want int
	}{
		{1, 10, 1}, {10, 10, 1}, {50, 10, 5}, {200, 10, 20}, {15, 10, 2}, {200, 100, 200},
	} {
		if got := ScaleConcurrent(c.n, c.pct); got != c.want {
			t.Errorf("ScaleConcurrent(%d, %g) = %d, want %d", c.n, c.pct, got, c.want)
		}
	}
}

func TestQuantilesOf(t *testing.T) {
	if q := QuantilesOf(nil); q != nil {
		t.Fatalf("no measurements summarised as %+v; want nothing", q)
	}
	for _, c := range []struct {
		xs   []float64
		want Quantiles
	}{
		{[]float64{7}, Quantiles{N: 1, Mean: 7, P50: 7, P99: 7, Max: 7}},
		{[]float64{300, 100, 200}, Quantiles{N: 3, Mean: 200, P50: 200, P99: 298, Max: 300}},
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, Quantiles{N: 10, Mean: 5.5, P50: 5.5, P99: 9.9, Max: 10}},
	} {
		if got := QuantilesOf(c.xs); *got != c.want {
			t.Errorf("QuantilesOf(%v) = %+v, want %+v", c.xs, *got, c.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// A run measured in part: the JSON holds what was measured and nothing
// for the rest, and the table shows "-" there, never 0.
func TestScaleFileShapeAndTable(t *testing.T) {
	f := ScaleFile{Responder: "dnsd", Probe: "ars", Confirm: "quorum", Runs: []ScaleRun{
		{Services: 10, Replicas: 40, Namespaces: 45, Processes: 43, UpSeconds: ptr(12.5),
			Idle:         &Footprints{Seconds: 30, Leader: NodeUse{Node: "n1", CPUPercent: 12.5, RSSMeanMB: 40}},
			IdleSwitches: ptr(0),
			Raft:         &ScaleRaft{Seconds: 30, Entries: 0, EntriesPerMinute: 0, SnapshotBytes: ptr[int64](2048), SnapshotKB: ptr(2.0)},
			Gossip:       &ScaleGossip{Seconds: 30, Leader: GossipBytes{Node: "n1", SentPerSec: 900, ReceivedPerSec: 4321.04}},
			Concurrent:   &ScaleConcurrentResult{Attacked: 1, Switched: 1, Detection: QuantilesOf([]float64{250})},
			Takeover:     &ScaleTakeover{Killed: "n1", ElectedMS: ptr(900.0), PollMS: 50},
			Errors:       []string{"detection: no switch"}},
		{Services: 1, Replicas: 4},
	}}
	dir := t.TempDir()
	if err := WriteScale(dir, f); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ScaleJSONFile))
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Responder string           `json:"responder"`
		Runs      []map[string]any `json:"runs"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Responder != "dnsd" || len(raw.Runs) != 2 || raw.Runs[0]["services"] != 1.0 {
		t.Fatalf("file: %s", b)
	}
	for _, key := range []string{"idle", "raft_idle", "detection_ms", "concurrent", "takeover", "during_attacks", "processes", "namespaces", "up_seconds", "idle_switches"} {
		if _, ok := raw.Runs[0][key]; ok {
			t.Errorf("the unmeasured run has %q", key)
		}
	}
	for _, key := range []string{"idle", "raft_idle", "concurrent", "takeover", "errors"} {
		if _, ok := raw.Runs[1][key]; !ok {
			t.Errorf("the measured run lacks %q", key)
		}
	}
	if to := raw.Runs[1]["takeover"].(map[string]any); to["ready_ms"] != nil || to["elected_ms"] != 900.0 {
		t.Errorf("takeover %v: want elected 900 and no ready time", to)
	}

	var tb bytes.Buffer
	f.Runs = []ScaleRun{f.Runs[1], f.Runs[0]}
	ScaleTable(&tb, f)
	lines := strings.Split(strings.TrimSpace(tb.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("table:\n%s", tb.String())
	}
	for i, line := range lines {
		if got := len(strings.Split(line, "\t")); got != len(ScaleColumns) {
			t.Errorf("line %d has %d columns, want %d: %q", i, got, len(ScaleColumns), line)
		}
	}
	for i, v := range strings.Split(lines[1], "\t") {
		if i > 1 && v != "-" {
			t.Errorf("the unmeasured run's %s is %q, want -", ScaleColumns[i], v)
		}
	}
	n10 := strings.Split(lines[2], "\t")
	for name, want := range map[string]string{"IDLE LEADER CPU %": "12.5", "IDLE FOLLOWER CPU %": "-", "RAFT ENTRIES/MIN": "0.0",
		"SNAPSHOT KB": "2.0", "IDLE SWITCHES": "0", "CONC SWITCHED": "1/1", "CONC OUTAGE P50 MS": "-", "TAKEOVER ELECTED MS": "900.0", "TAKEOVER READY MS": "-", "PROCS": "43",
		"GOSSIP LEADER RX B/S": "4321.0", "GOSSIP FOLLOWER TX B/S": "-"} {
		if got := n10[slices.Index(ScaleColumns, name)]; got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func TestScaleFileValidate(t *testing.T) {
	for name, c := range map[string]struct {
		f    ScaleFile
		want error
	}{
		"replicas not 4 per service":  {ScaleFile{Runs: []ScaleRun{{Services: 2, Replicas: 4}}}, ErrInvalid},
		"N twice":                     {ScaleFile{Runs: []ScaleRun{{Services: 1, Replicas: 4}, {Services: 1, Replicas: 4}}}, ErrDuplicate},
		"negative":                    {ScaleFile{Runs: []ScaleRun{{Services: 1, Replicas: 4, UpSeconds: ptr(-1.0)}}}, ErrNegative},
		"more switched than attacked": {ScaleFile{Runs: []ScaleRun{{Services: 1, Replicas: 4, Concurrent: &ScaleConcurrentResult{Attacked: 1, Switched: 2}}}}, ErrInvalid},
	} {
		if err := c.f.Validate(); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if err := (ScaleFile{Runs: []ScaleRun{{Services: 200, Replicas: 800}}}).Validate(); err != nil {
		t.Errorf("a valid file: %v", err)
	}
}

// The chart renders with every figure, with some left out, and with
// none (panels that say "not measured"), and WriteScale puts it beside
// the JSON.
func TestScaleChart(t *testing.T) {
	full := ScaleRun{Services: 10, Replicas: 40,
		Idle:       &Footprints{Leader: NodeUse{CPUPercent: 10, RSSMeanMB: 40}, Follower: &NodeUse{CPUPercent: 8, RSSMeanMB: 35}},
		Attacks:    &Footprints{Leader: NodeUse{CPUPercent: 30}},
		Detection:  QuantilesOf([]float64{250, 270}),
		Concurrent: &ScaleConcurrentResult{Attacked: 1, Switched: 1, Outage: QuantilesOf([]float64{300})},
		Takeover:   &ScaleTakeover{ReadyMS: ptr(1500.0)}}
	for name, runs := range map[string][]ScaleRun{
		"full":    {full, {Services: 1, Replicas: 4, Idle: full.Idle}},
		"partial": {{Services: 1, Replicas: 4, Takeover: &ScaleTakeover{ElectedMS: ptr(900.0)}}},
		"empty":   nil,
	} {
		b, err := ScaleChart(ScaleFile{Runs: runs})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := img.Bounds().Dx(); got != chartWidth {
			t.Errorf("%s: width %d", name, got)
		}
	}
	dir := t.TempDir()
	if err := WriteScale(dir, ScaleFile{Runs: []ScaleRun{full}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ScaleChartFile)); err != nil {
		t.Fatal(err)
	}
}
