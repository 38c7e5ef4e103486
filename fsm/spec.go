package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/miekg/dns"
)

// Role is the role of one replica.
type Role string

// Replica roles (docs/design.md §2).
const (
	RoleActive      Role = "active"      // attached to the service network, serving
	RoleStandby     Role = "standby"     // running, detached, ready to take over
	RoleSuspended   Role = "suspended"   // kept cheap, resumed when needed
	RoleQuarantined Role = "quarantined" // attacked (exploit); must be restored first
	RoleRecovering  Role = "recovering"  // being restored (after a DoS); must be restored first
	RoleMaintenance Role = "maintenance" // taken out by an operator
)

// Valid reports whether r is one of the defined roles.
func (r Role) Valid() bool {
	switch r {
	case RoleActive, RoleStandby, RoleSuspended, RoleQuarantined, RoleRecovering, RoleMaintenance:
		return true
	}
	return false
}

// Eligible reports whether a replica in role r may be promoted to active or
// standby: only standby and suspended replicas may. Quarantined and recovering
// replicas must be "restored" first (docs/design.md §4.4); maintenance replicas must be
// released first.
func (r Role) Eligible() bool { return r == RoleStandby || r == RoleSuspended }

// Labels, profiles and policy values.
const (
	OSWindows = "windows"
	OSLinux   = "linux"

	PlatformVM        = "vm"
	PlatformContainer = "container"

	ProfileARS   = "ars"
	ProfilePaper = "paper"

	ConfirmNone   = "none"
	ConfirmQuorum = "quorum"

	RotationDiverse    = "diverse"
	RotationRoundRobin = "round-robin"

	ModeMakeBeforeBreak = "make-before-break"
	ModeBreakBeforeMake = "break-before-make"
	// ModeParallel issues the attach of the new replica and the detach of
	// the old one at once: the critical path holds one platform operation,
	// and the two may overlap on the network as in make-before-break.
	ModeParallel = "parallel"
)

// Defaults filled by Normalize.
const (
	DefaultProbeType    = "A"
	DefaultARSTimeout   = Duration(100 * time.Millisecond)
	DefaultARSInterval  = Duration(50 * time.Millisecond)
	DefaultARSWindow    = Duration(275 * time.Millisecond)
	DefaultPaperTimeout = Duration(500 * time.Millisecond)
	DefaultFailures     = 3
	DefaultMinDwell     = Duration(2 * time.Second)
	DefaultMaxSwitches  = 5
	DefaultPolicyWindow = Duration(time.Minute)
	DefaultExploitMode  = ModeMakeBeforeBreak
	DefaultDoSMode      = ModeMakeBeforeBreak
	DefaultRotation     = RotationDiverse
	DefaultProfile      = ProfileARS
	DefaultConfirm      = ConfirmNone
	// Standby health probes (only in a spec with a health_addr).
	DefaultStandbyInterval = Duration(time.Second)
	DefaultStandbyFailures = 3
)

// Limits checked by Validate.
const (
	MaxReplicas          = 64   // replicas per service
	maxTextLen           = 256  // free-text spec fields (vm path, image, ...)
	maxExpectLen         = 1024 // probe.expect
	maxProbeDuration     = Duration(time.Minute)
	maxPolicyDuration    = Duration(24 * time.Hour)
	maxProbeFailures     = 100
	maxSwitchesPerWindow = 1000
)

// ReplicaSpec defines one replica of a service.
type ReplicaSpec struct {
	Name     string `json:"name"`               // unique in service, [a-z0-9][a-z0-9-_.]{0,62}
	Impl     string `json:"impl"`               // bind9, unbound, knot-resolver, pdns-recursor, ... any token
	OS       string `json:"os"`                 // windows | linux
	Platform string `json:"platform"`           // vm | container
	VM       string `json:"vm,omitempty"`       // vSphere VM name/path (platform vm; default: the replica name)
	NIC      string `json:"nic,omitempty"`      // service NIC device label
	Snapshot string `json:"snapshot,omitempty"` // clean snapshot name (platform vm)
	// VCenter names the vCenter that manages the VM (platform vm), as the
	// agent configuration names it; empty means the only one configured.
	// Added within wire version 1 (fsm/DESIGN.md, "Envelope and versioning").
	VCenter string `json:"vcenter,omitempty"`
	Host    string `json:"host,omitempty"`  // docker host name (platform container)
	Image   string `json:"image,omitempty"` // container image (platform container)
	// Container holds the rest of a container replica's definition
	// (platform container only; nil: the image's own command, no limits).
	Container *ContainerSpec `json:"container,omitempty"`
	// HealthAddr is an address ("IP:port") at which the replica's DNS
	// server answers whatever its role: a management address the leader
	// can reach. A standby is detached from the service network, so
	// without it nothing can tell a wedged standby from a healthy one.
	// When set, the leader sends the service's probe question there while
	// the replica is standby (controller/DESIGN.md, "Standby health").
	// Optional; added within wire version 1 at format level 5.
	HealthAddr string `json:"health_addr,omitempty"`
	// Handover is how the service address reaches the replica when it
	// becomes active: empty (NIC handover: the platform connects its
	// service NIC, which carries the address) or "address" (address
	// handover: its service NIC stays connected while it is standby, and
	// its replica agent at Agent puts the address on the link when the
	// leader claims it; controller/DESIGN.md, "Address handover"). Linux
	// VM replicas only. "nic" is accepted and stored as empty.
	// Optional; added within wire version 1 at format level 6.
	Handover string `json:"handover,omitempty"`
	// Agent is the replica agent's "IP:port", on a management network the
	// leaders reach whatever the state of the service NIC. Required with
	// handover "address", refused without it.
	Agent string `json:"agent,omitempty"`
}

// Handover modes of a replica (ReplicaSpec.Handover).
const (
	HandoverNIC     = ""
	HandoverAddress = "address"
)

// AddressHandover reports whether the replica takes the service address
// through its replica agent.
func (r ReplicaSpec) AddressHandover() bool { return r.Handover == HandoverAddress }

// ContainerSpec is how a container replica is created: the Docker driver
// re-creates the container from it and the image on every restore, so it is
// the container's "clean snapshot" together with the image.
type ContainerSpec struct {
	Command  []string `json:"command,omitempty"`  // replaces the image's CMD
	Env      []string `json:"env,omitempty"`      // KEY=VALUE
	Network  string   `json:"network,omitempty"`  // Docker network carrying the service address (macvlan in production, a bridge in the lab); default "ars-service"
	Networks []string `json:"networks,omitempty"` // other networks the container is always on (management); never the service network
	MemoryMB int      `json:"memory_mb,omitempty"`
	CPUMilli int      `json:"cpu_milli,omitempty"` // 1000 = one CPU
	PidsMax  int      `json:"pids_max,omitempty"`  // pids limit
	AppArmor string   `json:"apparmor,omitempty"`  // AppArmor profile to run under (hosts with AppArmor); "" = the engine default
}

// DefaultContainerNetwork is the service network of a container replica
// whose spec names none.
const DefaultContainerNetwork = "ars-service"

// ProbeSpec describes how the service is probed.
type ProbeSpec struct {
	Query    string   `json:"query"`    // FQDN, e.g. "www.lab.internal." (a missing final dot is added)
	Type     string   `json:"type"`     // RR type, "A" default
	Expect   string   `json:"expect"`   // expected rdata, e.g. "192.0.2.10" (optional)
	Profile  string   `json:"profile"`  // "ars" (default) | "paper"
	Timeout  Duration `json:"timeout"`  // default ars 100ms, paper 500ms
	Interval Duration `json:"interval"` // default ars 50ms, paper 0 (sequential)
	Failures int      `json:"failures"` // paper: consecutive timeouts; ars: consecutive failures also required within Window. Default 3
	Window   Duration `json:"window"`   // ars: no valid answer for this long => DoS (default 275ms, see controller/probe); paper: unused (0)
	Confirm  string   `json:"confirm"`  // "none" (default) | "quorum"
	// StandbyInterval and StandbyFailures pace the leader's health probes
	// of standbys that have a health_addr: one probe (with Timeout) at a
	// time, no more than one per StandbyInterval, and a standby is judged
	// not answering after StandbyFailures failures in a row. Normalize
	// fills the defaults (1s, 3) only in a spec with a health_addr, so
	// that a spec without one encodes as before (format level 1).
	StandbyInterval Duration `json:"standby_interval,omitempty"`
	StandbyFailures int      `json:"standby_failures,omitempty"`
}

// HasAddressHandover reports whether any replica of s uses address
// handover (or names an agent).
func (s ServiceSpec) HasAddressHandover() bool {
	return slices.ContainsFunc(s.Replicas, func(r ReplicaSpec) bool { return r.Handover != "" || r.Agent != "" })
}

// HasHealthAddr reports whether any replica of s has a health_addr.
func (s ServiceSpec) HasHealthAddr() bool {
	return slices.ContainsFunc(s.Replicas, func(r ReplicaSpec) bool { return r.HealthAddr != "" })
}

// PolicySpec describes the switching policy.
type PolicySpec struct {
	Rotation    string   `json:"rotation"`     // "diverse" (default) | "round-robin"
	MinDwell    Duration `json:"min_dwell"`    // default 2s
	MaxSwitches int      `json:"max_switches"` // per Window, default 5
	Window      Duration `json:"window"`       // default 1m
	ExploitMode string   `json:"exploit_mode"` // "make-before-break" (default) | "break-before-make" | "parallel"
	DoSMode     string   `json:"dos_mode"`     // "make-before-break" (default) | "parallel" | "break-before-make"
}

// ServiceSpec is what an operator applies: the service, its replicas, its
// probe and its policy.
type ServiceSpec struct {
	Name     string        `json:"name"`    // [a-z0-9][a-z0-9-]{0,62}
	Address  string        `json:"address"` // service address "IP:port"
	Replicas []ReplicaSpec `json:"replicas"`
	Probe    ProbeSpec     `json:"probe"`
	Policy   PolicySpec    `json:"policy"`
}

// Clone returns a deep copy of s.
func (s ServiceSpec) Clone() ServiceSpec {
	c := s
	c.Replicas = slices.Clone(s.Replicas)
	if c.Replicas == nil {
		c.Replicas = []ReplicaSpec{}
	}
	for i, r := range c.Replicas {
		if r.Container != nil {
			cc := *r.Container
			cc.Command = slices.Clone(cc.Command)
			cc.Env = slices.Clone(cc.Env)
			cc.Networks = slices.Clone(cc.Networks)
			c.Replicas[i].Container = &cc
		}
	}
	return c
}

// Equal reports whether s and o are identical.
func (s ServiceSpec) Equal(o ServiceSpec) bool {
	return s.Name == o.Name && s.Address == o.Address && s.Probe == o.Probe &&
		s.Policy == o.Policy && slices.EqualFunc(s.Replicas, o.Replicas, ReplicaSpec.Equal)
}

// Equal reports whether r and o are identical (the container definition
// compared by value).
func (r ReplicaSpec) Equal(o ReplicaSpec) bool {
	rc, oc := r.Container, o.Container
	r.Container, o.Container = nil, nil
	if r != o || (rc == nil) != (oc == nil) {
		return false
	}
	return rc == nil || rc.equal(*oc)
}

func (c ContainerSpec) equal(o ContainerSpec) bool {
	return slices.Equal(c.Command, o.Command) && slices.Equal(c.Env, o.Env) &&
		c.Network == o.Network && slices.Equal(c.Networks, o.Networks) &&
		c.MemoryMB == o.MemoryMB && c.CPUMilli == o.CPUMilli &&
		c.PidsMax == o.PidsMax && c.AppArmor == o.AppArmor
}

// Replica returns the spec of the named replica.
func (s ServiceSpec) Replica(name string) (ReplicaSpec, bool) {
	for _, r := range s.Replicas {
		if r.Name == name {
			return r, true
		}
	}
	return ReplicaSpec{}, false
}

// Normalize fills defaults and canonicalises spellings. It is deterministic
// and idempotent; a spec that differs only in spellings Normalize fixes is the
// same spec after Normalize. Zero values mean "default": a zero duration or
// count cannot be configured where a default exists.
//
//   - labels (impl, os, platform) and enumerations are trimmed and lower-cased,
//     probe.type is upper-cased;
//   - a parseable address is rewritten canonically ("192.0.2.1:053" -> "192.0.2.1:53");
//   - probe.query gets its final dot;
//   - platform "vm" replicas without a vm name use the replica name.
func (s *ServiceSpec) Normalize() {
	s.Name = strings.TrimSpace(s.Name)
	s.Address = strings.TrimSpace(s.Address)
	if ap, err := netip.ParseAddrPort(s.Address); err == nil {
		s.Address = ap.String()
	}
	if s.Replicas == nil {
		s.Replicas = []ReplicaSpec{}
	}
	for i := range s.Replicas {
		r := &s.Replicas[i]
		r.Name = strings.TrimSpace(r.Name)
		r.Impl = lower(r.Impl)
		r.OS = lower(r.OS)
		r.Platform = lower(r.Platform)
		r.VM = strings.TrimSpace(r.VM)
		r.NIC = strings.TrimSpace(r.NIC)
		r.Snapshot = strings.TrimSpace(r.Snapshot)
		r.VCenter = strings.TrimSpace(r.VCenter)
		r.Host = strings.TrimSpace(r.Host)
		r.Image = strings.TrimSpace(r.Image)
		r.HealthAddr = strings.TrimSpace(r.HealthAddr)
		if ap, err := netip.ParseAddrPort(r.HealthAddr); err == nil {
			r.HealthAddr = ap.String()
		}
		r.Handover = lower(r.Handover)
		if r.Handover == "nic" {
			r.Handover = HandoverNIC
		}
		r.Agent = strings.TrimSpace(r.Agent)
		if ap, err := netip.ParseAddrPort(r.Agent); err == nil {
			r.Agent = ap.String()
		}
		if c := r.Container; c != nil {
			c.Network = strings.TrimSpace(c.Network)
			c.AppArmor = strings.TrimSpace(c.AppArmor)
			for j := range c.Networks {
				c.Networks[j] = strings.TrimSpace(c.Networks[j])
			}
		}
		if r.Platform == PlatformVM && r.VM == "" {
			r.VM = r.Name
		}
	}

	p := &s.Probe
	p.Query = strings.TrimSpace(p.Query)
	if p.Query != "" {
		p.Query = dns.Fqdn(p.Query)
	}
	p.Type = strings.ToUpper(strings.TrimSpace(p.Type))
	if p.Type == "" {
		p.Type = DefaultProbeType
	}
	p.Expect = strings.TrimSpace(p.Expect)
	p.Profile = lower(p.Profile)
	if p.Profile == "" {
		p.Profile = DefaultProfile
	}
	p.Confirm = lower(p.Confirm)
	if p.Confirm == "" {
		p.Confirm = DefaultConfirm
	}
	switch p.Profile {
	case ProfilePaper:
		if p.Timeout == 0 {
			p.Timeout = DefaultPaperTimeout
		}
		// Interval and Window default to 0: sequential probes, verdict by
		// consecutive failures only.
	default:
		if p.Timeout == 0 {
			p.Timeout = DefaultARSTimeout
		}
		if p.Interval == 0 {
			p.Interval = DefaultARSInterval
		}
		if p.Window == 0 {
			p.Window = DefaultARSWindow
		}
	}
	if p.Failures == 0 {
		p.Failures = DefaultFailures
	}
	if s.HasHealthAddr() {
		if p.StandbyInterval == 0 {
			p.StandbyInterval = DefaultStandbyInterval
		}
		if p.StandbyFailures == 0 {
			p.StandbyFailures = DefaultStandbyFailures
		}
	}

	q := &s.Policy
	q.Rotation = lower(q.Rotation)
	if q.Rotation == "" {
		q.Rotation = DefaultRotation
	}
	if q.MinDwell == 0 {
		q.MinDwell = DefaultMinDwell
	}
	if q.MaxSwitches == 0 {
		q.MaxSwitches = DefaultMaxSwitches
	}
	if q.Window == 0 {
		q.Window = DefaultPolicyWindow
	}
	q.ExploitMode = lower(q.ExploitMode)
	if q.ExploitMode == "" {
		q.ExploitMode = DefaultExploitMode
	}
	q.DoSMode = lower(q.DoSMode)
	if q.DoSMode == "" {
		q.DoSMode = DefaultDoSMode
	}
}

func lower(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

var (
	serviceNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	replicaNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	tokenRE       = regexp.MustCompile(`^[a-z0-9][a-z0-9._+-]{0,62}$`)
	// VCenterNameRE is the form of a vCenter's name, in a replica's
	// vcenter field and in the agent configuration that defines it.
	VCenterNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
)

// probeTypesRejected are RR types that make no sense as a probe question.
var probeTypesRejected = map[uint16]bool{
	dns.TypeNone: true, dns.TypeReserved: true, dns.TypeOPT: true,
	dns.TypeAXFR: true, dns.TypeIXFR: true, dns.TypeTSIG: true, dns.TypeTKEY: true,
	dns.TypeMAILA: true, dns.TypeMAILB: true,
}

// Validate checks the spec as Normalize would leave it (it validates a
// normalized copy, so defaults need not be filled in) and returns the first
// problem as an error wrapping ErrInvalid whose message names the field, e.g.
// `replicas[1].os: must be "windows" or "linux"`.
func (s ServiceSpec) Validate() error {
	c := s.Clone()
	c.Normalize()
	if err := c.validate(); err != nil {
		return fmt.Errorf("%w: %s", ErrInvalid, err)
	}
	return nil
}

func (s ServiceSpec) validate() error {
	if s.Name == "" {
		return errors.New("name: required")
	}
	if !serviceNameRE.MatchString(s.Name) {
		return fmt.Errorf("name: %q must match [a-z0-9][a-z0-9-]{0,62}", s.Name)
	}
	if s.Address == "" {
		return errors.New("address: required (\"IP:port\")")
	}
	ap, err := netip.ParseAddrPort(s.Address)
	if err != nil {
		return fmt.Errorf("address: %q must be \"IP:port\" (e.g. \"192.0.2.53:53\")", s.Address)
	}
	if ap.Port() == 0 {
		return fmt.Errorf("address: %q: port must be 1-65535", s.Address)
	}
	if len(s.Replicas) == 0 {
		return errors.New("replicas: at least one replica required")
	}
	if len(s.Replicas) > MaxReplicas {
		return fmt.Errorf("replicas: %d replicas, at most %d allowed", len(s.Replicas), MaxReplicas)
	}
	seen := make(map[string]int, len(s.Replicas))
	healthSeen, agentSeen := map[string]int{}, map[string]int{}
	for i, r := range s.Replicas {
		if err := r.validate(); err != nil {
			return fmt.Errorf("replicas[%d].%s", i, err)
		}
		if j, dup := seen[r.Name]; dup {
			return fmt.Errorf("replicas[%d].name: %q already used by replicas[%d]", i, r.Name, j)
		}
		seen[r.Name] = i
		if r.Agent != "" {
			if r.Agent == s.Address {
				return fmt.Errorf("replicas[%d].agent: %q is the service address; give the replica's management address", i, r.Agent)
			}
			if j, dup := agentSeen[r.Agent]; dup {
				return fmt.Errorf("replicas[%d].agent: %q already used by replicas[%d]", i, r.Agent, j)
			}
			agentSeen[r.Agent] = i
		}
		if r.HealthAddr == "" {
			continue
		}
		if r.HealthAddr == s.Address {
			return fmt.Errorf("replicas[%d].health_addr: %q is the service address, which only the active replica holds; give the replica's own management address", i, r.HealthAddr)
		}
		if j, dup := healthSeen[r.HealthAddr]; dup {
			return fmt.Errorf("replicas[%d].health_addr: %q already used by replicas[%d]", i, r.HealthAddr, j)
		}
		healthSeen[r.HealthAddr] = i
	}
	if err := s.Probe.validate(); err != nil {
		return fmt.Errorf("probe.%s", err)
	}
	if err := s.Policy.validate(); err != nil {
		return fmt.Errorf("policy.%s", err)
	}
	return nil
}

// validateHandover checks handover and agent.
func (r ReplicaSpec) validateHandover() error {
	switch r.Handover {
	case HandoverNIC:
		if r.Agent != "" {
			return fmt.Errorf("agent: only with handover %q (this replica takes the address by its NIC)", HandoverAddress)
		}
		return nil
	case HandoverAddress:
	default:
		return fmt.Errorf("handover: %q must be \"nic\" (the default) or %q", r.Handover, HandoverAddress)
	}
	switch {
	case r.OS != OSLinux:
		return fmt.Errorf("handover: %q needs os %q: the replica agent has no tested implementation for %s; use handover \"nic\"", HandoverAddress, OSLinux, r.OS)
	case r.Agent == "":
		return fmt.Errorf("agent: required with handover %q (the replica agent's \"IP:port\")", HandoverAddress)
	}
	return checkMgmtAddr("agent", r.Agent, "the replica agent's management address", "198.51.100.7:7444")
}

// checkMgmtAddr checks a replica's management address field: a unicast
// "IP:port" with a port.
func checkMgmtAddr(field, v, what, example string) error {
	ap, err := netip.ParseAddrPort(v)
	switch {
	case err != nil:
		return fmt.Errorf("%s: %q must be \"IP:port\" (%s, e.g. \"%s\")", field, v, what, example)
	case ap.Port() == 0:
		return fmt.Errorf("%s: %q: port must be 1-65535", field, v)
	case ap.Addr().IsUnspecified() || ap.Addr().IsMulticast():
		return fmt.Errorf("%s: %q is not a unicast address", field, v)
	}
	return nil
}

// validate returns errors of the form "field: reason" (without prefix).
func (r ReplicaSpec) validate() error {
	if r.Name == "" {
		return errors.New("name: required")
	}
	if !replicaNameRE.MatchString(r.Name) {
		return fmt.Errorf("name: %q must match [a-z0-9][a-z0-9-_.]{0,62}", r.Name)
	}
	if r.Impl == "" {
		return errors.New("impl: required (e.g. \"bind9\", \"unbound\")")
	}
	if !tokenRE.MatchString(r.Impl) {
		return fmt.Errorf("impl: %q must be a token matching [a-z0-9][a-z0-9._+-]{0,62}", r.Impl)
	}
	if r.OS != OSWindows && r.OS != OSLinux {
		return fmt.Errorf("os: must be %q or %q", OSWindows, OSLinux)
	}
	if r.Platform != PlatformVM && r.Platform != PlatformContainer {
		return fmt.Errorf("platform: must be %q or %q", PlatformVM, PlatformContainer)
	}
	for _, f := range []struct{ name, v string }{
		{"vm", r.VM}, {"nic", r.NIC}, {"snapshot", r.Snapshot}, {"host", r.Host}, {"image", r.Image},
	} {
		if err := checkText(f.v, maxTextLen); err != nil {
			return fmt.Errorf("%s: %v", f.name, err)
		}
	}
	if r.HealthAddr != "" {
		if err := checkMgmtAddr("health_addr", r.HealthAddr, "the replica's management address", "198.51.100.7:53"); err != nil {
			return err
		}
	}
	if err := r.validateHandover(); err != nil {
		return err
	}
	if r.VCenter != "" && !VCenterNameRE.MatchString(r.VCenter) {
		return fmt.Errorf("vcenter: %q must match [a-z0-9][a-z0-9._-]{0,62} (a name from the agent configuration's vcenters list)", r.VCenter)
	}
	switch r.Platform {
	case PlatformVM:
		if r.Host != "" {
			return fmt.Errorf("host: only for platform %q", PlatformContainer)
		}
		if r.Image != "" {
			return fmt.Errorf("image: only for platform %q", PlatformContainer)
		}
		if r.Container != nil {
			return fmt.Errorf("container: only for platform %q", PlatformContainer)
		}
	case PlatformContainer:
		if r.VM != "" {
			return fmt.Errorf("vm: only for platform %q", PlatformVM)
		}
		if r.Snapshot != "" {
			return fmt.Errorf("snapshot: only for platform %q (containers are re-created)", PlatformVM)
		}
		if r.VCenter != "" {
			return fmt.Errorf("vcenter: only for platform %q (a container names its docker host in host)", PlatformVM)
		}
		if r.Container != nil {
			if err := r.Container.validate(); err != nil {
				return fmt.Errorf("container.%w", err)
			}
		}
	}
	return nil
}

// Limits of a container definition: generous for any real DNS server, small
// enough that a spec stays a small log entry.
const (
	maxContainerArgs = 64
	maxContainerEnv  = 64
	maxContainerNets = 8
)

var containerNetRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

func (c ContainerSpec) validate() error {
	if len(c.Command) > maxContainerArgs {
		return fmt.Errorf("command: at most %d arguments", maxContainerArgs)
	}
	for i, a := range c.Command {
		if err := checkText(a, maxTextLen); err != nil {
			return fmt.Errorf("command[%d]: %v", i, err)
		}
	}
	if len(c.Env) > maxContainerEnv {
		return fmt.Errorf("env: at most %d entries", maxContainerEnv)
	}
	for i, e := range c.Env {
		k, _, ok := strings.Cut(e, "=")
		if !ok || k == "" {
			return fmt.Errorf("env[%d]: %q must be KEY=VALUE", i, e)
		}
		if err := checkText(e, maxTextLen); err != nil {
			return fmt.Errorf("env[%d]: %v", i, err)
		}
	}
	if c.Network != "" && !containerNetRE.MatchString(c.Network) {
		return fmt.Errorf("network: %q is not a Docker network name", c.Network)
	}
	if len(c.Networks) > maxContainerNets {
		return fmt.Errorf("networks: at most %d", maxContainerNets)
	}
	service := c.Network
	if service == "" {
		service = DefaultContainerNetwork
	}
	seen := map[string]bool{}
	for i, n := range c.Networks {
		switch {
		case !containerNetRE.MatchString(n):
			return fmt.Errorf("networks[%d]: %q is not a Docker network name", i, n)
		case n == service:
			return fmt.Errorf("networks[%d]: %q is the service network; the driver attaches it only to the active replica", i, n)
		case seen[n]:
			return fmt.Errorf("networks[%d]: %q is listed twice", i, n)
		}
		seen[n] = true
	}
	if c.MemoryMB < 0 || c.MemoryMB > 1<<20 {
		return fmt.Errorf("memory_mb: %d out of range 0..%d", c.MemoryMB, 1<<20)
	}
	if c.MemoryMB > 0 && c.MemoryMB < 6 {
		return fmt.Errorf("memory_mb: %d is below Docker's minimum of 6", c.MemoryMB)
	}
	if c.CPUMilli < 0 || c.CPUMilli > 1024*1000 {
		return fmt.Errorf("cpu_milli: %d out of range 0..%d", c.CPUMilli, 1024*1000)
	}
	if c.PidsMax < 0 || c.PidsMax > 1<<22 {
		return fmt.Errorf("pids_max: %d out of range 0..%d", c.PidsMax, 1<<22)
	}
	if c.AppArmor != "" {
		if err := checkText(c.AppArmor, maxTextLen); err != nil {
			return fmt.Errorf("apparmor: %v", err)
		}
		if strings.ContainsAny(c.AppArmor, " \t") {
			return fmt.Errorf("apparmor: %q must be a profile name without spaces", c.AppArmor)
		}
	}
	return nil
}

func (p ProbeSpec) validate() error {
	if p.Query == "" {
		return errors.New("query: required (e.g. \"www.lab.internal.\")")
	}
	if _, ok := dns.IsDomainName(p.Query); !ok || !dns.IsFqdn(p.Query) {
		return fmt.Errorf("query: %q is not a fully qualified domain name", p.Query)
	}
	t, ok := dns.StringToType[p.Type]
	if !ok {
		return fmt.Errorf("type: unknown RR type %q", p.Type)
	}
	if probeTypesRejected[t] {
		return fmt.Errorf("type: %q cannot be used as a probe question", p.Type)
	}
	if p.Expect != "" {
		if err := checkText(p.Expect, maxExpectLen); err != nil {
			return fmt.Errorf("expect: %v", err)
		}
		switch t {
		case dns.TypeA:
			if a, err := netip.ParseAddr(p.Expect); err != nil || !a.Is4() {
				return fmt.Errorf("expect: %q is not an IPv4 address (type A)", p.Expect)
			}
		case dns.TypeAAAA:
			if a, err := netip.ParseAddr(p.Expect); err != nil || !a.Is6() || a.Zone() != "" {
				return fmt.Errorf("expect: %q is not an IPv6 address (type AAAA)", p.Expect)
			}
		}
	}
	if p.Profile != ProfileARS && p.Profile != ProfilePaper {
		return fmt.Errorf("profile: must be %q or %q", ProfileARS, ProfilePaper)
	}
	if p.Timeout <= 0 || p.Timeout > maxProbeDuration {
		return fmt.Errorf("timeout: %s must be > 0 and <= %s", p.Timeout, maxProbeDuration)
	}
	if p.Interval < 0 || p.Interval > maxProbeDuration {
		return fmt.Errorf("interval: %s must be >= 0 and <= %s", p.Interval, maxProbeDuration)
	}
	if p.Failures < 1 || p.Failures > maxProbeFailures {
		return fmt.Errorf("failures: %d must be 1-%d", p.Failures, maxProbeFailures)
	}
	if p.Window < 0 || p.Window > maxPolicyDuration {
		return fmt.Errorf("window: %s must be >= 0 and <= %s", p.Window, maxPolicyDuration)
	}
	if p.Profile == ProfileARS && p.Window == 0 {
		return fmt.Errorf("window: must be > 0 for profile %q", ProfileARS)
	}
	if p.Confirm != ConfirmNone && p.Confirm != ConfirmQuorum {
		return fmt.Errorf("confirm: must be %q or %q", ConfirmNone, ConfirmQuorum)
	}
	if p.StandbyInterval < 0 || p.StandbyInterval > maxProbeDuration {
		return fmt.Errorf("standby_interval: %s must be >= 0 and <= %s", p.StandbyInterval, maxProbeDuration)
	}
	if p.StandbyInterval > 0 && p.StandbyInterval < p.Timeout {
		return fmt.Errorf("standby_interval: %s must be at least the timeout (%s): one standby probe at a time", p.StandbyInterval, p.Timeout)
	}
	if p.StandbyFailures < 0 || p.StandbyFailures > maxProbeFailures {
		return fmt.Errorf("standby_failures: %d must be 1-%d", p.StandbyFailures, maxProbeFailures)
	}
	return nil
}

func (q PolicySpec) validate() error {
	if q.Rotation != RotationDiverse && q.Rotation != RotationRoundRobin {
		return fmt.Errorf("rotation: must be %q or %q", RotationDiverse, RotationRoundRobin)
	}
	if q.MinDwell < 0 || q.MinDwell > maxPolicyDuration {
		return fmt.Errorf("min_dwell: %s must be >= 0 and <= %s", q.MinDwell, maxPolicyDuration)
	}
	if q.MaxSwitches < 1 || q.MaxSwitches > maxSwitchesPerWindow {
		return fmt.Errorf("max_switches: %d must be 1-%d", q.MaxSwitches, maxSwitchesPerWindow)
	}
	if q.Window <= 0 || q.Window > maxPolicyDuration {
		return fmt.Errorf("window: %s must be > 0 and <= %s", q.Window, maxPolicyDuration)
	}
	if !ValidMode(q.ExploitMode) {
		return fmt.Errorf("exploit_mode: %q must be %s", q.ExploitMode, ModeChoices)
	}
	if !ValidMode(q.DoSMode) {
		return fmt.Errorf("dos_mode: %q must be %s", q.DoSMode, ModeChoices)
	}
	return nil
}

// ValidMode reports whether m is a switch mode (make-before-break,
// break-before-make or parallel).
func ValidMode(m string) bool {
	return m == ModeMakeBeforeBreak || m == ModeBreakBeforeMake || m == ModeParallel
}

// ModeChoices names the valid switch modes, for error messages.
var ModeChoices = fmt.Sprintf("%q, %q or %q", ModeMakeBeforeBreak, ModeBreakBeforeMake, ModeParallel)

// checkText accepts printable UTF-8 without control characters, up to max bytes.
func checkText(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%d bytes, at most %d allowed", len(s), max)
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("control character %U not allowed", r)
		}
	}
	return nil
}

// DecodeServiceSpec decodes a spec strictly (unknown fields and trailing data
// are errors), then normalizes and validates it. Every error wraps ErrInvalid.
func DecodeServiceSpec(data []byte) (ServiceSpec, error) {
	var s ServiceSpec
	if err := decodeStrict(data, &s); err != nil {
		return ServiceSpec{}, fmt.Errorf("%w: service spec: %v", ErrInvalid, err)
	}
	s.Normalize()
	if err := s.Validate(); err != nil {
		return ServiceSpec{}, err
	}
	return s, nil
}

// decodeStrict decodes exactly one JSON value into v, rejecting unknown
// fields and anything after the value.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// checkMultiline is checkText that also allows tab, newline and carriage
// return (log lines, stack traces).
func checkMultiline(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%d bytes, at most %d allowed", len(s), max)
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' {
			return fmt.Errorf("control character %U not allowed", r)
		}
	}
	return nil
}
