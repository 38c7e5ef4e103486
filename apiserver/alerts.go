package apiserver

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/fsm"
)

// alertIDRE is the charset of alert ids: ASCII letters, digits and
// ". _ : -", starting with a letter or digit. UUIDs, hex digests and
// "source:serial" forms fit.
var alertIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)

// AlertLedger is implemented by a Backend that can list this node's alert
// ledger (oldest first, like fsm.Machine.Alerts). GET /v1/alerts uses it;
// a Backend without it but with State() (the fsm snapshot bytes, as
// cluster.Cluster has) is read through a scratch fsm.Machine instead.
type AlertLedger interface {
	Alerts() []fsm.AlertRecord
}

type stateReader interface {
	State() ([]byte, uint64, error)
}

// ledger returns the node's alert ledger, oldest first.
func (s *Server) ledger() ([]fsm.AlertRecord, error) {
	switch b := s.b.(type) {
	case AlertLedger:
		return b.Alerts(), nil
	case stateReader:
		data, _, err := b.State()
		if err != nil {
			return nil, fmt.Errorf("reading the replicated state: %w", err)
		}
		m := fsm.New()
		if err := m.Restore(data); err != nil {
			return nil, fmt.Errorf("reading the replicated state: %w", err)
		}
		return m.Alerts(), nil
	}
	return nil, &requestError{status: http.StatusNotFound, code: api.CodeNotFound, msg: "this node cannot list its alert ledger"}
}

// alertLimiter is a token bucket per caller for the alert routes. The set
// of callers is bounded by the tokens file (and the nodes), so the map is
// too.
type alertLimiter struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	by    map[string]*rate.Limiter
}

func newAlertLimiter(perSecond float64, burst int) *alertLimiter {
	if perSecond < 0 {
		return nil
	}
	return &alertLimiter{limit: rate.Limit(perSecond), burst: burst, by: map[string]*rate.Limiter{}}
}

// allow takes one alert from caller's bucket; when it is empty it returns
// false and how long until the next alert is allowed. The clock is read
// under the lock: a token bucket fed times out of order (one goroutine's
// reading overtaken by another's) counts a refill twice, and a flood from
// many goroutines then gets more than the bound through.
func (l *alertLimiter) allow(caller string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.by[caller]
	if lim == nil {
		lim = rate.NewLimiter(l.limit, l.burst)
		l.by[caller] = lim
	}
	now := time.Now()
	if lim.AllowN(now, 1) {
		return true, 0
	}
	missing := 1 - lim.TokensAt(now)
	return false, time.Duration(missing / float64(l.limit) * float64(time.Second))
}

// limitAlert answers 429 with Retry-After when the caller is over its
// alert rate (before the body is read: a flood costs no decoding).
func (s *Server) limitAlert(w http.ResponseWriter, r *http.Request) error {
	caller := ""
	if p, ok := PrincipalFromContext(r.Context()); ok {
		caller = p.Name
	}
	ok, wait := s.alerts.allow(caller)
	if ok {
		return nil
	}
	s.metrics.alert("unknown", "rate_limited")
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	return fmt.Errorf("%w: caller %q is over its alert rate (%g per second, burst %d); retry in %s",
		api.ErrRateLimited, caller, float64(s.alerts.limit), s.alerts.burst, wait.Round(time.Millisecond))
}

// handlePostAlert is POST /v1/alerts (leader).
func (s *Server) handlePostAlert(w http.ResponseWriter, r *http.Request) error {
	if err := s.limitAlert(w, r); err != nil {
		return err
	}
	var req api.AlertRequest
	if err := decodeBody(r, &req, false); err != nil {
		return err
	}
	if err := checkAlertID(req.ID, "id"); err != nil {
		return err
	}
	if len(req.Evidence) > api.MaxAlertEvidenceBytes {
		return invalidf("evidence: %d bytes, at most %d allowed", len(req.Evidence), api.MaxAlertEvidenceBytes)
	}
	if err := checkEvidenceText(req.Evidence); err != nil {
		return invalidf("evidence: %v", err)
	}
	return s.commitAlert(w, r, req)
}

// handleAlertWebhook is POST /v1/alerts/webhook (leader): the query names
// the alert, the body is the evidence, X-Ars-Alert-Id (or a digest of
// source, service, replica and body) its id.
func (s *Server) handleAlertWebhook(w http.ResponseWriter, r *http.Request) error {
	if err := s.limitAlert(w, r); err != nil {
		return err
	}
	q := r.URL.Query()
	for k, vs := range q {
		if !slices.Contains([]string{"service", "replica", "kind", "source"}, k) {
			return invalidf("unknown query parameter %q (want service, replica, kind, source)", k)
		}
		if len(vs) > 1 {
			return invalidf("query parameter %q given %d times", k, len(vs))
		}
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	req := api.AlertRequest{Service: q.Get("service"), Replica: q.Get("replica"), Kind: q.Get("kind"), Source: q.Get("source")}
	if req.Source == "" {
		if p, ok := PrincipalFromContext(r.Context()); ok {
			req.Source = p.Name
		}
	}
	ids := r.Header.Values(api.HeaderAlertID)
	switch {
	case len(ids) > 1:
		return invalidf("%s given %d times", api.HeaderAlertID, len(ids))
	case len(ids) == 1:
		req.ID = strings.TrimSpace(ids[0])
		if err := checkAlertID(req.ID, api.HeaderAlertID); err != nil {
			return err
		}
	case len(body) == 0:
		return invalidf("empty body and no %s header: nothing to derive an alert id from", api.HeaderAlertID)
	default:
		req.ID = api.WebhookAlertID(req.Source, req.Service, req.Replica, body)
	}
	if checkEvidenceText(string(body)) == nil {
		req.Evidence = string(body)
	} else {
		req.Evidence = api.EvidenceBase64Prefix + base64.StdEncoding.EncodeToString(body)
	}
	return s.commitAlert(w, r, req)
}

// ledgerFull answers an alert the full ledger refuses: every alert held
// is still to be decided, and the controller decides them in well under a
// second unless they are damped, so the sender retries.
func (s *Server) ledgerFull(w http.ResponseWriter, kind string, err error) error {
	s.metrics.alert(kind, "ledger_full")
	w.Header().Set("Retry-After", "1")
	return err
}

// commitAlert validates the rest of req, stamps it with the leader's
// clock, commits it and answers 201 (new) or 200 (duplicate).
func (s *Server) commitAlert(w http.ResponseWriter, r *http.Request, req api.AlertRequest) error {
	switch {
	case req.Kind == "":
		return invalidf("kind: required (%q or %q)", fsm.KindExploit, fsm.KindDoS)
	case req.Kind != fsm.KindExploit && req.Kind != fsm.KindDoS:
		return invalidf("kind: %q must be %q or %q", req.Kind, fsm.KindExploit, fsm.KindDoS)
	}
	for _, f := range []struct{ name, v string }{{"service", req.Service}, {"replica", req.Replica}} {
		if f.v == "" {
			return invalidf("%s: required", f.name)
		}
		if err := checkLine(f.v, api.MaxAlertNameBytes); err != nil {
			return invalidf("%s: %v", f.name, err)
		}
	}
	if req.Source == "" {
		if p, ok := PrincipalFromContext(r.Context()); ok {
			req.Source = p.Name
		}
	}
	if err := checkLine(req.Source, api.MaxAlertSourceBytes); err != nil {
		return invalidf("source: %v", err)
	}
	// Refuse unknown names before anything reaches the log. The fsm checks
	// again when it applies the entry (the authority, should the service
	// change in between).
	svc, ok := s.b.Service(req.Service)
	if !ok {
		return &requestError{status: http.StatusNotFound, code: fsm.CodeUnknownService,
			msg: fmt.Sprintf("service %q does not exist", req.Service)}
	}
	if !slices.ContainsFunc(svc.Replicas, func(rs fsm.ReplicaState) bool { return rs.Name == req.Replica }) {
		return &requestError{status: http.StatusNotFound, code: fsm.CodeUnknownReplica,
			msg: fmt.Sprintf("service %q has no replica %q", req.Service, req.Replica)}
	}
	// A full ledger refuses before the log, too: the entry would be
	// committed only for the fsm to refuse it.
	if err := s.b.AlertRoom(req.ID); err != nil {
		return s.ledgerFull(w, req.Kind, err)
	}
	evidence, truncated := fitEvidence(req.Evidence)
	a := fsm.Alert{ID: req.ID, Service: req.Service, Replica: req.Replica, Kind: req.Kind,
		Source: req.Source, Evidence: evidence, At: s.now().UnixNano()}
	cmd, err := fsm.Encode(s.term(), a)
	if err != nil {
		return fmt.Errorf("encoding alert command: %w", err)
	}
	res, err := s.applyOwn(r.Context(), cmd)
	if errors.Is(err, fsm.ErrLedgerFull) {
		return s.ledgerFull(w, a.Kind, err)
	}
	if err != nil {
		return err
	}
	result := "committed"
	if res.Duplicate {
		result = "duplicate"
	}
	s.metrics.alert(a.Kind, result)
	caller := ""
	if p, ok := PrincipalFromContext(r.Context()); ok {
		caller = p.Name
	}
	s.log.Info("alert "+result, "id", a.ID, "service", a.Service, "replica", a.Replica, "kind", a.Kind,
		"source", a.Source, "caller", caller, "index", res.Index)
	status := http.StatusCreated
	if res.Duplicate {
		status = http.StatusOK
	}
	return writeJSONStatus(w, status, api.AlertResponse{ID: a.ID, Service: a.Service, Replica: a.Replica, Kind: a.Kind,
		Source: a.Source, Index: res.Index, Duplicate: res.Duplicate, At: a.At, EvidenceTruncated: truncated})
}

// handleAlerts is GET /v1/alerts?service=S&limit=N: the ledger, newest
// first.
func (s *Server) handleAlerts(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for k, vs := range q {
		if !slices.Contains([]string{"service", "limit", "consistent"}, k) {
			return invalidf("unknown query parameter %q (want service, limit, consistent)", k)
		}
		if len(vs) > 1 {
			return invalidf("query parameter %q given %d times", k, len(vs))
		}
	}
	limit := api.DefaultAlertListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > api.MaxAlertListLimit {
			return invalidf("limit: %q must be a number from 1 to %d", v, api.MaxAlertListLimit)
		}
		limit = n
	}
	if err := s.barrierIfConsistent(r); err != nil {
		return err
	}
	all, err := s.ledger()
	if err != nil {
		return err
	}
	service := q.Get("service")
	out := []fsm.AlertRecord{}
	for i := len(all) - 1; i >= 0 && len(out) < limit; i-- {
		if service == "" || all[i].Service == service {
			out = append(out, all[i])
		}
	}
	return writeJSON(w, out)
}

func checkAlertID(id, field string) error {
	switch {
	case id == "":
		return invalidf("%s: required", field)
	case len(id) > api.MaxAlertIDLength:
		return invalidf("%s: %d characters, at most %d allowed", field, len(id), api.MaxAlertIDLength)
	case !alertIDRE.MatchString(id):
		return invalidf("%s: %q must be letters, digits and . _ : - (starting with a letter or digit)", field, id)
	}
	return nil
}

// checkEvidenceText accepts what the ledger stores as text: valid UTF-8
// without control characters other than tab, newline and carriage return.
func checkEvidenceText(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' {
			return fmt.Errorf("control character %U not allowed", r)
		}
	}
	return nil
}

// checkLine accepts one line of printable UTF-8 of at most max bytes.
func checkLine(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%d bytes, at most %d allowed", len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("not valid UTF-8")
	}
	if i := strings.IndexFunc(s, unicode.IsControl); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		return fmt.Errorf("control character %U not allowed", r)
	}
	return nil
}

// fitEvidence shortens evidence to LedgerEvidenceBytes: it keeps a prefix
// (on a rune boundary; for base64 evidence on a 4-character boundary, so
// the prefix still decodes) and appends a marker with the original length
// and SHA-256.
func fitEvidence(s string) (string, bool) {
	if len(s) <= api.LedgerEvidenceBytes {
		return s, false
	}
	sum := sha256.Sum256([]byte(s))
	marker := fmt.Sprintf("\n[truncated: %d bytes, sha256 %s]", len(s), hex.EncodeToString(sum[:]))
	cut := api.LedgerEvidenceBytes - len(marker)
	if strings.HasPrefix(s, api.EvidenceBase64Prefix) {
		cut -= (cut - len(api.EvidenceBase64Prefix)) % 4
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + marker, true
}

// writeJSONStatus writes v as a JSON response with the given status.
func writeJSONStatus(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
	return nil
}
