package apiserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/cluster"
	"github.com/ars-project/ars/fsm"
)

// readBody reads the (already size-limited) request body.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, invalidf("reading request body: %v", err)
	}
	return data, nil
}

// decodeBody strictly decodes a JSON object body into v: unknown fields,
// trailing data, wrong types and non-objects are 400 "invalid". An empty
// body is accepted only when allowEmpty is set (v is then left as is).
func decodeBody(r *http.Request, v any, allowEmpty bool) error {
	data, err := readBody(r)
	if err != nil {
		return err
	}
	return strictJSON(data, v, allowEmpty)
}

func strictJSON(data []byte, v any, allowEmpty bool) error {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		if allowEmpty {
			return nil
		}
		return invalidf("request body is empty; expected a JSON object")
	}
	if trimmed[0] != '{' {
		return invalidf("request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalidf("%s", describeJSONError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalidf("request body must contain exactly one JSON object (unexpected data after it)")
	}
	return nil
}

func describeJSONError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %q: expected %s, got JSON %s", te.Field, jsonKind(te.Type), te.Value)
		}
		return fmt.Sprintf("expected %s, got JSON %s", jsonKind(te.Type), te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end of input"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.String()
}

func (s *Server) term() uint64 {
	if s.cfg.Term != nil {
		return s.cfg.Term()
	}
	return s.b.Status().Term
}

// applyOwn commits a command this node encoded with its own term (alerts,
// service specs, switches, replica actions). If leadership changed between
// the encoding and the append, the FSM refuses the entry with
// fsm.ErrStaleTerm on every node: nothing was committed and the caller did
// nothing wrong, so the answer is 503 unavailable, which every client
// retries — not the 409 that a node's own stale command gets on
// /v1/internal/apply.
func (s *Server) applyOwn(ctx context.Context, cmd []byte) (fsm.Result, error) {
	res, err := s.b.Apply(ctx, cmd)
	if errors.Is(err, fsm.ErrStaleTerm) {
		return res, fmt.Errorf("%w: leadership changed while the request was being committed; nothing was committed, retry (%v)",
			api.ErrUnavailable, err)
	}
	return res, err
}

func (s *Server) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return time.Now()
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) error {
	st := wireStatus(s.b.Status())
	if v := r.URL.Query().Get("digest"); v != "" && v != "0" && v != "false" {
		d, ok := s.b.(StateDigester)
		if !ok {
			return invalidf("this node cannot digest its state")
		}
		idx, sum, err := d.StateDigest()
		if err != nil {
			return fmt.Errorf("state digest: %w", err)
		}
		st.StateIndex, st.StateDigest = idx, sum
	}
	return writeJSON(w, st)
}

func (s *Server) handleMembers(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, wireMembers(s.b.Members()))
}

func (s *Server) handlePeers(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.b.Peers()
	if err != nil {
		return err
	}
	out := make([]api.Peer, 0, len(ps))
	for _, p := range ps {
		out = append(out, api.Peer{ID: p.ID, Address: p.Address, Suffrage: p.Suffrage, Leader: p.Leader})
	}
	return writeJSON(w, out)
}

const maxJoinAddresses = 64

func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) error {
	var req api.JoinRequest
	if err := decodeBody(r, &req, false); err != nil {
		return err
	}
	if len(req.Addresses) == 0 {
		return invalidf("addresses: at least one gossip address is required")
	}
	if len(req.Addresses) > maxJoinAddresses {
		return invalidf("addresses: at most %d addresses", maxJoinAddresses)
	}
	for i, a := range req.Addresses {
		if strings.TrimSpace(a) == "" {
			return invalidf("addresses[%d]: must not be empty", i)
		}
	}
	n, err := s.b.Join(r.Context(), req.Addresses)
	if err != nil {
		return err
	}
	return writeJSON(w, api.JoinResponse{Joined: n})
}

func (s *Server) handleLeave(w http.ResponseWriter, r *http.Request) error {
	var req struct{}
	if err := decodeBody(r, &req, true); err != nil {
		return err
	}
	if err := s.b.Leave(r.Context()); err != nil {
		return err
	}
	return writeJSON(w, api.OKResponse{OK: true})
}

func (s *Server) handleTransferLeader(w http.ResponseWriter, r *http.Request) error {
	var req api.TransferLeaderRequest
	if err := decodeBody(r, &req, true); err != nil {
		return err
	}
	if err := s.b.TransferLeadership(r.Context(), req.To); err != nil {
		return err
	}
	return writeJSON(w, api.OKResponse{OK: true})
}

func (s *Server) handleRemovePeer(w http.ResponseWriter, r *http.Request) error {
	var req api.RemovePeerRequest
	if err := decodeBody(r, &req, false); err != nil {
		return err
	}
	if strings.TrimSpace(req.ID) == "" {
		return invalidf("id: a peer id is required")
	}
	if err := s.b.RemovePeer(r.Context(), req.ID); err != nil {
		return err
	}
	return writeJSON(w, api.OKResponse{OK: true})
}

func (s *Server) handleApplyService(w http.ResponseWriter, r *http.Request) error {
	data, err := readBody(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return invalidf("request body is empty; expected a service spec JSON object")
	}
	spec, err := fsm.DecodeServiceSpec(data)
	if err != nil {
		if fsm.Code(err) == "" {
			return invalidf("service spec: %v", err)
		}
		return err
	}
	if check := s.cfg.CheckSpec; check != nil {
		if err := check(spec); err != nil {
			return invalidf("service %q: %v", spec.Name, err)
		}
	}
	cmd, err := fsm.Encode(s.term(), fsm.ServiceApply{Spec: spec})
	if err != nil {
		return fmt.Errorf("encoding service.apply command: %w", err)
	}
	res, err := s.applyOwn(r.Context(), cmd)
	if err != nil {
		return err
	}
	return writeJSON(w, res)
}

// barrierIfConsistent makes a ?consistent read reflect every committed
// entry (the route is then leader-only, so this runs on the leader).
func (s *Server) barrierIfConsistent(r *http.Request) error {
	if r.URL.Query().Has("consistent") {
		return s.b.Barrier(r.Context())
	}
	return nil
}

func (s *Server) handleServices(w http.ResponseWriter, r *http.Request) error {
	if err := s.barrierIfConsistent(r); err != nil {
		return err
	}
	list := s.b.Services()
	if list == nil {
		list = []fsm.Service{}
	}
	for i := range list {
		list[i] = shown(list[i])
	}
	return writeJSON(w, list)
}

// shown is a service as the API shows it. A replica's health is left out:
// no command reports one, the state machine holds a constant there
// (fsm.HealthUnknown), and a field that measures nothing is not shown.
func shown(svc fsm.Service) fsm.Service {
	svc.Replicas = slices.Clone(svc.Replicas)
	for i := range svc.Replicas {
		svc.Replicas[i].Health = ""
	}
	return svc
}

func (s *Server) handleService(w http.ResponseWriter, r *http.Request) error {
	if err := s.barrierIfConsistent(r); err != nil {
		return err
	}
	name := r.PathValue("name")
	svc, ok := s.b.Service(name)
	if !ok {
		return &requestError{status: http.StatusNotFound, code: fsm.Code(fsm.ErrUnknownService),
			msg: fmt.Sprintf("service %q does not exist", name)}
	}
	return writeJSON(w, shown(svc))
}

// countingHash writes through to w while hashing and counting.
type countingHash struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (c *countingHash) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

func (s *Server) handleSnapshotSave(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", `attachment; filename="ars.snapshot"`)
	h.Set("Trailer", api.SnapshotDigestTrailer)
	cw := &countingHash{w: w, h: sha256.New()}
	if err := s.b.SnapshotSave(r.Context(), cw); err != nil {
		if cw.n == 0 {
			return err // nothing sent yet: a proper error response
		}
		// Part of the snapshot is out; a status can no longer be sent.
		// Abort the response so the client sees a broken transfer rather
		// than a short snapshot.
		s.log.Error("snapshot download failed mid-stream; aborting response", "bytes_sent", cw.n, "error", err)
		panic(http.ErrAbortHandler)
	}
	if cw.n == 0 {
		w.WriteHeader(http.StatusOK)
	}
	h.Set(api.SnapshotDigestTrailer, hex.EncodeToString(cw.h.Sum(nil)))
	return nil
}

func (s *Server) handleSnapshotRestore(w http.ResponseWriter, r *http.Request) error {
	if r.Body == nil {
		return invalidf("request body is empty; expected a snapshot")
	}
	if err := s.b.SnapshotRestore(r.Context(), r.Body); err != nil {
		return err
	}
	return writeJSON(w, api.OKResponse{OK: true})
}

func (s *Server) handleInternalApply(w http.ResponseWriter, r *http.Request) error {
	data, err := readBody(r)
	if err != nil {
		return err
	}
	// Never let a command into the log that every node would have to halt on.
	if _, _, err := fsm.Decode(data); err != nil {
		code := fsm.Code(err)
		if code == "" {
			code = api.CodeInvalid
		}
		return &requestError{status: http.StatusBadRequest, code: code, msg: fmt.Sprintf("command rejected: %v", err)}
	}
	res, err := s.b.Apply(r.Context(), data)
	if err != nil {
		return err
	}
	return writeJSON(w, res)
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) error {
	if s.mh == nil {
		return &requestError{status: http.StatusNotFound, code: api.CodeNotFound, msg: "metrics are not enabled on this node"}
	}
	s.mh.ServeHTTP(w, r)
	return nil
}

// wireStatus is the API's form of the node's status.
func wireStatus(st cluster.Status) api.Status {
	return api.Status{Node: st.Node, Leader: st.Leader, LeaderAPI: st.LeaderAPI, State: st.State, Term: st.Term,
		CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, LastLogIndex: st.LastLogIndex,
		LastContact: st.LastContact, Members: st.Members, Voters: st.Voters, Version: st.Version, Dev: st.Dev,
		FormatLevel: st.Format.Node, ClusterFormatLevel: st.Format.Cluster, FormatBehind: st.Format.Behind,
		Disk: wireDisk(st.Disk)}
}

// wireDisk is the API's form of the data directory's last check.
func wireDisk(d *cluster.DiskStatus) *api.DiskStatus {
	if d == nil {
		return nil
	}
	out := &api.DiskStatus{Healthy: d.Healthy, Cause: d.Cause, ProbeSeconds: d.ProbeLatency.Seconds(),
		CheckedAt: d.CheckedAt.UTC().Format(time.RFC3339Nano), Since: d.Since.UTC().Format(time.RFC3339Nano)}
	if d.FreeKnown {
		free := d.FreeBytes
		out.FreeBytes = &free
	}
	return out
}

// wireMembers is the API's form of the gossip members (never null).
func wireMembers(ms []cluster.Member) []api.Member {
	out := make([]api.Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, api.Member{Name: m.Name, GossipAddr: m.GossipAddr, RaftAddr: m.RaftAddr, APIAddr: m.APIAddr,
			Status: m.Status, Voter: m.Voter, Leader: m.Leader})
	}
	return out
}
