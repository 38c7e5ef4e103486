package vsphere

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/ars-project/ars/controller/driver"
)

// Short names for the driver contract's sentinels (controller/driver).
var (
	errNotFound     = driver.ErrNotFound
	errUnsupported  = driver.ErrUnsupported
	errUnavailable  = driver.ErrUnavailable
	errInvalidState = driver.ErrInvalidState
	errConflict     = driver.ErrConflict
	errDenied       = driver.ErrDenied
	errInvalid      = driver.ErrInvalid
	errFailed       = driver.ErrFailed
)

// errCallTimeout: one round trip got no answer within the call timeout.
var errCallTimeout = errors.New("vcenter did not answer in time")

// faulter is what govmomi's SOAP and VIM fault errors (and taskError) offer.
type faulter interface {
	Fault() types.BaseMethodFault
}

// vimFault extracts the vSphere fault from err, if there is one.
func vimFault(err error) types.BaseMethodFault {
	var f faulter
	if errors.As(err, &f) {
		return f.Fault()
	}
	return nil
}

func faultName(f types.BaseMethodFault) string {
	t := reflect.TypeOf(f)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}

// taskError is a vCenter task that ended in error.
type taskError struct {
	task  string // "reconfigVm"
	fault types.BaseMethodFault
	msg   string
}

func (e *taskError) Error() string {
	msg := e.msg
	if msg == "" && e.fault != nil {
		msg = faultName(e.fault)
	}
	return fmt.Sprintf("task %s failed: %s", e.task, msg)
}

func (e *taskError) Fault() types.BaseMethodFault { return e.fault }

// classify maps an error to a controller sentinel and says whether another
// attempt may succeed. Faults that mean "the caller must decide again"
// (ConcurrentAccess, permission, bad input) are never retried;
// InvalidPowerState is, because the next attempt re-reads the state and
// finds the operation done (someone else did it) or still needed.
func classify(err error) (sentinel error, retry bool) {
	switch {
	case err == nil:
		return nil, false
	case errors.Is(err, context.Canceled):
		return errUnavailable, false
	case errors.Is(err, errCallTimeout):
		return errUnavailable, true
	case errors.Is(err, errTaskTimeout):
		return errUnavailable, false
	case errors.Is(err, errRefGone):
		return errNotFound, true
	}
	if s := driver.SentinelOf(err); s != nil {
		return s, s == errUnavailable
	}
	var te *taskError
	if errors.As(err, &te) && te.fault == nil {
		return errFailed, false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return errUnavailable, false // the caller's own deadline
	}
	f := vimFault(err)
	if f == nil {
		return errUnavailable, true // transport: connection refused, reset, TLS, HTTP 5xx without body
	}
	switch f.(type) {
	case *types.NotAuthenticated, *types.NoPermission, *types.InvalidLogin:
		return errDenied, false
	case *types.ManagedObjectNotFound:
		return errNotFound, true
	case *types.NotFound, *types.InvalidName:
		return errNotFound, false
	case *types.InvalidPowerState:
		return errInvalidState, true
	case *types.InvalidState:
		return errInvalidState, false
	case *types.ConcurrentAccess:
		return errConflict, false
	case *types.NotSupported, *types.MethodDisabled, *types.MethodNotFound, *types.NotImplemented:
		return errUnsupported, false
	case *types.InvalidArgument, *types.InvalidRequest, *types.InvalidDeviceSpec:
		return errInvalid, false
	case *types.TaskInProgress, *types.HostCommunication, *types.SystemError, *types.SystemErrorFault, *types.RequestCanceled,
		*types.FailToLockFaultToleranceVMs, *types.NetworkDisruptedAndConfigRolledBack, *types.Timedout:
		return errUnavailable, true
	}
	return errFailed, false
}

// classified wraps err with its sentinel unless it already carries one.
func classified(err error) error {
	if err == nil || driver.SentinelOf(err) != nil {
		return err
	}
	s, _ := classify(err)
	return fmt.Errorf("%w: %w", s, err)
}

// errKind is the metrics label of a failed round trip.
func errKind(err error, ctx, cctx context.Context) string {
	switch {
	case ctx.Err() != nil:
		return "canceled"
	case errors.Is(cctx.Err(), context.DeadlineExceeded):
		return "timeout"
	}
	if f := vimFault(err); f != nil {
		return faultName(f)
	}
	return "network"
}

// errTaskTimeout: a task did not finish within TaskTimeout (not retried:
// another attempt would wait as long again; the caller re-observes).
var errTaskTimeout = errors.New("task did not finish in time")

// errRefGone: a cached VM reference no longer exists (the VM was removed or
// re-registered); the next attempt resolves the name again.
var errRefGone = errors.New("vm reference is stale")
