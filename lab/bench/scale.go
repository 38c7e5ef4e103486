package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The scale benchmark (ars-lab scale): for each N, a lab with N services
// of four diverse replicas each, and what the cluster costs and how fast
// it answers there. This file holds its pure parts: the plan of each lab,
// the summaries and the result file, bench/results/scale.json.

// ScaleJSONFile is the scale benchmark's result file.
const ScaleJSONFile = "scale.json"

// MaxScaleServices bounds N: four replicas a service, each a port of the
// lab's one bridge (netlab.MaxReplicas, 1000).
const MaxScaleServices = 250

// scaleImpls are each service's replicas, as the lab's default topology
// has them: BIND 9 and Unbound on Windows-labelled VMs, Knot Resolver and
// PowerDNS Recursor on Linux ones.
var scaleImpls = []struct{ suffix, impl, os string }{
	{"bind9", "bind9", "windows"},
	{"unbound", "unbound", "windows"},
	{"knot", "knot-resolver", "linux"},
	{"pdns", "pdns-recursor", "linux"},
}

// ScaleSubnet is the scale lab's service network: it holds the lab's
// default addresses (hub, client, the first service's address, all in
// 10.253.53.0/24) and room for every further service's address from
// 10.253.54.1 on.
var (
	ScaleSubnet    = netip.MustParsePrefix("10.253.52.0/22")
	scaleFirstAddr = netip.MustParseAddr("10.253.54.1")
)

// ScaleReplica is one replica of a planned service.
type ScaleReplica struct {
	Name, Impl, OS string
}

// ScaleService is one service of a scale lab. The first one (index 0) is
// the lab's own service, at the lab's service address (Addr invalid); the
// others have Addr.
type ScaleService struct {
	Name     string
	Addr     netip.Addr
	Replicas []ScaleReplica
}

// ParseScaleNs reads a comma-separated list of service counts: each 1 to
// MaxScaleServices, no repeats; returned in ascending order.
func ParseScaleNs(s string) ([]int, error) {
	var ns []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > MaxScaleServices {
			return nil, fmt.Errorf("%q: want a number of services from 1 to %d", f, MaxScaleServices)
		}
		if slices.Contains(ns, n) {
			return nil, fmt.Errorf("%d twice", n)
		}
		ns = append(ns, n)
	}
	if len(ns) == 0 {
		return nil, errors.New("no service count")
	}
	slices.Sort(ns)
	return ns, nil
}

// ScaleServices plans a lab of n services (1 to MaxScaleServices): names
// s000, s001, …, each with four replicas SERVICE-bind9, -unbound, -knot
// and -pdns.
func ScaleServices(n int) ([]ScaleService, error) {
	if n < 1 || n > MaxScaleServices {
		return nil, fmt.Errorf("bench: %d services: want 1 to %d", n, MaxScaleServices)
	}
	out := make([]ScaleService, n)
	addr := scaleFirstAddr
	for i := range out {
		s := ScaleService{Name: fmt.Sprintf("s%03d", i)}
		if i > 0 {
			s.Addr = addr
			addr = addr.Next()
		}
		for _, im := range scaleImpls {
			s.Replicas = append(s.Replicas, ScaleReplica{Name: s.Name + "-" + im.suffix, Impl: im.impl, OS: im.os})
		}
		out[i] = s
	}
	if !ScaleSubnet.Contains(out[n-1].Addr) && n > 1 {
		return nil, fmt.Errorf("bench: %d services do not fit %s", n, ScaleSubnet)
	}
	return out, nil
}

// ScaleSample picks k of n services (all if k >= n), spread evenly and
// always with the first: the indices, ascending.
func ScaleSample(n, k int) []int {
	k = min(k, n)
	var out []int
	for i := range k {
		out = append(out, i*n/k)
	}
	return out
}

// ScaleConcurrent is how many of n services a concurrent attack on pct %
// of them hits: rounded up, at least one.
func ScaleConcurrent(n int, pct float64) int {
	return max(1, int(math.Ceil(float64(n)*pct/100-1e-9)))
}

// Quantiles summarises a set of measurements in milliseconds.
type Quantiles struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// QuantilesOf summarises xs; nil (left out of the file, never 0) when
// there is nothing to summarise.
func QuantilesOf(xs []float64) *Quantiles {
	if len(xs) == 0 {
		return nil
	}
	return &Quantiles{N: len(xs), Mean: round(mean(xs)), P50: round(percentile(xs, 50)),
		P99: round(percentile(xs, 99)), Max: round(slices.Max(xs))}
}

// NodeUse is one node's CPU and memory over a window (lab.Footprint's
// figures).
type NodeUse struct {
	Node          string  `json:"node"`
	CPUPercent    float64 `json:"cpu_percent"`
	CPUMaxPercent float64 `json:"cpu_max_percent"`
	RSSMeanMB     float64 `json:"rss_mean_mb"`
	RSSMaxMB      float64 `json:"rss_max_mb"`
}

// Footprints is the leader's and one follower's use over one window.
type Footprints struct {
	Seconds  float64  `json:"seconds"`
	Leader   NodeUse  `json:"leader"`
	Follower *NodeUse `json:"follower,omitempty"`
}

// ScaleConcurrentResult is the concurrent attack: how many services were
// attacked and switched, and the distributions over the switched ones.
type ScaleConcurrentResult struct {
	Attacked int `json:"attacked"`
	Switched int `json:"switched"`
	// Detection is the switch records' detection (first failed probe to
	// decision); Outage the leader's probes' outage (OutageMS; services
	// whose record has none are left out); Done the lab's attack to the
	// switch's completion.
	Detection *Quantiles `json:"detection_ms,omitempty"`
	Outage    *Quantiles `json:"outage_ms,omitempty"`
	Done      *Quantiles `json:"attack_to_done_ms,omitempty"`
}

// ScaleTakeover is the takeover after kill -9 of the leader, each time
// from the kill, in milliseconds; a time not reached is nil.
type ScaleTakeover struct {
	Killed    string `json:"killed"`
	NewLeader string `json:"new_leader,omitempty"`
	// Elected: a survivor says it leads. Judged: its fresh probers have
	// a verdict for every service (ars_controller_verdicts_total of each
	// service above its value before the kill). Reconciled: it has
	// completed a reconcile pass over every service
	// (ars_controller_reconcile_passes_total above its value before).
	// Ready is the later of the two.
	ElectedMS    *float64 `json:"elected_ms,omitempty"`
	JudgedMS     *float64 `json:"judged_ms,omitempty"`
	ReconciledMS *float64 `json:"reconciled_ms,omitempty"`
	ReadyMS      *float64 `json:"ready_ms,omitempty"`
	// PollMS is the polling interval: each time is late by up to this
	// and one metrics read.
	PollMS float64 `json:"poll_ms"`
}

// ScaleRaft is the Raft log while the lab idles, as the leader reports
// it, and the size of a snapshot of the replicated state.
type ScaleRaft struct {
	Seconds          float64  `json:"seconds"`
	Entries          uint64   `json:"entries"`
	EntriesPerMinute float64  `json:"entries_per_minute"`
	SnapshotBytes    *int64   `json:"snapshot_bytes,omitempty"`
	SnapshotKB       *float64 `json:"snapshot_kb,omitempty"`
}

// ScaleGossip is the gossip traffic (memberlist's port, TCP and UDP, IP
// bytes) of the leader and a follower over the idle window: the
// followers' probe reports to the leader, memberlist's own probes and
// state exchange.
type ScaleGossip struct {
	Seconds  float64      `json:"seconds"`
	Leader   GossipBytes  `json:"leader"`
	Follower *GossipBytes `json:"follower,omitempty"`
}

// GossipBytes is one node's gossip traffic, in bytes per second.
type GossipBytes struct {
	Node           string  `json:"node"`
	SentPerSec     float64 `json:"sent_bytes_per_sec"`
	ReceivedPerSec float64 `json:"received_bytes_per_sec"`
}

// ScaleRun is everything measured on the lab of one N. A part that was
// not measured (skipped, or its phase failed: see Errors) is absent.
type ScaleRun struct {
	Services int `json:"services"`
	Replicas int `json:"replicas"`
	// Namespaces and Processes are what the lab made: network
	// namespaces, and processes inside them (servers, agents).
	Namespaces int `json:"namespaces,omitempty"`
	Processes  int `json:"processes,omitempty"`
	// UpSeconds is from the start of lab.Up to every service settled
	// (absent if they never did).
	UpSeconds *float64    `json:"up_seconds,omitempty"`
	Idle      *Footprints `json:"idle,omitempty"`
	// IdleSwitches counts the switches that started during the idle
	// window: none was asked for.
	IdleSwitches *int                   `json:"idle_switches,omitempty"`
	Raft         *ScaleRaft             `json:"raft_idle,omitempty"`
	Gossip       *ScaleGossip           `json:"gossip_idle,omitempty"`
	Detection    *Quantiles             `json:"detection_ms,omitempty"`
	DoneMS       *Quantiles             `json:"attack_to_done_ms,omitempty"`
	Concurrent   *ScaleConcurrentResult `json:"concurrent,omitempty"`
	Attacks      *Footprints            `json:"during_attacks,omitempty"`
	Takeover     *ScaleTakeover         `json:"takeover,omitempty"`
	Errors       []string               `json:"errors,omitempty"`
}

// ScaleFile is scale.json.
type ScaleFile struct {
	Machine   string    `json:"machine,omitempty"`
	Started   time.Time `json:"started,omitzero"`
	Go        string    `json:"go,omitempty"`
	Command   string    `json:"command,omitempty"`
	LoadStart string    `json:"load_start,omitempty"`
	LoadEnd   string    `json:"load_end,omitempty"`
	// Responder is what each replica ran (an implementation's server, or
	// "dnsd", the project's test responder, one process per replica).
	Responder string     `json:"responder"`
	Probe     string     `json:"probe"`
	Confirm   string     `json:"confirm"`
	Runs      []ScaleRun `json:"runs"`
}

// Validate checks the file: runs of distinct N in range, with as many
// replicas as the plan gives, and no negative figure.
func (f ScaleFile) Validate() error {
	seen := map[int]bool{}
	for i, r := range f.Runs {
		if r.Services < 1 || r.Services > MaxScaleServices || r.Replicas != r.Services*len(scaleImpls) {
			return fmt.Errorf("bench: runs[%d]: %d services, %d replicas: %w", i, r.Services, r.Replicas, ErrInvalid)
		}
		if seen[r.Services] {
			return fmt.Errorf("bench: runs[%d]: %d services: %w", i, r.Services, ErrDuplicate)
		}
		seen[r.Services] = true
		if r.UpSeconds != nil && *r.UpSeconds < 0 || r.Namespaces < 0 || r.Processes < 0 {
			return fmt.Errorf("bench: runs[%d]: %w", i, ErrNegative)
		}
		if c := r.Concurrent; c != nil && (c.Switched > c.Attacked || c.Attacked < 1) {
			return fmt.Errorf("bench: runs[%d]: %d of %d attacked switched: %w", i, c.Switched, c.Attacked, ErrInvalid)
		}
	}
	return nil
}

// WriteScale validates f and writes dir/scale.json (runs by N) and
// dir/scale.png (ScaleChart), replacing each atomically.
func WriteScale(dir string, f ScaleFile) error {
	if err := f.Validate(); err != nil {
		return err
	}
	f.Runs = sortedRuns(f.Runs)
	js, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode: %w", err)
	}
	png, err := ScaleChart(f)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	for name, data := range map[string][]byte{ScaleJSONFile: append(js, '\n'), ScaleChartFile: png} {
		if err := writeFile(filepath.Join(dir, name), data); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	return nil
}

// ScaleColumns are the columns ScaleTable prints, in order.
var ScaleColumns = []string{
	"N", "REPLICAS", "PROCS", "UP S",
	"IDLE LEADER CPU %", "IDLE LEADER RSS MB", "IDLE FOLLOWER CPU %", "IDLE FOLLOWER RSS MB",
	"IDLE SWITCHES", "RAFT ENTRIES/MIN", "SNAPSHOT KB",
	"GOSSIP LEADER RX B/S", "GOSSIP FOLLOWER TX B/S",
	"DETECT P50 MS", "DETECT P99 MS",
	"CONC SWITCHED", "CONC OUTAGE P50 MS", "CONC OUTAGE P99 MS", "CONC OUTAGE MAX MS",
	"ATTACK LEADER CPU %", "ATTACK LEADER RSS MB",
	"TAKEOVER ELECTED MS", "TAKEOVER READY MS",
}

// ScaleTable writes one tab-separated row per run under ScaleColumns. A
// figure not measured is "-", never 0.
func ScaleTable(w io.Writer, f ScaleFile) {
	fmt.Fprintln(w, strings.Join(ScaleColumns, "\t"))
	for _, r := range f.Runs {
		fmt.Fprintln(w, strings.Join(scaleRow(r), "\t"))
	}
}

const notMeasured = "-"

// num1 prints a figure with one decimal.
func num1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func optNum(v *float64) string {
	if v == nil {
		return notMeasured
	}
	return num1(*v)
}

func scaleRow(r ScaleRun) []string {
	row := []string{strconv.Itoa(r.Services), strconv.Itoa(r.Replicas), notMeasured, optNum(r.UpSeconds)}
	if r.Processes > 0 {
		row[2] = strconv.Itoa(r.Processes)
	}
	use := func(fp *Footprints, follower bool) []string {
		switch {
		case fp == nil, follower && fp.Follower == nil:
			return []string{notMeasured, notMeasured}
		case follower:
			return []string{num1(fp.Follower.CPUPercent), num1(fp.Follower.RSSMeanMB)}
		}
		return []string{num1(fp.Leader.CPUPercent), num1(fp.Leader.RSSMeanMB)}
	}
	row = append(row, use(r.Idle, false)...)
	row = append(row, use(r.Idle, true)...)
	if r.IdleSwitches != nil {
		row = append(row, strconv.Itoa(*r.IdleSwitches))
	} else {
		row = append(row, notMeasured)
	}
	if r.Raft != nil {
		row = append(row, num1(r.Raft.EntriesPerMinute), optNum(r.Raft.SnapshotKB))
	} else {
		row = append(row, notMeasured, notMeasured)
	}
	// What the followers' reports cost: the leader receives them, each
	// follower sends its own.
	if g := r.Gossip; g != nil {
		row = append(row, num1(g.Leader.ReceivedPerSec))
		if g.Follower != nil {
			row = append(row, num1(g.Follower.SentPerSec))
		} else {
			row = append(row, notMeasured)
		}
	} else {
		row = append(row, notMeasured, notMeasured)
	}
	q := func(x *Quantiles) []string {
		if x == nil {
			return []string{notMeasured, notMeasured}
		}
		return []string{num1(x.P50), num1(x.P99)}
	}
	row = append(row, q(r.Detection)...)
	if c := r.Concurrent; c != nil {
		row = append(row, fmt.Sprintf("%d/%d", c.Switched, c.Attacked))
		if c.Outage != nil {
			row = append(row, num1(c.Outage.P50), num1(c.Outage.P99), num1(c.Outage.Max))
		} else {
			row = append(row, notMeasured, notMeasured, notMeasured)
		}
	} else {
		row = append(row, notMeasured, notMeasured, notMeasured, notMeasured)
	}
	row = append(row, use(r.Attacks, false)...)
	if t := r.Takeover; t != nil {
		row = append(row, optNum(t.ElectedMS), optNum(t.ReadyMS))
	} else {
		row = append(row, notMeasured, notMeasured)
	}
	return row
}
