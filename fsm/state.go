package fsm

import "slices"

// Bounds of the replicated state.
const (
	HistoryLimit     = 256  // switch records kept per service (oldest dropped)
	AlertLedgerLimit = 4096 // alerts kept in the ledger (oldest decided one dropped; never an undecided one)
)

// Replica health values. Only HealthUnknown is ever set: no command
// reports a replica's health, so the field is a constant that the API, the
// CLI and the status page do not show (a node's state keeps it so that
// states, snapshots and digests stay what earlier builds wrote). The other
// values are accepted in a snapshot for the same reason.
const (
	HealthUnknown = "unknown"
	HealthOK      = "ok"
	HealthFailing = "failing"
)

// Switch reasons (Switch.Reason).
const (
	ReasonDoS     = "dos"
	ReasonExploit = "exploit"
	ReasonManual  = "manual"
)

// Alert kinds (Alert.Kind).
const (
	KindExploit = "exploit"
	KindDoS     = "dos"
	// KindManual is an operator's switch request (the SwitchRequest
	// command, not an Alert): Replica names the replica to switch to, or is
	// empty to let the leader pick; Evidence holds the operator's reason
	// and Source the caller. The leader loop decides it like an alert.
	KindManual = "manual"
)

// Replica role actions (ReplicaRole.Action).
const (
	ActionQuarantine  = "quarantine"  // any non-active -> quarantined (Clean=false)
	ActionRestored    = "restored"    // quarantined|recovering -> suspended (Clean=true)
	ActionMaintenance = "maintenance" // standby|suspended -> maintenance
	ActionRelease     = "release"     // maintenance -> suspended
)

// ReplicaState is the replicated state of one replica.
type ReplicaState struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	// Health is always "unknown" (see HealthUnknown): nothing measures it.
	// omitempty lets the API leave it out by clearing it.
	Health string `json:"health,omitempty"`
	// Clean is false from the moment the replica is quarantined or sent to
	// recovery until it is "restored". Clean is false exactly when the role
	// is quarantined or recovering.
	Clean bool   `json:"clean"`
	Since uint64 `json:"since"` // log index of the last role change
	// Reason of the last role change ("exploit", "dos", "manual" for
	// switches; the operator's reason for role actions). Informational.
	Reason string `json:"reason,omitempty"`
	// RestoredIndex is the log index of the replica's last "restored" (0:
	// never). An alert committed before it reports a state the restore
	// wiped out.
	RestoredIndex uint64 `json:"restored_index,omitempty"`
}

// Intent is an open switch: committed, not yet reported done. At most one per
// service; the reconciler completes it (docs/design.md §5).
type Intent struct {
	Generation uint64 `json:"generation"` // service generation the switch produced
	From       string `json:"from"`
	To         string `json:"to"`
	Reason     string `json:"reason"`
	Mode       string `json:"mode"`
	OpenedAt   int64  `json:"opened_at"` // unix nanoseconds, from the command
	Index      uint64 `json:"index"`     // log index of the Switch
}

// SwitchRecord is one switch in a service's history, with its measurements
// once SwitchDone arrived.
type SwitchRecord struct {
	Generation   uint64 `json:"generation"`
	Service      string `json:"service"`
	From         string `json:"from"`
	To           string `json:"to"`
	Reason       string `json:"reason"`
	Mode         string `json:"mode"`
	FromImpl     string `json:"from_impl"`
	ToImpl       string `json:"to_impl"`
	FromPlatform string `json:"from_platform"`
	ToPlatform   string `json:"to_platform"`
	StartedAt    int64  `json:"started_at"` // unix nanoseconds (Switch.At)
	DoneAt       int64  `json:"done_at"`    // unix nanoseconds (SwitchDone.At)
	// DetectionMS is from the trigger (the first failed probe of a DoS
	// verdict, an alert's time) to the decision; SwitchMS from the
	// decision to the first answer through the service address after the
	// critical path; TotalMS is their sum: trigger to verified. TotalMS is
	// not downtime: during a make-before-break switch the old replica
	// keeps answering (see OutageMS and ExposureMS).
	DetectionMS float64 `json:"detection_ms"`
	SwitchMS    float64 `json:"switch_ms"`
	TotalMS     float64 `json:"total_ms"`
	// LostQueries was never measured (always 0); kept only so that
	// snapshots of earlier builds decode. See ProbesLost.
	LostQueries int    `json:"lost_queries,omitempty"`
	Done        bool   `json:"done"`
	Index       uint64 `json:"index"` // log index of the Switch
	// AlertID names the ledger entry (alert or manual request) the switch
	// answered, if any.
	AlertID string `json:"alert_id,omitempty"`

	// What the leader measured, each absent (nil) when it could not be
	// measured (a switch completed by a later leader, no probes, the last
	// answer before the trigger not seen by the leader's probes).
	//
	// OutageMS is the outage clients could see, as the leader's probes of
	// the service address saw it: the time without a valid answer between
	// the last answer before the trigger and the first answer after the
	// switch. ProbesSent and ProbesLost count the probes sent in that
	// span and those that got no valid answer. Zero for a
	// make-before-break switch in which every probe was answered.
	OutageMS   *float64 `json:"outage_ms,omitempty"`
	ProbesSent *int     `json:"probes_sent,omitempty"`
	ProbesLost *int     `json:"probes_lost,omitempty"`
	// ExposureMS is how long the replica switched away from stayed on the
	// service network after the trigger (until its detach returned): for an
	// exploit, how long the exploited replica kept serving.
	ExposureMS *float64 `json:"exposure_ms,omitempty"`
	// Handover is how the address reached the new replica: "address"
	// (its replica agent claimed it) or "nic" (the platform connected its
	// NIC). OldHeldMS is how long the replica switched away from kept
	// the address after the new one had it: until its agent released it
	// or its NIC was disconnected, whichever came first (0 when it was
	// off before the new one took it).
	Handover  string   `json:"handover,omitempty"`
	OldHeldMS *float64 `json:"old_held_ms,omitempty"`
}

// Service is the replicated state of one service.
type Service struct {
	Spec         ServiceSpec    `json:"spec"`
	Generation   uint64         `json:"generation"`
	Replicas     []ReplicaState `json:"replicas"` // in spec order
	Intent       *Intent        `json:"intent,omitempty"`
	History      []SwitchRecord `json:"history"` // bounded (HistoryLimit), newest last
	UpdatedIndex uint64         `json:"updated_index"`
}

// Active returns the active replica.
func (s Service) Active() (ReplicaState, bool) { return s.withRole(RoleActive) }

// Standby returns the standby replica.
func (s Service) Standby() (ReplicaState, bool) { return s.withRole(RoleStandby) }

func (s Service) withRole(r Role) (ReplicaState, bool) {
	for _, rs := range s.Replicas {
		if rs.Role == r {
			return rs, true
		}
	}
	return ReplicaState{}, false
}

// Replica returns the state of the named replica.
func (s Service) Replica(name string) (ReplicaState, bool) {
	if i := s.replicaIndex(name); i >= 0 {
		return s.Replicas[i], true
	}
	return ReplicaState{}, false
}

func (s Service) replicaIndex(name string) int {
	for i, rs := range s.Replicas {
		if rs.Name == name {
			return i
		}
	}
	return -1
}

// Clone returns a deep copy of s: nothing in the copy shares memory with s.
func (s Service) Clone() Service {
	c := s
	c.Spec = s.Spec.Clone()
	c.Replicas = slices.Clone(s.Replicas)
	if c.Replicas == nil {
		c.Replicas = []ReplicaState{}
	}
	if s.Intent != nil {
		in := *s.Intent
		c.Intent = &in
	}
	c.History = slices.Clone(s.History)
	if c.History == nil {
		c.History = []SwitchRecord{}
	}
	for i := range c.History {
		c.History[i] = c.History[i].Clone()
	}
	return c
}

// Clone returns a copy of r that shares no memory with it.
func (r SwitchRecord) Clone() SwitchRecord {
	r.OutageMS = cloneVal(r.OutageMS)
	r.ProbesSent = cloneVal(r.ProbesSent)
	r.ProbesLost = cloneVal(r.ProbesLost)
	r.ExposureMS = cloneVal(r.ExposureMS)
	r.OldHeldMS = cloneVal(r.OldHeldMS)
	return r
}

// cloneVal returns a pointer to a copy of *p (nil for nil).
func cloneVal[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// AlertRecord is one committed alert in the ledger.
type AlertRecord struct {
	ID       string `json:"id"`
	Service  string `json:"service"`
	Replica  string `json:"replica"`
	Kind     string `json:"kind"` // "exploit" | "dos" | "manual"
	Source   string `json:"source"`
	Evidence string `json:"evidence"`
	At       int64  `json:"at"`      // unix nanoseconds, from the detector
	Index    uint64 `json:"index"`   // log index of the commit
	Outcome  string `json:"outcome"` // "" until a later command records what the controller did
}
