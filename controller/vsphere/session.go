package vsphere

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/fault"
	govsession "github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// session is one authenticated vCenter session and the clients that use it.
//
// Round trips go through two wrappers: timedRT bounds every call with the
// per-call timeout and records metrics; reloginRT (only in vc, not in raw)
// turns a lost session into a re-login and one retry. Session management
// itself (login, logout, the "is my session still there" check) uses raw,
// so it can never recurse into a re-login.
type session struct {
	d     *Driver
	soap  *soap.Client
	raw   *vim25.Client // timed only
	vc    *vim25.Client // timed + transparent re-login
	perOp bool

	sem  chan struct{} // serialises logins (a buffered channel so waiting honours ctx)
	gen  atomic.Uint64 // incremented by every successful login
	live atomic.Bool
}

// dial connects (TLS, service content) without logging in.
func (d *Driver) dial(ctx context.Context, perOp bool) (*session, error) {
	sc := newSOAPClient(d.url, &d.cfg, d.tls)
	cctx, cancel := context.WithTimeout(ctx, d.cfg.CallTimeout)
	defer cancel()
	start := time.Now()
	raw, err := vim25.NewClient(cctx, sc)
	d.observeCall("RetrieveServiceContent", start, err, ctx, cctx)
	if err != nil {
		sc.CloseIdleConnections()
		return nil, d.callError("RetrieveServiceContent", err, ctx, cctx)
	}
	s := &session{d: d, soap: sc, perOp: perOp, sem: make(chan struct{}, 1)}
	raw.RoundTripper = &timedRT{d: d, rt: sc}
	vc := *raw
	vc.RoundTripper = &reloginRT{s: s}
	s.raw, s.vc = raw, &vc
	return s, nil
}

// login authenticates this session; kind is a metrics label.
func (s *session) login(ctx context.Context, kind string) error {
	d := s.d
	pw, err := d.cfg.Password()
	if err != nil {
		d.m.LoginErrors.WithLabelValues(d.name).Inc()
		return fmt.Errorf("%w: vcenter password: %w", errDenied, err)
	}
	err = govsession.NewManager(s.raw).Login(ctx, url.UserPassword(d.cfg.Username, pw))
	if err != nil {
		d.m.LoginErrors.WithLabelValues(d.name).Inc()
		if fault.Is(err, &types.InvalidLogin{}) {
			return fmt.Errorf("%w: vcenter login as %s: %w", errDenied, d.cfg.Username, err)
		}
		return fmt.Errorf("vcenter login: %w", err)
	}
	s.gen.Add(1)
	if !s.live.Swap(true) {
		d.m.SessionsLive.WithLabelValues(d.name).Inc()
	}
	d.m.Logins.WithLabelValues(d.name, kind).Inc()
	return nil
}

// logout ends the session (best effort, bounded by the call timeout, on a
// context of its own: it runs when the caller's context is already gone).
func (s *session) logout() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.d.cfg.CallTimeout)
	defer cancel()
	defer s.soap.CloseIdleConnections()
	if !s.live.Swap(false) {
		return nil
	}
	s.d.m.SessionsLive.WithLabelValues(s.d.name).Dec()
	_, err := methods.Logout(ctx, s.raw, &types.Logout{This: *s.raw.ServiceContent.SessionManager})
	if err != nil && fault.Is(err, &types.NotAuthenticated{}) {
		return nil // already gone (expired or terminated): nothing to end
	}
	return err
}

// userSession reads SessionManager.currentSession: nil when the session is
// gone. Real vCenter answers NotAuthenticated (mapped to nil by govmomi);
// vcsim answers an empty object.
func (s *session) userSession(ctx context.Context) (*types.UserSession, error) {
	return govsession.NewManager(s.raw).UserSession(ctx)
}

// errSessionAlive: vCenter said NotAuthenticated but the session is fine,
// so the fault means a missing privilege.
var errSessionAlive = errors.New("session is alive")

// renew re-logs in if the session seen at generation seen is really gone.
// A concurrent caller that already renewed it (generation moved on) makes
// this a no-op. It returns errSessionAlive if the session still exists.
func (s *session) renew(ctx context.Context, seen uint64, why string) error {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.sem }()
	if s.gen.Load() != seen {
		return nil
	}
	us, err := s.userSession(ctx)
	if err != nil {
		return fmt.Errorf("check vcenter session: %w", err)
	}
	if us != nil {
		return errSessionAlive
	}
	// Gone (expired, terminated by an administrator, vCenter restarted):
	// nothing to log out, so logging in again keeps exactly one session.
	if s.live.Swap(false) {
		s.d.m.SessionsLive.WithLabelValues(s.d.name).Dec()
	}
	if err := s.login(ctx, "relogin"); err != nil {
		return err
	}
	s.d.m.Relogins.WithLabelValues(s.d.name).Inc()
	s.d.log.Info("vcenter session was gone; logged in again", "why", why)
	return nil
}

// timedRT bounds every round trip by the call timeout (plus the long-poll
// time of WaitForUpdatesEx) and records latency and errors per method.
type timedRT struct {
	d  *Driver
	rt soap.RoundTripper
}

func (t *timedRT) RoundTrip(ctx context.Context, req, res soap.HasFault) error {
	method := methodName(req)
	timeout := t.d.cfg.CallTimeout
	switch b := req.(type) {
	case *methods.WaitForUpdatesExBody:
		if b.Req.Options != nil && b.Req.Options.MaxWaitSeconds != nil {
			timeout += time.Duration(*b.Req.Options.MaxWaitSeconds) * time.Second
		}
	case *methods.LoginBody:
		// An SSO login against a directory can take seconds; it is not on
		// the critical path unless the session was lost.
		timeout = max(timeout, LoginTimeout)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	err := t.rt.RoundTrip(cctx, req, res)
	t.d.observeCall(method, start, err, ctx, cctx)
	if err != nil {
		return t.d.callError(method, err, ctx, cctx)
	}
	return nil
}

func (d *Driver) observeCall(method string, start time.Time, err error, ctx, cctx context.Context) {
	d.m.Calls.WithLabelValues(d.name, method).Observe(time.Since(start).Seconds())
	if err == nil {
		d.unanswered.Store(false)
		if method == "RetrieveProperties" {
			d.answeredAt.Store(time.Now().UnixNano())
		}
		return
	}
	kind := errKind(err, ctx, cctx)
	d.m.CallErrors.WithLabelValues(d.name, method, kind).Inc()
	switch kind {
	case "canceled": // the caller gave up: says nothing about the vCenter
	case "timeout", "network":
		d.unanswered.Store(true)
	default: // a fault: the vCenter answered
		d.unanswered.Store(false)
	}
}

// callError marks a call that ran out of its own time (while the caller's
// context is still alive) as errCallTimeout, which is retriable.
func (d *Driver) callError(method string, err error, ctx, cctx context.Context) error {
	if ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w (%s)", method, errCallTimeout, d.cfg.CallTimeout)
	}
	return err
}

// reloginRT makes a lost session invisible to callers: when vCenter answers
// NotAuthenticated (a SOAP fault, or — for property reads — a MissingSet
// entry instead of an error), it first checks whether the session is really
// gone (the same fault also means a missing privilege), logs in again if
// so, clears the stale fault from the response and retries the call once.
type reloginRT struct{ s *session }

func (r *reloginRT) RoundTrip(ctx context.Context, req, res soap.HasFault) error {
	s := r.s
	switch req.(type) {
	case *methods.LoginBody, *methods.LogoutBody, *methods.RetrieveServiceContentBody:
		return s.raw.RoundTripper.RoundTrip(ctx, req, res)
	}
	seen := s.gen.Load()
	err := s.raw.RoundTripper.RoundTrip(ctx, req, res)
	if !lostSession(err, res) {
		return err
	}
	if s.perOp {
		return err // a per-operation session is never renewed: the operation fails and is retried with a new one
	}
	switch rerr := s.renew(ctx, seen, methodName(req)+" answered NotAuthenticated"); {
	case errors.Is(rerr, errSessionAlive):
		if err == nil {
			return nil // the MissingSet stays in the response; the reader reports it
		}
		return fmt.Errorf("%w: %w", errDenied, err)
	case rerr != nil:
		return fmt.Errorf("%s: vcenter session lost and re-login failed: %w", methodName(req), rerr)
	}
	clearResponse(res)
	return s.raw.RoundTripper.RoundTrip(ctx, req, res)
}

// lostSession reports whether vCenter answered NotAuthenticated, as a fault
// or as a MissingSet entry of a property read.
func lostSession(err error, res soap.HasFault) bool {
	if err != nil {
		return fault.Is(err, &types.NotAuthenticated{})
	}
	var contents []types.ObjectContent
	switch b := res.(type) {
	case *methods.RetrievePropertiesExBody:
		if b.Res != nil && b.Res.Returnval != nil {
			contents = b.Res.Returnval.Objects
		}
	case *methods.ContinueRetrievePropertiesExBody:
		if b.Res != nil {
			contents = b.Res.Returnval.Objects
		}
	case *methods.RetrievePropertiesBody:
		if b.Res != nil {
			contents = b.Res.Returnval
		}
	}
	for _, oc := range contents {
		for _, m := range oc.MissingSet {
			if _, ok := m.Fault.Fault.(*types.NotAuthenticated); ok {
				return true
			}
		}
	}
	return false
}

// clearResponse resets a methods.*Body's Res and Fault_ before it is reused
// for a retry: the SOAP decoder only sets what the new answer carries, so a
// stale fault would make a successful retry look failed (and a stale result
// would be merged into the new one).
func clearResponse(res soap.HasFault) {
	v := reflect.ValueOf(res)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return
	}
	v = v.Elem()
	if v.Kind() != reflect.Struct {
		return
	}
	for _, name := range []string{"Res", "Fault_"} {
		if f := v.FieldByName(name); f.IsValid() && f.CanSet() {
			f.Set(reflect.Zero(f.Type()))
		}
	}
}

// methodName is the SOAP method of a methods.*Body ("ReconfigVM_Task").
func methodName(req soap.HasFault) string {
	t := reflect.TypeOf(req)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "unknown"
	}
	return strings.TrimSuffix(t.Name(), "Body")
}
