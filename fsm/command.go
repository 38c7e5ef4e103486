package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
)

// CommandVersion is the envelope version this package writes and the only
// one it reads.
const CommandVersion = 1

// CommandType names a command in the envelope.
type CommandType string

// Command types.
const (
	CmdServiceApply  CommandType = "service.apply"
	CmdServiceDelete CommandType = "service.delete"
	CmdSwitch        CommandType = "switch"
	CmdSwitchDone    CommandType = "switch.done"
	CmdReplicaRole   CommandType = "replica.role"
	CmdAlert         CommandType = "alert"
	CmdAlertOutcome  CommandType = "alert.outcome"
	// CmdSwitchRequest is newer than the others: a node built before it
	// halts on it (an unknown command is a hard error) instead of
	// diverging, so upgrade every node before a leader writes one.
	CmdSwitchRequest CommandType = "switch.request"
	// CmdNotifyCursor records how far a notification sink got (level 3).
	CmdNotifyCursor CommandType = "notify.cursor"
	// Records for the event stream (level 4): they change no state.
	CmdLeader  CommandType = "leader"
	CmdMember  CommandType = "member"
	CmdVerdict CommandType = "verdict"
)

// Command is the body of a log entry. Every body type below implements it
// with a value receiver, so both T and *T may be passed to Encode; Decode
// returns values (T, never *T).
type Command interface{ Type() CommandType }

// ServiceApply creates a service or updates its spec.
type ServiceApply struct {
	Spec             ServiceSpec `json:"spec"`
	ExpectGeneration uint64      `json:"expect_generation,omitempty"` // 0 = any
}

// ServiceDelete deletes a service.
type ServiceDelete struct {
	Name             string `json:"name"`
	ExpectGeneration uint64 `json:"expect_generation,omitempty"` // 0 = any
}

// Switch moves the service from its active replica to another one.
type Switch struct {
	Service string `json:"service"`
	// From must be the current active replica. "" means "the current active
	// replica" (operator switches); the controller always names it.
	From string `json:"from"`
	// To must be a standby or suspended replica. "" means "the current standby".
	To     string `json:"to"`
	Reason string `json:"reason"` // "dos" | "exploit" | "manual"
	// Mode is "make-before-break", "break-before-make" or "parallel"; "" takes the
	// policy's mode for the reason (make-before-break for manual).
	Mode string `json:"mode,omitempty"`
	// NextStandby is used as the next standby if it is eligible; otherwise
	// (or if "") the FSM picks one by diversity (PickStandby).
	NextStandby      string `json:"next_standby,omitempty"`
	ExpectGeneration uint64 `json:"expect_generation,omitempty"` // 0 = any; required to supersede an open switch
	At               int64  `json:"at"`                          // unix nanoseconds, decided by the leader
	// AlertID, when set, names the ledger alert this switch handles: the FSM
	// records "switch" as that alert's Outcome (if it is still held).
	AlertID string `json:"alert_id,omitempty"`
}

// SwitchDone closes the open switch of a service and records its measurements.
type SwitchDone struct {
	Service     string  `json:"service"`
	Generation  uint64  `json:"generation"` // must be the open intent's generation
	DetectionMS float64 `json:"detection_ms"`
	SwitchMS    float64 `json:"switch_ms"`
	TotalMS     float64 `json:"total_ms"`
	// LostQueries is not measured by anyone: earlier builds wrote it as 0 in
	// every entry. It stays so that their entries still decode; this build
	// never sets it (ProbesLost is what the leader measures).
	LostQueries int   `json:"lost_queries,omitempty"`
	At          int64 `json:"at"` // unix nanoseconds

	// The fields below are optional (added within version 1, absent when
	// not measured; see SwitchRecord for their meaning). OutageMS,
	// ProbesSent and ProbesLost come together or not at all.
	OutageMS   *float64 `json:"outage_ms,omitempty"`
	ProbesSent *int     `json:"probes_sent,omitempty"`
	ProbesLost *int     `json:"probes_lost,omitempty"`
	ExposureMS *float64 `json:"exposure_ms,omitempty"`
	// Handover and OldHeldMS: see SwitchRecord (format level 6).
	Handover  string   `json:"handover,omitempty"`
	OldHeldMS *float64 `json:"old_held_ms,omitempty"`
}

// ReplicaRole applies a role action to one replica.
type ReplicaRole struct {
	Service          string `json:"service"`
	Replica          string `json:"replica"`
	Action           string `json:"action"` // "quarantine" | "restored" | "maintenance" | "release"
	ExpectGeneration uint64 `json:"expect_generation,omitempty"`
	Reason           string `json:"reason,omitempty"`
	// AlertID, when set, names the ledger alert this action handles: the FSM
	// records the action as that alert's Outcome (if it is still held).
	AlertID string `json:"alert_id,omitempty"`
}

// AlertOutcome records what the controller decided about a ledger alert
// when the decision commits nothing else (ignored, damped, no eligible
// replica), so that a later leader does not handle the alert again.
type AlertOutcome struct {
	ID      string `json:"id"`
	Outcome string `json:"outcome"`
}

// SwitchRequest records an operator's request to switch a service in the
// alert ledger, as an entry of kind manual (Replica = To, Evidence =
// Reason). It does not switch by itself: the leader loop decides it like
// an alert, and answers it with a Switch or an alert.outcome.
type SwitchRequest struct {
	ID      string `json:"id"`
	Service string `json:"service"`
	// To names the replica to switch to; "" lets the leader pick.
	To     string `json:"to,omitempty"`
	Reason string `json:"reason,omitempty"`
	Source string `json:"source,omitempty"` // the caller (token name)
	At     int64  `json:"at"`               // unix nanoseconds, from the API server
}

// Alert records a detector's alert in the ledger. It does not switch by
// itself: the controller decides.
type Alert struct {
	ID       string `json:"id"`
	Service  string `json:"service"`
	Replica  string `json:"replica"`
	Kind     string `json:"kind"` // "exploit" | "dos" | "manual"
	Source   string `json:"source,omitempty"`
	Evidence string `json:"evidence,omitempty"`
	At       int64  `json:"at"` // unix nanoseconds, from the detector
}

// NotifyCursor records that the leader's notifier has handled (delivered,
// given up on or dropped) the events up to Index for the sink named Sink,
// so that a later leader starts that sink after Index. A cursor only moves
// forward: one at or below the recorded index changes nothing.
type NotifyCursor struct {
	Sink  string `json:"sink"`
	Index uint64 `json:"index"`
}

// Leader records that a node won an election and took up the leader's
// work (its term is the entry's). It changes no state: it is there so
// that the event stream and notifications tell of leader changes.
type Leader struct {
	Node string `json:"node"`
	At   int64  `json:"at"` // unix nanoseconds
}

// Member records a change of a cluster member as the leader saw it: its
// gossip status, or whether it votes in Raft. It changes no state.
type Member struct {
	Node   string `json:"node"`
	Status string `json:"status"` // MemberStatuses
	Voter  bool   `json:"voter"`
	At     int64  `json:"at"` // unix nanoseconds
}

// MemberStatuses are the gossip statuses a Member record may carry.
var MemberStatuses = []string{"alive", "suspect", "dead", "left"}

// Verdict records a DoS verdict the leader decided on that committed
// nothing else: damped, no eligible replica, ignored. (A verdict that
// switches is the switch's entry.) It changes no state.
type Verdict struct {
	Service       string  `json:"service"`
	Replica       string  `json:"replica"`
	DetectionMS   float64 `json:"detection_ms"`
	Confirmations int     `json:"confirmations"`
	Quorum        bool    `json:"quorum,omitempty"`
	Outcome       string  `json:"outcome"`
	Reason        string  `json:"reason,omitempty"`
	At            int64   `json:"at"` // unix nanoseconds
}

// Type implements Command.
func (Leader) Type() CommandType { return CmdLeader }

// Type implements Command.
func (Member) Type() CommandType { return CmdMember }

// Type implements Command.
func (Verdict) Type() CommandType { return CmdVerdict }

// Type implements Command.
func (ServiceApply) Type() CommandType { return CmdServiceApply }

// Type implements Command.
func (ServiceDelete) Type() CommandType { return CmdServiceDelete }

// Type implements Command.
func (Switch) Type() CommandType { return CmdSwitch }

// Type implements Command.
func (SwitchDone) Type() CommandType { return CmdSwitchDone }

// Type implements Command.
func (ReplicaRole) Type() CommandType { return CmdReplicaRole }

// Type implements Command.
func (Alert) Type() CommandType { return CmdAlert }

// Type implements Command.
func (AlertOutcome) Type() CommandType { return CmdAlertOutcome }

// Type implements Command.
func (SwitchRequest) Type() CommandType { return CmdSwitchRequest }

// Type implements Command.
func (NotifyCursor) Type() CommandType { return CmdNotifyCursor }

// Envelope is the header of an encoded command:
// {"v":1,"type":"switch","term":7,"body":{...}}.
type Envelope struct {
	V    int         `json:"v"`
	Type CommandType `json:"type"`
	// Term of the leader that issued the command; 0 = not bound to a term.
	Term uint64 `json:"term"`
}

type wireEnvelope struct {
	V    int             `json:"v"`
	Type CommandType     `json:"type"`
	Term uint64          `json:"term"`
	Body json.RawMessage `json:"body"`
}

// handler is one row of the command table: how to decode a body and how to
// apply it.
type handler struct {
	decode func(body []byte) (Command, error)
	apply  func(m *Machine, e entry, c Command) (Result, error)
}

// handlers is the command table. Adding a command means adding a row here;
// changing the meaning or the body of an existing one means a new
// CommandVersion (old entries must still apply the old way).
var handlers = map[CommandType]handler{
	CmdServiceApply:  {decodeBody[ServiceApply], applyServiceApply},
	CmdServiceDelete: {decodeBody[ServiceDelete], applyServiceDelete},
	CmdSwitch:        {decodeBody[Switch], applySwitch},
	CmdSwitchDone:    {decodeBody[SwitchDone], applySwitchDone},
	CmdReplicaRole:   {decodeBody[ReplicaRole], applyReplicaRole},
	CmdAlert:         {decodeBody[Alert], applyAlert},
	CmdAlertOutcome:  {decodeBody[AlertOutcome], applyAlertOutcome},
	CmdSwitchRequest: {decodeBody[SwitchRequest], applySwitchRequest},
	CmdNotifyCursor:  {decodeBody[NotifyCursor], applyNotifyCursor},
	CmdLeader:        {decodeBody[Leader], applyLeader},
	CmdMember:        {decodeBody[Member], applyMember},
	CmdVerdict:       {decodeBody[Verdict], applyVerdict},
}

func decodeBody[T Command](body []byte) (Command, error) {
	var c T
	if err := decodeStrict(body, &c); err != nil {
		return nil, err
	}
	return c, nil
}

// Encode wraps c in a version-1 envelope for the given leader term (0 = not
// bound to a term). It refuses (ErrInvalid / ErrUnknownCommand) anything
// Decode would not read back, so an entry that would halt every node is never
// written.
func Encode(term uint64, c Command) ([]byte, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: encode: nil command", ErrInvalid)
	}
	if v := reflect.ValueOf(c); v.Kind() == reflect.Pointer && v.IsNil() {
		return nil, fmt.Errorf("%w: encode: nil %T", ErrInvalid, c)
	}
	t := c.Type()
	if _, ok := handlers[t]; !ok {
		return nil, fmt.Errorf("%w: encode: command type %q", ErrUnknownCommand, t)
	}
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("%w: encode %s: %v", ErrInvalid, t, err)
	}
	out, err := json.Marshal(wireEnvelope{V: CommandVersion, Type: t, Term: term, Body: body})
	if err != nil {
		return nil, fmt.Errorf("%w: encode %s: %v", ErrInvalid, t, err)
	}
	if _, back, err := Decode(out); err != nil {
		return nil, fmt.Errorf("%w: encode %s: does not decode: %v", ErrInvalid, t, err)
	} else if !reflect.DeepEqual(deref(c), back) {
		return nil, fmt.Errorf("%w: encode %s: %T does not round-trip", ErrInvalid, t, c)
	}
	return out, nil
}

// deref returns the value a pointer command points to.
func deref(c Command) any {
	v := reflect.ValueOf(c)
	if v.Kind() == reflect.Pointer {
		return v.Elem().Interface()
	}
	return c
}

// Decode strictly decodes an encoded command: unknown fields anywhere,
// trailing data, a missing or non-object body are ErrCorrupt; an unknown
// envelope version or command type is ErrUnknownCommand. On error the
// returned Envelope holds whatever header fields were decoded (for logging).
// The body is only decoded, not validated: semantic checks happen in Apply.
func Decode(data []byte) (Envelope, Command, error) {
	var w wireEnvelope
	if err := decodeStrict(data, &w); err != nil {
		return Envelope{}, nil, fmt.Errorf("%w: envelope: %v", ErrCorrupt, err)
	}
	env := Envelope{V: w.V, Type: w.Type, Term: w.Term}
	switch {
	case w.V == 0:
		return env, nil, fmt.Errorf("%w: envelope: missing version \"v\"", ErrCorrupt)
	case w.V != CommandVersion:
		return env, nil, fmt.Errorf("%w: envelope version %d (this node reads version %d; upgrade it)", ErrUnknownCommand, w.V, CommandVersion)
	case w.Type == "":
		return env, nil, fmt.Errorf("%w: envelope: missing \"type\"", ErrCorrupt)
	}
	h, ok := handlers[w.Type]
	if !ok {
		return env, nil, fmt.Errorf("%w: command type %q (this node may need an upgrade)", ErrUnknownCommand, w.Type)
	}
	body := bytes.TrimSpace(w.Body)
	if len(body) == 0 || body[0] != '{' {
		return env, nil, fmt.Errorf("%w: %s: body must be a JSON object", ErrCorrupt, w.Type)
	}
	c, err := h.decode(body)
	if err != nil {
		return env, nil, fmt.Errorf("%w: %s body: %v", ErrCorrupt, w.Type, err)
	}
	return env, c, nil
}

// ServiceOf is the service a command names ("" for alert.outcome, which
// names an alert, notify.cursor, which names a sink, and the leader and
// member records, which name a node).
func ServiceOf(c Command) string {
	switch c := c.(type) {
	case ServiceApply:
		return c.Spec.Name
	case ServiceDelete:
		return c.Name
	case Switch:
		return c.Service
	case SwitchDone:
		return c.Service
	case ReplicaRole:
		return c.Service
	case SwitchRequest:
		return c.Service
	case Alert:
		return c.Service
	case Verdict:
		return c.Service
	}
	return ""
}
