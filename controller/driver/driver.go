package driver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/ars-project/ars/fsm"
)

// Driver changes and observes replicas on one platform: vSphere VMs
// (controller/vsphere) or containers (controller/docker). The reconciler uses
// it for every replica kind and only on the leader.
//
// Every mutating call is idempotent: asking for the state a replica is
// already in succeeds without touching it. Calls are bounded (the driver
// applies its own per-call timeout and retry budget inside ctx) and return
// an *OpError whose chain holds one of the sentinel errors below, so callers
// decide with errors.Is and people read the replica's name in the message.
type Driver interface {
	// Attach connects the replica's service NIC (it starts serving).
	// Detach disconnects it. Both also set whether the NIC is connected at
	// the next power-on, so a standby that boots stays detached. Attach
	// needs a running replica (ErrInvalidState otherwise).
	Attach(ctx context.Context, r fsm.ReplicaSpec, opts ...Option) error
	Detach(ctx context.Context, r fsm.ReplicaSpec, opts ...Option) error
	// PowerOn makes the replica run: boots a stopped one, resumes a
	// suspended one. Callers pass ServiceAddr where they know it: a
	// driver may prepare the replica to take that address at its next
	// Attach (the Docker driver arms its address helper with it).
	PowerOn(ctx context.Context, r fsm.ReplicaSpec, opts ...Option) error
	// Suspend parks a running replica cheaply (ErrUnsupported where the
	// replica cannot be suspended, ErrInvalidState if it is not running).
	Suspend(ctx context.Context, r fsm.ReplicaSpec) error
	// Resume runs a suspended replica again (ErrInvalidState if it is
	// powered off: that is PowerOn's job, and a boot, not a resume).
	Resume(ctx context.Context, r fsm.ReplicaSpec) error
	// PowerOff stops the replica hard.
	PowerOff(ctx context.Context, r fsm.ReplicaSpec) error
	// Restore brings the replica back to its clean state: for a VM a revert
	// to the snapshot named in the spec, for a container a re-creation.
	Restore(ctx context.Context, r fsm.ReplicaSpec) error
	// Observe reads the replica's current state from the platform.
	Observe(ctx context.Context, r fsm.ReplicaSpec) (Observation, error)
	// Watch streams changes of every replica this driver has been asked
	// about (by any call above) until ctx ends; the channel is then closed.
	// A slow reader loses events but then receives an EventResync.
	Watch(ctx context.Context) <-chan Event
}

// Power is a replica's power state.
type Power string

// Power states.
const (
	PowerOn        Power = "on"
	PowerOff       Power = "off"
	PowerSuspended Power = "suspended"
	PowerUnknown   Power = "unknown"
)

// FTState is vSphere Fault Tolerance state of a VM (runtime.faultToleranceState);
// empty for platforms without FT.
type FTState string

// vSphere FT states.
const (
	FTNotConfigured FTState = "notConfigured"
	FTDisabled      FTState = "disabled"
	FTEnabled       FTState = "enabled"
	FTNeedSecondary FTState = "needSecondary"
	FTStarting      FTState = "starting"
	FTRunning       FTState = "running"
)

// Protected reports whether FT is configured and active for the VM, in
// which case snapshots and suspend are not available.
func (s FTState) Protected() bool {
	switch s {
	case FTEnabled, FTNeedSecondary, FTStarting, FTRunning:
		return true
	}
	return false
}

// Tools is the state of the guest agent (VMware Tools for VMs).
type Tools string

// Guest agent states.
const (
	ToolsRunning    Tools = "running"
	ToolsNotRunning Tools = "notRunning"
	ToolsUnknown    Tools = "unknown"
)

// Capabilities says which operations the replica supports right now. The
// decision logic must not plan an operation the replica does not support
// (for example suspending an FT-protected VM); the driver refuses it with
// ErrUnsupported anyway.
type Capabilities struct {
	Attach  bool // the service NIC exists and can be connected and disconnected
	Suspend bool // Suspend and Resume
	Restore bool // Restore to the clean state (the named snapshot exists and snapshots are allowed)
}

// Observation is what the platform reports about one replica.
type Observation struct {
	Replica string // fsm.ReplicaSpec.Name
	Target  string // the platform object: VM name or inventory path, container name
	Power   Power
	// NICConnected: the service NIC is connected now. NICStartConnected:
	// it will be connected when the replica next powers on.
	NICConnected      bool
	NICStartConnected bool
	Tools             Tools
	FT                FTState
	// Host is the platform host the replica runs on (for a VM the ESXi
	// host's managed object id); it changes on an FT failover.
	Host string
	// Reachable is false when the platform cannot manage the replica right
	// now (VM connection state disconnected, orphaned, inaccessible).
	Reachable bool
	// Tasks lists operations in flight on the replica ("powerOn running").
	// Events from Watch do not fill it.
	Tasks    []string
	Supports Capabilities
	// ChangeVersion identifies the replica's configuration version; pass it
	// back with IfVersion to make a reconfigure fail if anything changed
	// since this observation. Empty where the platform has none.
	ChangeVersion string
}

// String is a short human summary ("power on, nic connected, ft running").
func (o Observation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "power %s, nic ", o.Power)
	if o.NICConnected {
		b.WriteString("connected")
	} else {
		b.WriteString("disconnected")
	}
	if o.FT != "" && o.FT != FTNotConfigured {
		fmt.Fprintf(&b, ", ft %s", o.FT)
	}
	if !o.Reachable {
		b.WriteString(", unreachable")
	}
	if len(o.Tasks) > 0 {
		fmt.Fprintf(&b, ", tasks [%s]", strings.Join(o.Tasks, ", "))
	}
	return b.String()
}

// EventKind says what an Event reports.
type EventKind string

// Event kinds.
const (
	// EventChanged: the replica's observed state changed (power, NIC,
	// tools, FT, host, reachability, configuration version).
	EventChanged EventKind = "changed"
	// EventFTFailover: an FT-protected replica failed over to its secondary
	// (or lost it). Expect a short stun of the service: it is not an attack.
	EventFTFailover EventKind = "ft-failover"
	// EventResync: events may have been lost (slow reader, watch rebuilt);
	// re-observe every replica.
	EventResync EventKind = "resync"
)

// Event is one change seen by a driver's watch.
type Event struct {
	Kind EventKind
	// Replica is the spec the driver was last called with for this
	// platform object (zero for EventResync).
	Replica fsm.ReplicaSpec
	// State is the replica's state after the change, as far as the watch
	// knows it (zero for EventResync).
	State Observation
	At    time.Time
}

// Options are per-call options of mutating driver calls.
type Options struct {
	// IfVersion makes a reconfigure fail with ErrConflict unless the
	// replica's configuration version still equals it (vSphere
	// ChangeVersion). Empty: no precondition.
	IfVersion string
	// ServiceAddr is the service address the replica takes on the service
	// network when attached. Drivers whose NIC carries its address itself
	// (vSphere: the guest configures it) ignore it; the Docker driver needs
	// it for Attach (it assigns the address to the container's endpoint)
	// and uses it at PowerOn to prepare the next Attach off the critical
	// path of a switch.
	ServiceAddr netip.Addr
	// ServicePort is the service's port (0: not known). The Docker
	// driver's address helper announces the address only once a UDP
	// socket serves it on this port.
	ServicePort uint16
}

// Option sets one of Options.
type Option func(*Options)

// IfVersion passes an Observation.ChangeVersion as a precondition: a
// deposed leader acting on an old observation fails instead of overwriting
// a newer decision.
func IfVersion(v string) Option { return func(o *Options) { o.IfVersion = v } }

// ServiceAddr passes the service's IP address (fsm.ServiceSpec.Address
// without the port) to Attach: the Docker driver assigns it to the
// container on the service network and refuses an Attach without it.
// Detach and other drivers ignore it, so callers may pass it everywhere
// (the reconciler passes it to Attach and PowerOn).
func ServiceAddr(a netip.Addr) Option { return func(o *Options) { o.ServiceAddr = a } }

// ServiceAddrPort is ServiceAddr with the service's port
// (fsm.ServiceSpec.Address whole).
func ServiceAddrPort(ap netip.AddrPort) Option {
	return func(o *Options) { o.ServiceAddr, o.ServicePort = ap.Addr(), ap.Port() }
}

// ApplyOptions folds opts into Options.
func ApplyOptions(opts ...Option) Options {
	var o Options
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	return o
}

// Errors of driver calls; every error a driver returns wraps one of them.
var (
	// ErrNotFound: the replica's platform object (VM, NIC, snapshot,
	// container) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnsupported: the replica cannot do this (suspending an
	// FT-protected VM, a snapshot on FT).
	ErrUnsupported = errors.New("not supported")
	// ErrUnavailable: the platform could not be reached in time, or this
	// driver holds no session (not the leader, or logging in). Retry later.
	ErrUnavailable = errors.New("platform unavailable")
	// ErrInvalidState: the replica is in a state that does not allow the
	// operation (attach a powered-off VM, suspend a stopped one).
	ErrInvalidState = errors.New("invalid state for operation")
	// ErrConflict: the replica changed since the caller observed it
	// (IfVersion mismatch, concurrent modification).
	ErrConflict = errors.New("concurrent modification")
	// ErrDenied: the platform refused the credentials or a privilege.
	ErrDenied = errors.New("permission denied")
	// ErrInvalid: the replica spec cannot be used by this driver (wrong
	// platform, ambiguous NIC or VM name).
	ErrInvalid = errors.New("invalid replica spec")
	// ErrFailed: the platform reported a failure not covered above.
	ErrFailed = errors.New("operation failed")
)

// OpError is the error of one driver call. Err wraps one of the sentinel
// errors above (and the platform's own error, if any).
type OpError struct {
	Op       string // "attach", "detach", "power-on", "suspend", "resume", "power-off", "restore", "observe"
	Replica  string // fsm.ReplicaSpec.Name
	Target   string // platform object, e.g. "vm DC0_C0_RP0_VM0"
	Attempts int    // how many times the operation was tried (0: refused before trying)
	// State is what the platform reported right after the failure, so the
	// caller never has to guess which state the replica was left in. Nil
	// when it could not be read (unreachable, or the call was cancelled).
	State *Observation
	Err   error
}

func (e *OpError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s replica %s", e.Op, e.Replica)
	if e.Target != "" {
		fmt.Fprintf(&b, " (%s)", e.Target)
	}
	b.WriteString(": ")
	if e.Attempts > 1 {
		fmt.Fprintf(&b, "after %d attempts: ", e.Attempts)
	}
	b.WriteString(e.Err.Error())
	if e.State != nil {
		fmt.Fprintf(&b, " [now: %s]", e.State)
	}
	return b.String()
}

func (e *OpError) Unwrap() error { return e.Err }
