package controller

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Report is a node's probe verdict on a service, sent by a follower's
// Witness to the leader (cluster.SendToLeader: one encrypted gossip packet,
// best effort). Reports are repeated (on every change, then as a heartbeat),
// so a lost one is replaced by the next; the leader keeps the newest per
// node and service and forgets it after ReportTTL.
//
// A report is about one activation of one replica: Replica and Epoch (the
// replica's ReplicaState.Since, the log index of the Switch that made it
// active). Every node reads both from its own copy of the replicated state
// and restarts its prober when they change, so a vote cast against the
// previous active can never count against the new one, whatever the clocks
// of the nodes say.
type Report struct {
	V       int    `json:"v"`
	Node    string `json:"node"`
	Service string `json:"service"`
	Replica string `json:"replica"`
	Epoch   uint64 `json:"epoch"`
	// Down reports a DOWN verdict of the node's prober for this activation.
	Down bool `json:"down"`
	// DownForUS (Down only): microseconds from the outage's first failed
	// probe to the sending of the report, by the sender's clock. The leader
	// turns it into a start time on its own clock (receipt − DownFor), so
	// clock offsets between nodes do not matter, only the one-way delay.
	DownForUS int64 `json:"down_for_us,omitempty"`
}

// ReportVersion is the Report format version.
const ReportVersion = 1

// Bounds on reports.
const (
	// ReportTTL: a report not refreshed for this long is forgotten.
	// Followers refresh a DOWN report every ReportDownEvery and any other
	// every ReportUpEvery. A DOWN vote counts only while its latest
	// refresh is at most DownVoteTTL old: it survives two lost packets,
	// and a follower whose UP report was lost stops counting as DOWN
	// within DownVoteTTL of its last DOWN heartbeat.
	ReportTTL       = time.Second
	DownVoteTTL     = 3 * ReportDownEvery
	ReportDownEvery = 100 * time.Millisecond
	ReportUpEvery   = 500 * time.Millisecond
	maxReportField  = 128
	maxDownFor      = int64(time.Hour / time.Microsecond)
)

// EncodeReport returns the wire form of r.
func EncodeReport(r Report) ([]byte, error) {
	r.V = ReportVersion
	if err := r.validate(); err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

// DecodeReport parses and checks a report; unknown fields, another version
// and out-of-range values are errors.
func DecodeReport(b []byte) (Report, error) {
	var r Report
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Report{}, fmt.Errorf("probe report: %w", err)
	}
	if dec.More() {
		return Report{}, errors.New("probe report: trailing data")
	}
	if r.V != ReportVersion {
		return Report{}, fmt.Errorf("probe report: version %d, want %d", r.V, ReportVersion)
	}
	if err := r.validate(); err != nil {
		return Report{}, err
	}
	return r, nil
}

func (r Report) validate() error {
	for _, f := range []struct{ name, v string }{{"node", r.Node}, {"service", r.Service}, {"replica", r.Replica}} {
		if f.v == "" || len(f.v) > maxReportField {
			return fmt.Errorf("probe report: %s: must be 1..%d bytes", f.name, maxReportField)
		}
	}
	if r.Epoch == 0 {
		return errors.New("probe report: epoch: must be > 0")
	}
	if r.DownForUS < 0 || r.DownForUS > maxDownFor || (!r.Down && r.DownForUS != 0) {
		return fmt.Errorf("probe report: down_for_us: %d out of range", r.DownForUS)
	}
	return nil
}

// vote is one node's newest report, as the leader received it.
type vote struct {
	Report
	recv      time.Time // leader clock
	downSince time.Time // leader clock: recv − DownFor
}

// tally is the leader's view of the followers' verdicts. Pure: the caller
// passes the time. Not safe for concurrent use (the leader loop owns it).
type tally struct {
	votes map[string]map[string]vote // service -> node -> vote
}

func newTally() *tally { return &tally{votes: map[string]map[string]vote{}} }

// add records r, received at now; it replaces the node's previous report on
// the service.
func (t *tally) add(r Report, now time.Time) {
	m := t.votes[r.Service]
	if m == nil {
		m = map[string]vote{}
		t.votes[r.Service] = m
	}
	v := vote{Report: r, recv: now}
	if r.Down {
		v.downSince = now.Add(-time.Duration(r.DownForUS) * time.Microsecond)
	}
	m[r.Node] = v
}

// down returns the outage starts of the fresh DOWN votes on the given
// activation, ignoring the node `self` (the leader votes with its own
// prober), in no particular order. It also drops expired reports.
func (t *tally) down(service, replica string, epoch uint64, self string, now time.Time) []time.Time {
	var since []time.Time
	for node, v := range t.votes[service] {
		if now.Sub(v.recv) > ReportTTL {
			delete(t.votes[service], node)
			continue
		}
		if node == self || !v.Down || v.Replica != replica || v.Epoch != epoch || now.Sub(v.recv) > DownVoteTTL {
			continue
		}
		since = append(since, v.downSince)
	}
	return since
}

// forget drops a service's votes (the service was deleted).
func (t *tally) forget(service string) { delete(t.votes, service) }

// Majority is the quorum of a cluster with the given number of voters.
func Majority(voters int) int { return voters/2 + 1 }
