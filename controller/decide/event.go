package decide

import (
	"fmt"
	"time"

	"github.com/ars-project/ars/fsm"
)

// Event is what Decide reacts to: a DoSVerdict, an Alert or a ManualSwitch.
// The set is closed (the interface has an unexported method); Decide switches
// on the concrete type.
type Event interface {
	// ServiceName names the service the event concerns.
	ServiceName() string
	// String describes the event in one line, for logs and golden files.
	String() string
	event()
}

// DoSVerdict is a probe verdict: the service stopped answering while Replica
// was the active one.
type DoSVerdict struct {
	Service string
	// Replica is the replica that was active when the failing probes were
	// sent (the probe reads it from the replicated state). A verdict on a
	// replica that is no longer active is stale and ignored.
	Replica string
	// DetectedAt is when the verdict was reached (leader clock). A verdict
	// reached before Replica took over is stale. Zero skips that check.
	DetectedAt time.Time
	// Detection is how long detection took: first failed probe to verdict.
	// Informational (it goes into the decision's reason).
	Detection time.Duration
	// Confirmations is how many nodes' probes agree, the leader's included.
	// Informational.
	Confirmations int
	// Quorum reports that a quorum of voters confirmed the verdict. Required
	// when the service's probe.confirm is "quorum", ignored otherwise.
	Quorum bool
	// AnsweredAt is the latest valid answer the leader's probes got from
	// the service after Replica was attached to it (zero: none since then).
	// A replica that answered after the switch that made it active started
	// has served; a verdict against it is a new failure, not the switch's
	// own gap, and is not flap-damped when a replica of another impl can
	// take over (see damp).
	AnsweredAt time.Time
}

// Alert is a committed detector alert (see AlertFromRecord).
type Alert struct {
	ID      string
	Service string
	Replica string
	Kind    string // fsm.KindExploit | fsm.KindDoS
	Source  string // detector name, e.g. "apparmor", "seconddep"; informational
	// Index is the log index the alert was committed at (0: unknown). An
	// alert committed before its replica's last restore is about a state
	// that no longer exists.
	Index uint64
}

// AlertFromRecord returns the event for a committed alert of the ledger.
func AlertFromRecord(r fsm.AlertRecord) Alert {
	return Alert{ID: r.ID, Service: r.Service, Replica: r.Replica, Kind: r.Kind, Source: r.Source, Index: r.Index}
}

// EventFromRecord returns the event for any ledger entry: a ManualSwitch
// for an operator's request (kind manual: the replica is the target, the
// evidence the operator's reason), an Alert otherwise.
func EventFromRecord(r fsm.AlertRecord) Event {
	if r.Kind == fsm.KindManual {
		return ManualSwitch{Service: r.Service, To: r.Replica, Reason: r.Evidence}
	}
	return AlertFromRecord(r)
}

// ManualSwitch is an operator's request to move the service off its active
// replica.
type ManualSwitch struct {
	Service string
	// To names the replica to switch to; "" lets Decide pick the best one by
	// diversity, as for an attack on the active replica.
	To string
	// Reason is the operator's free text; it goes into the decision's reason
	// (the fsm Switch command has no field for it).
	Reason string
}

// ServiceName implements Event.
func (e DoSVerdict) ServiceName() string { return e.Service }

// ServiceName implements Event.
func (e Alert) ServiceName() string { return e.Service }

// ServiceName implements Event.
func (e ManualSwitch) ServiceName() string { return e.Service }

func (DoSVerdict) event()   {}
func (Alert) event()        {}
func (ManualSwitch) event() {}

// String implements Event.
func (e DoSVerdict) String() string {
	s := fmt.Sprintf("dos verdict service=%s replica=%s detection=%s confirmations=%d quorum=%t",
		e.Service, e.Replica, e.Detection, e.Confirmations, e.Quorum)
	if !e.DetectedAt.IsZero() {
		s += " detected_at=" + e.DetectedAt.UTC().Format(time.RFC3339Nano)
	}
	if !e.AnsweredAt.IsZero() {
		s += " answered_at=" + e.AnsweredAt.UTC().Format(time.RFC3339Nano)
	}
	return s
}

// String implements Event.
func (e Alert) String() string {
	return fmt.Sprintf("alert id=%q service=%s replica=%s kind=%s source=%q", e.ID, e.Service, e.Replica, e.Kind, e.Source)
}

// String implements Event.
func (e ManualSwitch) String() string {
	to := e.To
	if to == "" {
		to = "(best)"
	}
	return fmt.Sprintf("manual switch service=%s to=%s reason=%q", e.Service, to, e.Reason)
}
