package fsm

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Limits on free text in commands.
const (
	maxIDLen       = 256
	maxSourceLen   = 256
	maxReasonLen   = 256
	maxEvidenceLen = 4096
)

// setRole changes the role of replica i, recording when and why.
func setRole(svc *Service, i int, r Role, index uint64, reason string) {
	rs := &svc.Replicas[i]
	rs.Role = r
	rs.Since = index
	rs.Reason = reason
	switch r {
	case RoleQuarantined, RoleRecovering:
		rs.Clean = false
	}
}

// ensureStandby makes a standby out of the best eligible replica (relative
// to the active one) if the service has none.
func ensureStandby(svc *Service, index uint64) {
	if _, ok := svc.Standby(); ok {
		return
	}
	if name, ok := PickStandby(*svc, ""); ok {
		setRole(svc, svc.replicaIndex(name), RoleStandby, index, "picked as standby")
	}
}

// roleMap returns name -> role.
func roleMap(svc *Service) map[string]Role {
	m := make(map[string]Role, len(svc.Replicas))
	for _, rs := range svc.Replicas {
		m[rs.Name] = rs.Role
	}
	return m
}

func sameRoles(a, b map[string]Role) bool {
	if len(a) != len(b) {
		return false
	}
	for name, r := range a {
		if br, ok := b[name]; !ok || br != r {
			return false
		}
	}
	return true
}

// ---- service.apply -------------------------------------------------------

func applyServiceApply(m *Machine, e entry, c Command) (Result, error) {
	a := c.(ServiceApply)
	res := Result{Index: e.index}
	spec := a.Spec.Clone()
	spec.Normalize()
	if err := spec.validate(); err != nil {
		return res, fmt.Errorf("%w: service %q: %v", ErrInvalid, spec.Name, err)
	}
	old, exists := m.services[spec.Name]
	if !exists {
		if a.ExpectGeneration != 0 {
			return res, fmt.Errorf("%w: service %q does not exist, command expects generation %d",
				ErrStaleGeneration, spec.Name, a.ExpectGeneration)
		}
		svc := newService(spec, m.deleted[spec.Name]+1, e.index)
		if err := m.commit(svc); err != nil {
			return res, err
		}
		delete(m.deleted, spec.Name)
		return Result{Index: e.index, Service: svc.Spec.Name, Generation: svc.Generation}, nil
	}
	if err := checkGeneration(old, a.ExpectGeneration); err != nil {
		return res, err
	}
	if old.Spec.Equal(spec) {
		return Result{Index: e.index, Service: old.Spec.Name, Generation: old.Generation}, nil
	}

	svc := old.Clone()
	inNew := make(map[string]bool, len(spec.Replicas))
	for _, r := range spec.Replicas {
		inNew[r.Name] = true
	}
	for _, rs := range svc.Replicas {
		if inNew[rs.Name] {
			continue
		}
		switch {
		case rs.Role == RoleActive:
			return res, fmt.Errorf("%w: service %q: cannot remove replica %q: it is active; switch away from it first",
				ErrConflict, spec.Name, rs.Name)
		case !rs.Clean:
			return res, fmt.Errorf("%w: service %q: cannot remove replica %q: it is %s; restore it first (a dirty replica is never forgotten)",
				ErrConflict, spec.Name, rs.Name, rs.Role)
		case svc.Intent != nil && (svc.Intent.From == rs.Name || svc.Intent.To == rs.Name):
			return res, fmt.Errorf("%w: service %q: cannot remove replica %q: it is part of the open switch (generation %d); wait for switch.done",
				ErrConflict, spec.Name, rs.Name, svc.Intent.Generation)
		}
	}
	before := roleMap(&svc)
	states := make([]ReplicaState, 0, len(spec.Replicas))
	for _, r := range spec.Replicas {
		if i := svc.replicaIndex(r.Name); i >= 0 {
			states = append(states, svc.Replicas[i])
			continue
		}
		states = append(states, ReplicaState{Name: r.Name, Role: RoleSuspended, Health: HealthUnknown,
			Clean: true, Since: e.index, Reason: "added"})
	}
	svc.Spec = spec
	svc.Replicas = states
	ensureStandby(&svc, e.index)
	if !sameRoles(before, roleMap(&svc)) {
		svc.Generation++
	}
	svc.UpdatedIndex = e.index
	if err := m.commit(svc); err != nil {
		return res, err
	}
	return Result{Index: e.index, Service: svc.Spec.Name, Generation: svc.Generation}, nil
}

// newService builds the initial state: the first replica (spec order) is
// active, the standby is picked by PickStandby, every other one is suspended.
func newService(spec ServiceSpec, generation, index uint64) Service {
	svc := Service{
		Spec:         spec,
		Generation:   generation,
		Replicas:     make([]ReplicaState, len(spec.Replicas)),
		History:      []SwitchRecord{},
		UpdatedIndex: index,
	}
	for i, r := range spec.Replicas {
		svc.Replicas[i] = ReplicaState{Name: r.Name, Role: RoleSuspended, Health: HealthUnknown,
			Clean: true, Since: index, Reason: "created"}
	}
	svc.Replicas[0].Role = RoleActive
	ensureStandby(&svc, index)
	return svc
}

// ---- service.delete ------------------------------------------------------

func applyServiceDelete(m *Machine, e entry, c Command) (Result, error) {
	d := c.(ServiceDelete)
	res := Result{Index: e.index}
	svc, err := m.lookup(d.Name)
	if err != nil {
		return res, err
	}
	if err := checkGeneration(svc, d.ExpectGeneration); err != nil {
		return res, err
	}
	var dirty []string
	for _, rs := range svc.Replicas {
		if !rs.Clean {
			dirty = append(dirty, rs.Name)
		}
	}
	if len(dirty) > 0 {
		return res, fmt.Errorf("%w: service %q: cannot delete: replicas %s are quarantined or recovering; restore them first",
			ErrConflict, d.Name, replicaNames(dirty))
	}
	delete(m.services, d.Name)
	m.deleted[d.Name] = svc.Generation
	return Result{Index: e.index, Service: d.Name, Generation: svc.Generation}, nil
}

// ---- switch --------------------------------------------------------------

func validateSwitch(s Switch) error {
	switch {
	case s.Service == "":
		return errors.New("service: required")
	case s.Reason != ReasonDoS && s.Reason != ReasonExploit && s.Reason != ReasonManual:
		return fmt.Errorf("reason: %q must be %q, %q or %q", s.Reason, ReasonDoS, ReasonExploit, ReasonManual)
	case s.Mode != "" && !ValidMode(s.Mode):
		return fmt.Errorf("mode: %q must be %s", s.Mode, ModeChoices)
	case s.At < 0:
		return fmt.Errorf("at: %d must not be negative", s.At)
	case len(s.AlertID) > maxIDLen:
		return fmt.Errorf("alert_id: longer than %d bytes", maxIDLen)
	}
	return nil
}

func applySwitch(m *Machine, e entry, c Command) (Result, error) {
	s := c.(Switch)
	res := Result{Index: e.index}
	if err := validateSwitch(s); err != nil {
		return res, fmt.Errorf("%w: switch of service %q: %v", ErrInvalid, s.Service, err)
	}
	old, err := m.lookup(s.Service)
	if err != nil {
		return res, err
	}
	if err := checkGeneration(old, s.ExpectGeneration); err != nil {
		return res, err
	}
	if old.Intent != nil && s.ExpectGeneration == 0 {
		return res, fmt.Errorf("%w: service %q: switch generation %d is still open; a new switch must expect generation %d to supersede it",
			ErrConflict, s.Service, old.Intent.Generation, old.Generation)
	}
	svc := old.Clone()
	active, ok := svc.Active()
	if !ok {
		return res, fmt.Errorf("%w: service %q has no active replica", ErrConflict, s.Service)
	}

	from := s.From
	if from == "" {
		from = active.Name
	}
	fi := svc.replicaIndex(from)
	if fi < 0 {
		return res, fmt.Errorf("%w: service %q has no replica %q (from)", ErrUnknownReplica, s.Service, from)
	}
	if svc.Replicas[fi].Role != RoleActive {
		return res, fmt.Errorf("%w: service %q: from: replica %q is %s, not active (active is %q)",
			ErrConflict, s.Service, from, svc.Replicas[fi].Role, active.Name)
	}

	to := s.To
	if to == "" {
		sb, ok := svc.Standby()
		if !ok {
			return res, fmt.Errorf("%w: service %q has no standby; name the replica to switch to", ErrConflict, s.Service)
		}
		to = sb.Name
	}
	ti := svc.replicaIndex(to)
	if ti < 0 {
		return res, fmt.Errorf("%w: service %q has no replica %q (to)", ErrUnknownReplica, s.Service, to)
	}
	if ti == fi {
		return res, fmt.Errorf("%w: service %q: to: replica %q is already active", ErrConflict, s.Service, to)
	}
	if t := svc.Replicas[ti]; !t.Role.Eligible() || !t.Clean {
		hint := ""
		switch t.Role {
		case RoleQuarantined, RoleRecovering:
			hint = "; it must be restored first"
		case RoleMaintenance:
			hint = "; release it first"
		}
		return res, fmt.Errorf("%w: service %q: to: replica %q is %s; only a standby or suspended replica can become active%s",
			ErrConflict, s.Service, to, t.Role, hint)
	}
	ni := -1
	if s.NextStandby != "" {
		if ni = svc.replicaIndex(s.NextStandby); ni < 0 {
			return res, fmt.Errorf("%w: service %q has no replica %q (next_standby)", ErrUnknownReplica, s.Service, s.NextStandby)
		}
	}

	mode := s.Mode
	if mode == "" {
		switch s.Reason {
		case ReasonExploit:
			mode = svc.Spec.Policy.ExploitMode
		case ReasonDoS:
			mode = svc.Spec.Policy.DoSMode
		default:
			mode = ModeMakeBeforeBreak
		}
	}

	switch s.Reason {
	case ReasonExploit:
		setRole(&svc, fi, RoleQuarantined, e.index, s.Reason)
	case ReasonDoS:
		setRole(&svc, fi, RoleRecovering, e.index, s.Reason)
	default:
		setRole(&svc, fi, RoleSuspended, e.index, s.Reason)
	}
	setRole(&svc, ti, RoleActive, e.index, s.Reason)

	next := ""
	if ni >= 0 && ni != ti {
		if n := svc.Replicas[ni]; n.Role.Eligible() && n.Clean {
			next = n.Name
		}
	}
	if next == "" {
		next, _ = PickStandby(svc, from)
	}
	for i, rs := range svc.Replicas {
		if rs.Role == RoleStandby && rs.Name != next {
			setRole(&svc, i, RoleSuspended, e.index, "standby replaced")
		}
	}
	if next != "" {
		if i := svc.replicaIndex(next); svc.Replicas[i].Role != RoleStandby {
			setRole(&svc, i, RoleStandby, e.index, "picked as standby")
		}
	}

	svc.Generation++
	svc.Intent = &Intent{Generation: svc.Generation, From: from, To: to, Reason: s.Reason, Mode: mode,
		OpenedAt: s.At, Index: e.index}
	fs, _ := svc.Spec.Replica(from)
	ts, _ := svc.Spec.Replica(to)
	svc.History = appendBounded(svc.History, SwitchRecord{
		Generation: svc.Generation, Service: s.Service, From: from, To: to, Reason: s.Reason, Mode: mode,
		FromImpl: fs.Impl, ToImpl: ts.Impl, FromPlatform: fs.Platform, ToPlatform: ts.Platform,
		StartedAt: s.At, Index: e.index, AlertID: s.AlertID,
	}, HistoryLimit)
	svc.UpdatedIndex = e.index
	if err := m.commit(svc); err != nil {
		return res, err
	}
	m.recordOutcome(s.AlertID, "switch")
	return Result{Index: e.index, Service: s.Service, Generation: svc.Generation}, nil
}

// appendBounded appends r and drops the oldest records beyond limit. It
// always returns a fresh slice when it drops, so no hidden capacity grows.
func appendBounded(h []SwitchRecord, r SwitchRecord, limit int) []SwitchRecord {
	h = append(h, r)
	if len(h) > limit {
		out := make([]SwitchRecord, limit)
		copy(out, h[len(h)-limit:])
		return out
	}
	return h
}

// ---- switch.done ---------------------------------------------------------

func validateSwitchDone(d SwitchDone) error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"detection_ms", d.DetectionMS}, {"switch_ms", d.SwitchMS}, {"total_ms", d.TotalMS}} {
		if !(f.v >= 0) || math.IsInf(f.v, 0) {
			return fmt.Errorf("%s: %v must be a finite number >= 0", f.name, f.v)
		}
	}
	switch {
	case d.Service == "":
		return errors.New("service: required")
	case d.Generation == 0:
		return errors.New("generation: required")
	case d.LostQueries < 0:
		return fmt.Errorf("lost_queries: %d must not be negative", d.LostQueries)
	case d.At < 0:
		return fmt.Errorf("at: %d must not be negative", d.At)
	case (d.OutageMS == nil) != (d.ProbesSent == nil) || (d.OutageMS == nil) != (d.ProbesLost == nil):
		return errors.New("outage_ms, probes_sent and probes_lost: give all three or none")
	case d.Handover != "" && d.Handover != "nic" && d.Handover != HandoverAddress:
		return fmt.Errorf("handover: %q must be \"nic\" or %q", d.Handover, HandoverAddress)
	}
	for _, f := range []struct {
		name string
		v    *float64
	}{{"outage_ms", d.OutageMS}, {"exposure_ms", d.ExposureMS}, {"old_held_ms", d.OldHeldMS}} {
		if f.v != nil && (!(*f.v >= 0) || math.IsInf(*f.v, 0)) {
			return fmt.Errorf("%s: %v must be a finite number >= 0", f.name, *f.v)
		}
	}
	if d.ProbesSent != nil {
		if sent, lost := *d.ProbesSent, *d.ProbesLost; lost < 0 || sent < lost {
			return fmt.Errorf("probes_lost %d, probes_sent %d: want 0 <= lost <= sent", lost, sent)
		}
	}
	return nil
}

func applySwitchDone(m *Machine, e entry, c Command) (Result, error) {
	d := c.(SwitchDone)
	res := Result{Index: e.index}
	if err := validateSwitchDone(d); err != nil {
		return res, fmt.Errorf("%w: switch.done of service %q: %v", ErrInvalid, d.Service, err)
	}
	old, err := m.lookup(d.Service)
	if err != nil {
		return res, err
	}
	if old.Intent == nil {
		return res, fmt.Errorf("%w: service %q has no open switch (switch.done for generation %d)",
			ErrStaleGeneration, d.Service, d.Generation)
	}
	if old.Intent.Generation != d.Generation {
		return res, fmt.Errorf("%w: service %q: open switch is generation %d, switch.done is for %d",
			ErrStaleGeneration, d.Service, old.Intent.Generation, d.Generation)
	}
	svc := old.Clone()
	for i := len(svc.History) - 1; i >= 0; i-- {
		if r := &svc.History[i]; r.Generation == d.Generation && !r.Done {
			r.Done = true
			r.DoneAt = d.At
			r.DetectionMS = d.DetectionMS
			r.SwitchMS = d.SwitchMS
			r.TotalMS = d.TotalMS
			r.LostQueries = d.LostQueries
			r.OutageMS = cloneVal(d.OutageMS)
			r.ProbesSent = cloneVal(d.ProbesSent)
			r.ProbesLost = cloneVal(d.ProbesLost)
			r.ExposureMS = cloneVal(d.ExposureMS)
			r.Handover = d.Handover
			r.OldHeldMS = cloneVal(d.OldHeldMS)
			break
		}
	}
	svc.Intent = nil
	svc.UpdatedIndex = e.index
	if err := m.commit(svc); err != nil {
		return res, err
	}
	return Result{Index: e.index, Service: d.Service, Generation: svc.Generation}, nil
}

// ---- replica.role --------------------------------------------------------

func validateReplicaRole(r ReplicaRole) error {
	switch {
	case r.Service == "":
		return errors.New("service: required")
	case r.Replica == "":
		return errors.New("replica: required")
	case len(r.AlertID) > maxIDLen:
		return fmt.Errorf("alert_id: longer than %d bytes", maxIDLen)
	case r.Action != ActionQuarantine && r.Action != ActionRestored && r.Action != ActionMaintenance && r.Action != ActionRelease:
		return fmt.Errorf("action: %q must be %q, %q, %q or %q", r.Action,
			ActionQuarantine, ActionRestored, ActionMaintenance, ActionRelease)
	}
	if err := checkText(r.Reason, maxReasonLen); err != nil {
		return fmt.Errorf("reason: %v", err)
	}
	return nil
}

func applyReplicaRole(m *Machine, e entry, c Command) (Result, error) {
	a := c.(ReplicaRole)
	res := Result{Index: e.index}
	if err := validateReplicaRole(a); err != nil {
		return res, fmt.Errorf("%w: replica.role on service %q: %v", ErrInvalid, a.Service, err)
	}
	old, err := m.lookup(a.Service)
	if err != nil {
		return res, err
	}
	if err := checkGeneration(old, a.ExpectGeneration); err != nil {
		return res, err
	}
	svc := old.Clone()
	i := svc.replicaIndex(a.Replica)
	if i < 0 {
		return res, fmt.Errorf("%w: service %q has no replica %q", ErrUnknownReplica, a.Service, a.Replica)
	}
	cur := svc.Replicas[i].Role
	conflict := func(why string) error {
		return fmt.Errorf("%w: service %q: cannot %s replica %q: it is %s%s", ErrConflict, a.Service, a.Action, a.Replica, cur, why)
	}
	reason := a.Reason
	if reason == "" {
		reason = a.Action
	}
	switch a.Action {
	case ActionQuarantine:
		switch cur {
		case RoleActive:
			return res, conflict("; switch away from it first")
		case RoleQuarantined:
			return res, conflict(" already")
		}
		setRole(&svc, i, RoleQuarantined, e.index, reason)
	case ActionRestored:
		if cur != RoleQuarantined && cur != RoleRecovering {
			return res, conflict("; only a quarantined or recovering replica can be restored")
		}
		setRole(&svc, i, RoleSuspended, e.index, reason)
		svc.Replicas[i].Clean = true
		svc.Replicas[i].RestoredIndex = e.index
	case ActionMaintenance:
		switch cur {
		case RoleActive:
			return res, conflict("; switch away from it first")
		case RoleQuarantined, RoleRecovering:
			return res, conflict("; restore it first")
		case RoleMaintenance:
			return res, conflict(" already")
		}
		setRole(&svc, i, RoleMaintenance, e.index, reason)
	case ActionRelease:
		if cur != RoleMaintenance {
			return res, conflict("; only a replica in maintenance can be released")
		}
		setRole(&svc, i, RoleSuspended, e.index, reason)
	}
	ensureStandby(&svc, e.index)
	svc.Generation++
	svc.UpdatedIndex = e.index
	if err := m.commit(svc); err != nil {
		return res, err
	}
	m.recordOutcome(a.AlertID, a.Action)
	return Result{Index: e.index, Service: a.Service, Generation: svc.Generation}, nil
}

// ---- alert ---------------------------------------------------------------

// validateEntry checks what every ledger entry carries: its id, service,
// source and time.
func validateEntry(id, service, source string, at int64) error {
	switch {
	case id == "":
		return errors.New("id: required")
	case service == "":
		return errors.New("service: required")
	case at < 0:
		return fmt.Errorf("at: %d must not be negative", at)
	}
	if err := checkText(id, maxIDLen); err != nil {
		return fmt.Errorf("id: %v", err)
	}
	if err := checkText(source, maxSourceLen); err != nil {
		return fmt.Errorf("source: %v", err)
	}
	return nil
}

func validateAlert(a Alert) error {
	if err := validateEntry(a.ID, a.Service, a.Source, a.At); err != nil {
		return err
	}
	switch {
	case a.Replica == "":
		return errors.New("replica: required")
	case a.Kind != KindExploit && a.Kind != KindDoS:
		return fmt.Errorf("kind: %q must be %q or %q", a.Kind, KindExploit, KindDoS)
	}
	if err := checkMultiline(a.Evidence, maxEvidenceLen); err != nil {
		return fmt.Errorf("evidence: %v", err)
	}
	return nil
}

func applyAlert(m *Machine, e entry, c Command) (Result, error) {
	a := c.(Alert)
	res := Result{Index: e.index}
	if err := validateAlert(a); err != nil {
		return res, fmt.Errorf("%w: alert %q: %v", ErrInvalid, a.ID, err)
	}
	if _, dup := m.alertIDs[a.ID]; dup {
		return Result{Index: e.index, Service: a.Service, Duplicate: true}, nil
	}
	svc, ok := m.services[a.Service]
	if !ok {
		return res, fmt.Errorf("%w: %q (alert %q)", ErrUnknownService, a.Service, a.ID)
	}
	if svc.replicaIndex(a.Replica) < 0 {
		return res, fmt.Errorf("%w: alert %q: service %q has no replica %q", ErrUnknownReplica, a.ID, a.Service, a.Replica)
	}
	return m.addToLedger(e, svc, AlertRecord{ID: a.ID, Service: a.Service, Replica: a.Replica, Kind: a.Kind,
		Source: a.Source, Evidence: a.Evidence, At: a.At, Index: e.index})
}

// addToLedger appends rec to the alert ledger.
func (m *Machine) addToLedger(e entry, svc *Service, rec AlertRecord) (Result, error) {
	res := Result{Index: e.index}
	// A full ledger makes room by dropping its oldest decided alert; an
	// undecided one is never dropped (docs/design.md §4.3), so with none decided
	// the new alert is refused and its sender retries.
	for len(m.alerts) >= AlertLedgerLimit {
		i := m.oldestDecided()
		if i < 0 {
			return res, ledgerFull(rec.ID, len(m.alerts))
		}
		delete(m.alertIDs, m.alerts[i].ID)
		m.alerts = slices.Delete(m.alerts, i, i+1)
	}
	m.alerts = append(m.alerts, rec)
	m.alertIDs[rec.ID] = struct{}{}
	return Result{Index: e.index, Service: rec.Service, Generation: svc.Generation}, nil
}

// oldestDecided is the index of the oldest decided alert in the ledger,
// the one a full ledger drops to make room, or -1 if every alert held is
// undecided.
func (m *Machine) oldestDecided() int {
	return slices.IndexFunc(m.alerts, func(r AlertRecord) bool { return r.Outcome != "" })
}

func ledgerFull(id string, held int) error {
	return fmt.Errorf("%w: alert %q: all %d alerts held are still undecided; retry once some are decided",
		ErrLedgerFull, id, held)
}

// AlertRoom says whether an alert with this id would be taken into the
// ledger now: nil if it is already held (a duplicate) or there is room (or
// a decided alert to drop for it), an error wrapping ErrLedgerFull if not.
// The API asks it before committing an alert, so a full ledger refuses
// the alert without a log entry; applying the entry checks again and is
// the authority.
func (m *Machine) AlertRoom(id string) error {
	if _, dup := m.alertIDs[id]; dup || len(m.alerts) < AlertLedgerLimit || m.oldestDecided() >= 0 {
		return nil
	}
	return ledgerFull(id, len(m.alerts))
}

// ---- switch.request -----------------------------------------------------

func applySwitchRequest(m *Machine, e entry, c Command) (Result, error) {
	r := c.(SwitchRequest)
	res := Result{Index: e.index}
	err := validateEntry(r.ID, r.Service, r.Source, r.At)
	if err == nil {
		if rerr := checkText(r.Reason, maxReasonLen); rerr != nil {
			err = fmt.Errorf("reason: %v", rerr)
		}
	}
	if err != nil {
		return res, fmt.Errorf("%w: switch.request %q: %v", ErrInvalid, r.ID, err)
	}
	if _, dup := m.alertIDs[r.ID]; dup {
		return Result{Index: e.index, Service: r.Service, Duplicate: true}, nil
	}
	svc, ok := m.services[r.Service]
	if !ok {
		return res, fmt.Errorf("%w: %q (switch.request %q)", ErrUnknownService, r.Service, r.ID)
	}
	if r.To != "" && svc.replicaIndex(r.To) < 0 {
		return res, fmt.Errorf("%w: switch.request %q: service %q has no replica %q", ErrUnknownReplica, r.ID, r.Service, r.To)
	}
	return m.addToLedger(e, svc, AlertRecord{ID: r.ID, Service: r.Service, Replica: r.To, Kind: KindManual,
		Source: r.Source, Evidence: r.Reason, At: r.At, Index: e.index})
}

// recordOutcome sets the Outcome of the ledger alert id, if it is held and
// has none yet ("" id: nothing).
func (m *Machine) recordOutcome(id, outcome string) bool {
	if id == "" {
		return false
	}
	if _, ok := m.alertIDs[id]; !ok {
		return false
	}
	for i := len(m.alerts) - 1; i >= 0; i-- {
		if m.alerts[i].ID == id {
			if m.alerts[i].Outcome == "" {
				m.alerts[i].Outcome = outcome
			}
			return true
		}
	}
	return false
}

// ---- alert.outcome -------------------------------------------------------

func applyAlertOutcome(m *Machine, e entry, c Command) (Result, error) {
	o := c.(AlertOutcome)
	res := Result{Index: e.index}
	switch {
	case o.ID == "":
		return res, fmt.Errorf("%w: alert.outcome: id: required", ErrInvalid)
	case o.Outcome == "":
		return res, fmt.Errorf("%w: alert.outcome %q: outcome: required", ErrInvalid, o.ID)
	}
	if err := checkText(o.ID, maxIDLen); err != nil {
		return res, fmt.Errorf("%w: alert.outcome: id: %v", ErrInvalid, err)
	}
	if err := checkText(o.Outcome, maxReasonLen); err != nil {
		return res, fmt.Errorf("%w: alert.outcome %q: outcome: %v", ErrInvalid, o.ID, err)
	}
	if !m.recordOutcome(o.ID, o.Outcome) {
		return res, fmt.Errorf("%w: alert.outcome: alert %q is not in the ledger", ErrConflict, o.ID)
	}
	return res, nil
}

// SinkNameRE is what a notification sink's name must match.
var SinkNameRE = serviceNameRE

// applyNotifyCursor moves a sink's cursor forward. It never moves back: a
// cursor at or below the recorded one (a slower, older leader's) changes
// nothing and is not an error. A cursor cannot name the entry itself or a
// later one: nothing after it has been committed yet.
func applyNotifyCursor(m *Machine, e entry, c Command) (Result, error) {
	nc := c.(NotifyCursor)
	res := Result{Index: e.index}
	switch {
	case !SinkNameRE.MatchString(nc.Sink):
		return res, fmt.Errorf("%w: notify.cursor: sink %q must match %s", ErrInvalid, nc.Sink, SinkNameRE)
	case nc.Index >= e.index:
		return res, fmt.Errorf("%w: notify.cursor: index %d is not before the entry's own index %d", ErrInvalid, nc.Index, e.index)
	}
	if nc.Index > m.cursors[nc.Sink] {
		m.cursors[nc.Sink] = nc.Index
	}
	return res, nil
}

// ---- records: leader, member, verdict --------------------------------------

// The records change no state; they are checked like any entry, so that
// the event stream carries only well-formed ones.

func applyLeader(m *Machine, e entry, c Command) (Result, error) {
	l := c.(Leader)
	res := Result{Index: e.index}
	if !serviceNameRE.MatchString(l.Node) {
		return res, fmt.Errorf("%w: leader: node %q must match %s", ErrInvalid, l.Node, serviceNameRE)
	}
	return res, nil
}

func applyMember(m *Machine, e entry, c Command) (Result, error) {
	mb := c.(Member)
	res := Result{Index: e.index}
	switch {
	case !serviceNameRE.MatchString(mb.Node):
		return res, fmt.Errorf("%w: member: node %q must match %s", ErrInvalid, mb.Node, serviceNameRE)
	case !slices.Contains(MemberStatuses, mb.Status):
		return res, fmt.Errorf("%w: member %s: status %q is none of %v", ErrInvalid, mb.Node, mb.Status, MemberStatuses)
	}
	return res, nil
}

// MaxVerdictReason is the longest reason a verdict record carries (in
// bytes): decide's reasons name every replica, so the leader cuts them.
const MaxVerdictReason = 1024

func applyVerdict(m *Machine, e entry, c Command) (Result, error) {
	v := c.(Verdict)
	res := Result{Index: e.index}
	switch {
	case v.Replica == "":
		return res, fmt.Errorf("%w: verdict: replica: required", ErrInvalid)
	case v.Outcome == "":
		return res, fmt.Errorf("%w: verdict: outcome: required", ErrInvalid)
	case v.DetectionMS < 0 || v.Confirmations < 0:
		return res, fmt.Errorf("%w: verdict: detection %v ms and confirmations %d cannot be negative", ErrInvalid, v.DetectionMS, v.Confirmations)
	}
	if err := checkText(v.Outcome, maxReasonLen); err != nil {
		return res, fmt.Errorf("%w: verdict: outcome: %v", ErrInvalid, err)
	}
	if err := checkText(v.Reason, MaxVerdictReason); err != nil {
		return res, fmt.Errorf("%w: verdict: reason: %v", ErrInvalid, err)
	}
	svc, ok := m.services[v.Service]
	if !ok {
		return res, fmt.Errorf("%w: verdict: %q", ErrUnknownService, v.Service)
	}
	if _, ok := svc.Spec.Replica(v.Replica); !ok {
		return res, fmt.Errorf("%w: verdict: service %q has no replica %q", ErrInvalid, v.Service, v.Replica)
	}
	res.Service, res.Generation = v.Service, svc.Generation
	return res, nil
}
