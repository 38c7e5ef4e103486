package api

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sort"

	"github.com/ars-project/ars/fsm"
)

// Status is a node's view of the cluster (GET /v1/status).
type Status struct {
	Node         string `json:"node"`
	Leader       string `json:"leader"`
	LeaderAPI    string `json:"leader_api"`
	State        string `json:"state"` // leader | follower | candidate | shutdown
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	LastLogIndex uint64 `json:"last_log_index"`
	LastContact  string `json:"last_contact"`
	Members      int    `json:"members"`
	Voters       int    `json:"voters"`
	Version      string `json:"version"`
	Dev          bool   `json:"dev"`
	// FormatLevel is the log format level this node reads;
	// ClusterFormatLevel the lowest that a server of the Raft configuration
	// reads, the highest the leader writes; FormatBehind the servers that
	// read less than this node, as "name (level N)" (docs/operations.md,
	// upgrades).
	FormatLevel        int      `json:"format_level"`
	ClusterFormatLevel int      `json:"cluster_format_level"`
	FormatBehind       []string `json:"format_behind,omitempty"`
	// StateIndex and StateDigest are set only when asked for
	// (GET /v1/status?digest=1): the log index this node's state machine
	// has applied and the hex SHA-256 of its canonical snapshot at that
	// index. Nodes at the same index must report the same digest
	// (docs/design.md §4.6); the chaos checker compares them.
	StateIndex  uint64 `json:"state_index,omitempty"`
	StateDigest string `json:"state_digest,omitempty"`
	// Disk is the node's last check of its data directory; absent on a
	// node without one (dev mode in memory) and before the first check.
	Disk *DiskStatus `json:"disk,omitempty"`
}

// DiskStatus is a node's last check of its data directory: free space by
// statfs and a probe file written, fsynced and removed
// (docs/operations.md, "A full or failing disk").
type DiskStatus struct {
	Healthy bool `json:"healthy"`
	// Cause says why the disk is unhealthy; empty while healthy.
	Cause string `json:"cause,omitempty"`
	// FreeBytes is absent when statfs failed.
	FreeBytes *uint64 `json:"free_bytes,omitempty"`
	// ProbeSeconds is how long the last probe that finished took.
	ProbeSeconds float64 `json:"probe_seconds,omitempty"`
	// CheckedAt is the last check, Since when the current health began
	// (RFC 3339, UTC).
	CheckedAt string `json:"checked_at"`
	Since     string `json:"since"`
}

// Member is one node as gossip sees it (GET /v1/members).
type Member struct {
	Name       string `json:"name"`
	GossipAddr string `json:"gossip_addr"`
	RaftAddr   string `json:"raft_addr"`
	APIAddr    string `json:"api_addr"`
	Status     string `json:"status"` // alive | suspect | dead | left
	Voter      bool   `json:"voter"`
	Leader     bool   `json:"leader"`
}

// Peer is one server in the Raft configuration (GET /v1/raft/peers).
type Peer struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
}

// Request and response bodies.
type (
	// JoinRequest is the body of POST /v1/join.
	JoinRequest struct {
		Addresses []string `json:"addresses"`
	}
	// JoinResponse is the answer to POST /v1/join.
	JoinResponse struct {
		Joined int `json:"joined"`
	}
	// TransferLeaderRequest is the (optional) body of POST
	// /v1/raft/transfer-leader; an empty To lets Raft pick.
	TransferLeaderRequest struct {
		To string `json:"to"`
	}
	// RemovePeerRequest is the body of POST /v1/raft/remove-peer.
	RemovePeerRequest struct {
		ID string `json:"id"`
	}
	// OKResponse answers actions that return nothing else.
	OKResponse struct {
		OK bool `json:"ok"`
	}
)

// Headers.
const (
	// HeaderToken carries an API token (alternative to Authorization: Bearer).
	HeaderToken = "X-Ars-Token"
	// HeaderForwarded names the follower that forwarded a request to the
	// leader. A request carrying it is never forwarded again.
	HeaderForwarded = "X-Ars-Forwarded"
	// HeaderLeader names the leader that served a forwarded request.
	HeaderLeader = "X-Ars-Leader"
	// SnapshotDigestTrailer is the hex SHA-256 of a snapshot download,
	// sent as an HTTP trailer; the client verifies it.
	SnapshotDigestTrailer = "X-Ars-Snapshot-Sha256"
)

// Alert limits. See the package documentation, "Alerts".
const (
	// MaxAlertBodyBytes bounds the JSON body of POST /v1/alerts.
	MaxAlertBodyBytes = 64 << 10
	// MaxAlertEvidenceBytes bounds the evidence a detector may send: the
	// "evidence" field of POST /v1/alerts, or the whole body of POST
	// /v1/alerts/webhook.
	MaxAlertEvidenceBytes = 16 << 10
	// LedgerEvidenceBytes is what the alert ledger keeps of the evidence
	// (the fsm's limit). Longer evidence is cut at this size and ends in a
	// marker naming the original length and its SHA-256.
	LedgerEvidenceBytes = 4096
	// MaxAlertIDLength bounds an alert id.
	MaxAlertIDLength = 128
	// DefaultAlertListLimit and MaxAlertListLimit bound GET /v1/alerts.
	DefaultAlertListLimit = 100
	MaxAlertListLimit     = fsm.AlertLedgerLimit

	// MaxAlertSourceBytes bounds a detector's name (source); MaxAlertNameBytes
	// bounds a service or replica name in a request.
	MaxAlertSourceBytes = 128
	MaxAlertNameBytes   = 256
)

// HeaderAlertID carries a detector's own alert id on POST
// /v1/alerts/webhook.
const HeaderAlertID = "X-Ars-Alert-Id"

// EvidenceBase64Prefix starts evidence that was not storable as text (a
// webhook body that is not valid UTF-8 or holds control characters): the
// rest is the body in standard base64.
const EvidenceBase64Prefix = "base64:"

// AlertRequest is the body of POST /v1/alerts.
type AlertRequest struct {
	// ID identifies the detection: the ledger records an ID once, so a
	// retried delivery is answered as a duplicate. 1..128 characters of
	// [A-Za-z0-9._:-], starting with a letter or digit.
	ID      string `json:"id"`
	Service string `json:"service"`
	Replica string `json:"replica"`
	Kind    string `json:"kind"` // "exploit" | "dos"
	// Source names the detector (default: the caller's token name).
	Source string `json:"source,omitempty"`
	// Evidence is free text (up to MaxAlertEvidenceBytes; tab and line
	// breaks allowed, other control characters not). The ledger keeps
	// LedgerEvidenceBytes of it.
	Evidence string `json:"evidence,omitempty"`
}

// AlertResponse answers POST /v1/alerts and POST /v1/alerts/webhook. It is
// sent only after the alert command was committed: 201 when the alert is
// new, 200 with Duplicate when its ID was already in the ledger.
type AlertResponse struct {
	ID      string `json:"id"`
	Service string `json:"service"`
	Replica string `json:"replica"`
	Kind    string `json:"kind"`
	Source  string `json:"source"`
	// Index is the log index of the entry that committed this request (for
	// a duplicate, of the no-op entry, not of the original alert).
	Index     uint64 `json:"index"`
	Duplicate bool   `json:"duplicate"`
	// At is the leader's clock when it built the command (unix ns).
	At int64 `json:"at"`
	// EvidenceTruncated: the ledger holds a shortened copy of the evidence.
	EvidenceTruncated bool `json:"evidence_truncated,omitempty"`
}

// WebhookAlertID is the id POST /v1/alerts/webhook gives an alert without
// an X-Ars-Alert-Id header: "wh-" and the hex SHA-256 of the
// length-prefixed source, service, replica and body. A retried delivery of
// the same body therefore dedups; a detector that reports two distinct
// events with identical bodies must send its own ids.
func WebhookAlertID(source, service, replica string, body []byte) string {
	h := sha256.New()
	var n [8]byte
	for _, part := range [][]byte{[]byte(source), []byte(service), []byte(replica), body} {
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	return "wh-" + hex.EncodeToString(h.Sum(nil))
}

// Operator action limits.
const (
	// MaxOperateBodyBytes bounds the JSON body of the switch and replica
	// action routes.
	MaxOperateBodyBytes = 4 << 10
	// MaxOperateReasonBytes bounds the operator's reason text.
	MaxOperateReasonBytes = 256
)

// ReplicaActions are the actions of POST
// /v1/services/{name}/replicas/{replica}/{action}. "restore" is the fsm
// action "restored": it marks the replica clean, i.e. the operator asserts
// it was restored out of band.
var ReplicaActions = []string{"quarantine", "restore", "maintenance", "release"}

// SwitchRequest is the body of POST /v1/services/{name}/switch.
type SwitchRequest struct {
	// To names the replica to switch to; "" lets the leader pick by
	// diversity.
	To     string `json:"to,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// SwitchResponse answers POST /v1/services/{name}/switch once the switch
// command was committed.
type SwitchResponse struct {
	Service    string `json:"service"`
	From       string `json:"from"`
	To         string `json:"to"`
	Generation uint64 `json:"generation"`
	Index      uint64 `json:"index"`
	Outcome    string `json:"outcome"`
	Reason     string `json:"reason"`
}

// ReplicaActionRequest is the (optional) body of POST
// /v1/services/{name}/replicas/{replica}/{action}.
type ReplicaActionRequest struct {
	Reason string `json:"reason,omitempty"`
}

// ReplicaActionResponse answers a replica action once it was committed.
type ReplicaActionResponse struct {
	Service string     `json:"service"`
	Replica string     `json:"replica"`
	Action  string     `json:"action"`
	Result  fsm.Result `json:"result"`
}

// HistoryAggregate summarises the done switches of one reason and one
// platform pair ("vm-container": from-platform, to-platform). Total is
// trigger to verified (fsm.SwitchRecord.TotalMS), not downtime: the
// outage clients could see is Outage.
type HistoryAggregate struct {
	Reason       string  `json:"reason"`
	Pair         string  `json:"pair"`
	Count        int     `json:"count"`
	MeanSwitchMS float64 `json:"mean_switch_ms"`
	MaxSwitchMS  float64 `json:"max_switch_ms"`
	MeanTotalMS  float64 `json:"mean_total_ms"`
	MaxTotalMS   float64 `json:"max_total_ms"`
	// Outage and Exposure summarise the records that measured them
	// (fsm.SwitchRecord.OutageMS and ExposureMS); absent when none did.
	Outage   *MeasuredStat `json:"outage,omitempty"`
	Exposure *MeasuredStat `json:"exposure,omitempty"`
}

// MeasuredStat is the mean and max of a figure over the Count records
// that measured it.
type MeasuredStat struct {
	Count  int     `json:"count"`
	MeanMS float64 `json:"mean_ms"`
	MaxMS  float64 `json:"max_ms"`
}

func (m *MeasuredStat) add(v *float64) *MeasuredStat {
	if v == nil {
		return m
	}
	if m == nil {
		m = &MeasuredStat{}
	}
	m.Count++
	m.MeanMS += *v // a sum until Aggregate divides
	m.MaxMS = max(m.MaxMS, *v)
	return m
}

func (m *MeasuredStat) mean() {
	if m != nil {
		m.MeanMS /= float64(m.Count)
	}
}

// HistoryResponse answers GET /v1/history: the switch records (per
// service, newest last; services in name order) and the per-pair
// aggregates over the done ones, sorted by reason and pair.
type HistoryResponse struct {
	Switches   []fsm.SwitchRecord `json:"switches"`
	Aggregates []HistoryAggregate `json:"aggregates"`
}

// Aggregate computes the per-(reason, platform pair) table over the done
// records.
func Aggregate(recs []fsm.SwitchRecord) []HistoryAggregate {
	type key struct{ reason, pair string }
	idx := map[key]int{}
	out := []HistoryAggregate{}
	for _, r := range recs {
		if !r.Done {
			continue
		}
		k := key{r.Reason, r.FromPlatform + "-" + r.ToPlatform}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, HistoryAggregate{Reason: k.reason, Pair: k.pair})
		}
		a := &out[i]
		a.Count++
		a.MeanSwitchMS += r.SwitchMS
		a.MeanTotalMS += r.TotalMS
		a.MaxSwitchMS = max(a.MaxSwitchMS, r.SwitchMS)
		a.MaxTotalMS = max(a.MaxTotalMS, r.TotalMS)
		a.Outage = a.Outage.add(r.OutageMS)
		a.Exposure = a.Exposure.add(r.ExposureMS)
	}
	for i := range out {
		out[i].MeanSwitchMS /= float64(out[i].Count)
		out[i].MeanTotalMS /= float64(out[i].Count)
		out[i].Outage.mean()
		out[i].Exposure.mean()
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Reason != out[j].Reason {
			return out[i].Reason < out[j].Reason
		}
		return out[i].Pair < out[j].Pair
	})
	return out
}
