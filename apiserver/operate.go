package apiserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/fsm"
)

func (s *Server) serviceOr404(name string) (fsm.Service, error) {
	svc, ok := s.b.Service(name)
	if !ok {
		return fsm.Service{}, &requestError{status: http.StatusNotFound, code: fsm.CodeUnknownService,
			msg: fmt.Sprintf("service %q does not exist", name)}
	}
	return svc, nil
}

func checkReason(reason string) error {
	if err := checkLine(reason, api.MaxOperateReasonBytes); err != nil {
		return invalidf("reason: %v", err)
	}
	return nil
}

func caller(r *http.Request) string {
	if p, ok := PrincipalFromContext(r.Context()); ok {
		return p.Name
	}
	return ""
}

// handleSwitch is POST /v1/services/{name}/switch (leader): an operator's
// switch request. The server does not decide it: it commits the request to
// the alert ledger (fsm.SwitchRequest, an entry of kind manual) and waits
// for the leader loop to decide it (the leader loop is the one writer of
// Switch commands), then answers with the switch it committed or, with
// 409, why there was none.
func (s *Server) handleSwitch(w http.ResponseWriter, r *http.Request) error {
	var req api.SwitchRequest
	if err := decodeBody(r, &req, true); err != nil {
		return err
	}
	if err := checkReason(req.Reason); err != nil {
		return err
	}
	if err := checkLine(req.To, api.MaxAlertNameBytes); err != nil {
		return invalidf("to: %v", err)
	}
	svc, err := s.serviceOr404(r.PathValue("name"))
	if err != nil {
		return err
	}
	if req.To != "" {
		if _, ok := svc.Replica(req.To); !ok {
			return fmt.Errorf("%w: service %q has no replica %q (to)", fsm.ErrUnknownReplica, svc.Spec.Name, req.To)
		}
	}
	if !s.cfg.DecidesSwitches {
		return &requestError{status: http.StatusConflict, code: fsm.CodeConflict,
			msg: fmt.Sprintf("service %q: no switch: the leader runs no controller (no vCenter or Docker host configured)", svc.Spec.Name)}
	}
	id, err := manualID()
	if err != nil {
		return err
	}
	cmd, err := fsm.Encode(s.term(), fsm.SwitchRequest{ID: id, Service: svc.Spec.Name, To: req.To, Reason: req.Reason,
		Source: clipBytes(caller(r), api.MaxAlertSourceBytes), At: s.now().UnixNano()})
	if err != nil {
		return fmt.Errorf("encoding switch request: %w", err)
	}
	if _, err := s.applyOwn(r.Context(), cmd); err != nil {
		return err
	}
	outcome, err := s.awaitOutcome(r.Context(), id)
	if err != nil {
		return err
	}
	if outcome != "switch" {
		s.log.Info("manual switch refused", "service", svc.Spec.Name, "to", req.To, "caller", caller(r), "request", id, "outcome", outcome)
		return &requestError{status: http.StatusConflict, code: fsm.CodeConflict,
			msg: fmt.Sprintf("service %q: no switch: %s", svc.Spec.Name, outcome)}
	}
	resp := api.SwitchResponse{Service: svc.Spec.Name, Outcome: outcome, Reason: req.Reason}
	if now, ok := s.b.Service(svc.Spec.Name); ok {
		for _, rec := range now.History {
			if rec.AlertID == id {
				resp.From, resp.To, resp.Generation, resp.Index = rec.From, rec.To, rec.Generation, rec.Index
			}
		}
	}
	s.log.Info("manual switch committed", "service", resp.Service, "from", resp.From, "to", resp.To,
		"caller", caller(r), "reason", req.Reason, "request", id, "index", resp.Index)
	return writeJSON(w, resp)
}

// manualID names a switch request in the ledger.
func manualID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("switch request id: %w", err)
	}
	return "manual-" + hex.EncodeToString(b[:]), nil
}

// outcomePoll is how often a switch request's ledger entry is read while
// the leader loop decides it (a decision takes milliseconds).
const outcomePoll = 5 * time.Millisecond

// awaitOutcome waits until the ledger entry id has an outcome, or ctx ends
// (the request timeout): then 504, the request stays in the ledger and is
// still decided.
func (s *Server) awaitOutcome(ctx context.Context, id string) (string, error) {
	t := time.NewTicker(outcomePoll)
	defer t.Stop()
	for {
		alerts, err := s.ledger()
		if err != nil {
			return "", err
		}
		if i := slices.IndexFunc(alerts, func(a fsm.AlertRecord) bool { return a.ID == id }); i >= 0 && alerts[i].Outcome != "" {
			return alerts[i].Outcome, nil
		}
		select {
		case <-ctx.Done():
			return "", &requestError{status: http.StatusGatewayTimeout, code: api.CodeTimeout,
				msg: fmt.Sprintf("switch request %s committed but not decided in time; it is still decided (see ars history)", id)}
		case <-t.C:
		}
	}
}

// handleReplicaAction is POST /v1/services/{name}/replicas/{replica}/{action}
// (leader).
func (s *Server) handleReplicaAction(w http.ResponseWriter, r *http.Request) error {
	action := r.PathValue("action")
	if !slices.Contains(api.ReplicaActions, action) {
		return &requestError{status: http.StatusNotFound, code: api.CodeNotFound,
			msg: fmt.Sprintf("unknown replica action %q (want quarantine, restore, maintenance or release)", action)}
	}
	var req api.ReplicaActionRequest
	if err := decodeBody(r, &req, true); err != nil {
		return err
	}
	if err := checkReason(req.Reason); err != nil {
		return err
	}
	svc, err := s.serviceOr404(r.PathValue("name"))
	if err != nil {
		return err
	}
	replica := r.PathValue("replica")
	if !slices.ContainsFunc(svc.Replicas, func(rs fsm.ReplicaState) bool { return rs.Name == replica }) {
		return &requestError{status: http.StatusNotFound, code: fsm.CodeUnknownReplica,
			msg: fmt.Sprintf("service %q has no replica %q", svc.Spec.Name, replica)}
	}
	fsmAction := action
	if action == "restore" {
		fsmAction = "restored"
	}
	cmd, err := fsm.Encode(s.term(), fsm.ReplicaRole{Service: svc.Spec.Name, Replica: replica, Action: fsmAction,
		ExpectGeneration: svc.Generation, Reason: req.Reason})
	if err != nil {
		return fmt.Errorf("encoding replica command: %w", err)
	}
	res, err := s.applyOwn(r.Context(), cmd)
	if err != nil {
		return err
	}
	s.log.Info("replica action committed", "service", svc.Spec.Name, "replica", replica, "action", action,
		"caller", caller(r), "reason", req.Reason, "index", res.Index)
	return writeJSON(w, api.ReplicaActionResponse{Service: svc.Spec.Name, Replica: replica, Action: action, Result: res})
}

// handleHistory is GET /v1/history[?service=S].
func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for k, vs := range q {
		if !slices.Contains([]string{"service", "consistent"}, k) {
			return invalidf("unknown query parameter %q (want service, consistent)", k)
		}
		if len(vs) > 1 {
			return invalidf("query parameter %q given %d times", k, len(vs))
		}
	}
	if err := s.barrierIfConsistent(r); err != nil {
		return err
	}
	var svcs []fsm.Service
	if name := q.Get("service"); name != "" {
		svc, err := s.serviceOr404(name)
		if err != nil {
			return err
		}
		svcs = []fsm.Service{svc}
	} else {
		svcs = s.b.Services()
		sort.Slice(svcs, func(i, j int) bool { return svcs[i].Spec.Name < svcs[j].Spec.Name })
	}
	out := api.HistoryResponse{Switches: []fsm.SwitchRecord{}}
	for _, svc := range svcs {
		out.Switches = append(out.Switches, svc.History...)
	}
	out.Aggregates = api.Aggregate(out.Switches)
	return writeJSON(w, out)
}

// clipBytes cuts s to at most n bytes (token names are ASCII).
func clipBytes(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
