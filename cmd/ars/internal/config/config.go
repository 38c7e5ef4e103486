package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ars-project/ars/cluster"
	"github.com/ars-project/ars/controller/vsphere"
	"github.com/ars-project/ars/notify"
)

// ErrInvalid is wrapped by every error this package returns for a bad
// configuration file (syntax, unknown key, wrong type or bad value).
var ErrInvalid = errors.New("invalid agent configuration")

// Agent is the node-local configuration of one ars agent.
type Agent struct {
	// NodeName names the node in Raft and gossip: [a-z0-9][a-z0-9-]{0,62}.
	NodeName string `yaml:"node_name"`
	// DataDir holds the Raft log, stable store and snapshots. Required
	// unless Dev; empty in dev mode means in-memory Raft.
	DataDir string `yaml:"data_dir"`
	// BindAddr is the IP the listeners bind to (default 0.0.0.0).
	BindAddr string `yaml:"bind_addr"`
	// AdvertiseAddr is the IP other nodes use to reach this one. Required if
	// BindAddr is unspecified (0.0.0.0 or ::); Load defaults it to BindAddr.
	AdvertiseAddr string `yaml:"advertise_addr"`
	// Ports of the HTTPS API, the Raft stream layer and memberlist gossip.
	Ports Ports `yaml:"ports"`
	// BootstrapExpect: 0 = only join an existing cluster; N = bootstrap once
	// N servers have found each other through gossip.
	BootstrapExpect int `yaml:"bootstrap_expect"`
	// Join lists gossip addresses (host:port) tried at start, with retries.
	Join []string `yaml:"join"`
	// TLS files of this node (mTLS for Raft, API server certificate).
	TLS TLS `yaml:"tls"`
	// GossipKeyFile holds the base64 memberlist encryption key (16/24/32 bytes).
	GossipKeyFile string `yaml:"gossip_key_file"`
	// TokensFile holds the API tokens (transport.LoadTokens format).
	TokensFile string `yaml:"tokens_file"`

	Raft       Raft       `yaml:"raft"`
	Gossip     Gossip     `yaml:"gossip"`
	Membership Membership `yaml:"membership"`
	Disk       Disk       `yaml:"disk"`
	Log        Log        `yaml:"log"`

	// VCenter is the one-vCenter shorthand of VCenters (optional; nil =
	// none): a node with one vCenter may keep today's single section, and
	// its VM replicas need not name it. Use one of the two, not both.
	VCenter *VCenter `yaml:"vcenter"`
	// VCenters lists the vCenters of VM replicas, each with the name the
	// replicas use (fsm.ReplicaSpec.VCenter). The leader holds one session
	// per vCenter.
	VCenters []VCenter `yaml:"vcenters"`
	// Docker lists the Docker Engine endpoints for container replicas.
	Docker Docker `yaml:"docker"`
	// Notify lists the sinks the leader tells of every committed event
	// (package notify): none by default.
	Notify []NotifySink `yaml:"notify"`

	// Dev marks the `ars agent -dev` configuration (not settable from YAML).
	Dev bool `yaml:"-"`
	// File is the path the configuration was loaded from ("" if built in code).
	File string `yaml:"-"`

	lines map[string]int // field path -> line, filled by Load
}

// Ports are TCP (and for gossip also UDP) ports, 1..65535, all distinct.
type Ports struct {
	API    int `yaml:"api"`
	Raft   int `yaml:"raft"`
	Gossip int `yaml:"gossip"`
}

// TLS names PEM files. Relative paths are resolved against the config file.
type TLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// IsZero reports whether no TLS file is configured.
func (t TLS) IsZero() bool { return t.CAFile == "" && t.CertFile == "" && t.KeyFile == "" }

// Raft maps onto hashicorp/raft.Config.
type Raft struct {
	HeartbeatTimeout   time.Duration `yaml:"heartbeat_timeout"`
	ElectionTimeout    time.Duration `yaml:"election_timeout"`
	LeaderLeaseTimeout time.Duration `yaml:"leader_lease_timeout"`
	CommitTimeout      time.Duration `yaml:"commit_timeout"`
	SnapshotInterval   time.Duration `yaml:"snapshot_interval"`
	SnapshotThreshold  uint64        `yaml:"snapshot_threshold"`
	TrailingLogs       uint64        `yaml:"trailing_logs"`
}

// Gossip maps onto memberlist.Config.
type Gossip struct {
	ProbeInterval  time.Duration `yaml:"probe_interval"`
	ProbeTimeout   time.Duration `yaml:"probe_timeout"`
	SuspicionMult  int           `yaml:"suspicion_mult"`
	GossipInterval time.Duration `yaml:"gossip_interval"`
}

// Membership tunes how the leader reconciles gossip into the Raft configuration.
type Membership struct {
	// ReapFailedAfter: a failed member is removed from Raft only after this long.
	ReapFailedAfter time.Duration `yaml:"reap_failed_after"`
	// MinVoters: never reap a failed voter if fewer voters would remain.
	MinVoters int `yaml:"min_voters"`
}

// Disk tunes the check of data_dir beside Raft: below MinFreeBytes free,
// or when the probe write and fsync fail or take longer than
// ProbeTimeout, the node steps out of Raft and refuses writes until the
// disk recovers.
type Disk struct {
	MinFreeBytes  uint64        `yaml:"min_free_bytes"`
	CheckInterval time.Duration `yaml:"check_interval"`
	ProbeTimeout  time.Duration `yaml:"probe_timeout"`
}

// Log selects the slog handler.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// VCenter is one vSphere endpoint used by the leader's VM driver. Only the
// leader holds a session (one per vCenter, for as long as it leads).
type VCenter struct {
	// Name is what replicas call this vCenter (their vcenter field), the
	// metrics label "vcenter" and the log attribute:
	// [a-z0-9][a-z0-9._-]{0,62}. Required in vcenters; in the vcenter
	// shorthand it defaults to the URL's host (Name).
	Name     string `yaml:"name"`
	URL      string `yaml:"url"`      // https://vcenter.example/sdk
	Username string `yaml:"username"` // required with url
	// PasswordFile holds the password (trailing newline ignored; re-read
	// at every login). Without it the password comes from the environment
	// (PasswordEnvNames). It is never logged.
	PasswordFile string `yaml:"password_file"`
	// The vCenter certificate is verified: against the system roots, or
	// CAFile, or pinned by Thumbprint (SHA-256 or SHA-1 hex, as the vSphere
	// client shows it). Insecure skips verification (labs only) and cannot
	// be combined with either.
	CAFile     string `yaml:"ca_file"`
	Thumbprint string `yaml:"thumbprint"`
	Insecure   bool   `yaml:"insecure"`
	// PerOperationLogin logs in and out around every VM operation: the
	// older script behaviour, for the paper comparison only.
	PerOperationLogin bool `yaml:"per_operation_login"`
	// CallTimeout bounds each vCenter round trip (default 1s), TaskTimeout
	// each vCenter task (default 60s); MaxAttempts is how often a failed
	// operation is tried (default 3); KeepAliveInterval is how often the
	// session is checked and kept from idling out (default 10s).
	CallTimeout       time.Duration `yaml:"call_timeout"`
	TaskTimeout       time.Duration `yaml:"task_timeout"`
	MaxAttempts       int           `yaml:"max_attempts"`
	KeepAliveInterval time.Duration `yaml:"keepalive_interval"`

	// Set by Agent.VCenterList for entries of vcenters: where the entry is
	// (for messages) and whether it is the only one.
	field  string
	listed bool
	alone  bool
}

// PasswordEnv names the environment variable that holds the vCenter
// password when the vCenter has no password_file: the shorthand's, or the
// only entry's of vcenters. An entry of vcenters also reads its own
// variable, PasswordEnv + "_" + its name in upper case with "-" and "."
// as "_" (ARS_VCENTER_PASSWORD_VC_EAST for vc-east).
const PasswordEnv = "ARS_VCENTER_PASSWORD"

// PasswordEnvNames are the environment variables this vCenter's password
// may come from, in the order they are read.
func (v *VCenter) PasswordEnvNames() []string {
	if !v.listed {
		return []string{PasswordEnv}
	}
	own := PasswordEnv + "_" + strings.NewReplacer("-", "_", ".", "_").Replace(strings.ToUpper(v.Name))
	if v.alone {
		return []string{own, PasswordEnv}
	}
	return []string{own}
}

// VCenterList is the configured vCenters, whichever form the file used:
// the vcenter shorthand becomes a list of one, named after its URL's host
// unless it has a name. Nil when there is none.
func (a *Agent) VCenterList() []VCenter {
	if a.VCenter != nil {
		v := *a.VCenter
		v.field = "vcenter"
		if v.Name == "" {
			v.Name = DefaultVCenterName(v.URL)
		}
		return []VCenter{v}
	}
	var out []VCenter
	for i, v := range a.VCenters {
		v.field = "vcenters[" + strconv.Itoa(i) + "]"
		v.listed, v.alone = true, len(a.VCenters) == 1
		out = append(out, v)
	}
	return out
}

// DefaultVCenterName is the name of a vcenter shorthand without one: the
// URL's host (with its port, if it has one), which is what the vSphere
// metrics were labelled with before vCenters had names.
func DefaultVCenterName(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil && u.Host != "" {
		return u.Host
	}
	return rawURL
}

// setDefaults fills the timing defaults (the vSphere driver's) of the keys
// that set does not report as written; prefix is the entry's field path.
func (v *VCenter) setDefaults(prefix string, set func(field string) bool) {
	if v.CallTimeout == 0 && !set(prefix+".call_timeout") {
		v.CallTimeout = vsphere.DefaultCallTimeout
	}
	if v.TaskTimeout == 0 && !set(prefix+".task_timeout") {
		v.TaskTimeout = vsphere.DefaultTaskTimeout
	}
	if v.MaxAttempts == 0 && !set(prefix+".max_attempts") {
		v.MaxAttempts = vsphere.DefaultMaxAttempts
	}
	if v.KeepAliveInterval == 0 && !set(prefix+".keepalive_interval") {
		v.KeepAliveInterval = vsphere.DefaultKeepAlive
	}
}

// Password returns the vCenter password: from PasswordFile if set, else
// from the first of PasswordEnvNames that is set. Errors never contain
// the password.
func (v *VCenter) Password() (string, error) {
	if v.PasswordFile != "" {
		data, err := os.ReadFile(v.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("vcenter password file: %w", err)
		}
		pw := strings.TrimRight(string(data), "\r\n")
		if pw == "" {
			return "", fmt.Errorf("vcenter password file %s is empty", v.PasswordFile)
		}
		return pw, nil
	}
	envs := v.PasswordEnvNames()
	for _, env := range envs {
		if pw := os.Getenv(env); pw != "" {
			return pw, nil
		}
	}
	field := v.field
	if field == "" {
		field = "vcenter"
	}
	return "", fmt.Errorf("no vcenter password: set %s.password_file or %s", field, strings.Join(envs, " or "))
}

// Docker lists Docker Engine API endpoints; replicas name them by Name.
type Docker struct {
	Hosts []DockerHost `yaml:"hosts"`
	// HelperImage is the address helper's image on every host in helper
	// mode (default ars/nethelper:latest, built by `make images`).
	HelperImage string `yaml:"helper_image"`
}

// DockerHost is one Docker Engine API endpoint.
type DockerHost struct {
	Name     string `yaml:"name"`     // referenced by fsm.ReplicaSpec.Host
	Endpoint string `yaml:"endpoint"` // unix:///var/run/docker.sock or tcp://host:2376
	TLS      TLS    `yaml:"tls"`      // optional client TLS for tcp endpoints
	// AddressMode is how containers on this engine take the service
	// address: "helper" (default; a make-before-break switch between two
	// of them loses nothing) or "endpoint" (the engine's own address; such
	// a switch detaches the old container first).
	AddressMode string `yaml:"address_mode"`
}

// NotifySink is one notification sink: a name (its cursor in the log and
// its metrics label, [a-z0-9][a-z0-9-]{0,62}) and exactly one of Exec and
// Webhook.
type NotifySink struct {
	Name    string         `yaml:"name"`
	Exec    *NotifyExec    `yaml:"exec"`
	Webhook *NotifyWebhook `yaml:"webhook"`
}

// NotifyExec runs an executable per event: Path (relative to the config
// file) with Args, then the event's type, service and index; the event's
// JSON on stdin. It is killed after Timeout (default 10s, at most 10m).
type NotifyExec struct {
	Path    string        `yaml:"path"`
	Args    []string      `yaml:"args"`
	Timeout time.Duration `yaml:"timeout"`
}

// NotifyWebhook POSTs each event's JSON to URL, signed (HMAC-SHA256) with
// the secret in SecretFile. Timeout bounds each attempt (default 5s, at
// most 1m); MaxAttempts is how often an event is tried (default 5, at most
// 20); Queue is how many events may wait (default 1024, at most 100000):
// beyond it new events are dropped and counted.
type NotifyWebhook struct {
	URL         string        `yaml:"url"`
	SecretFile  string        `yaml:"secret_file"`
	Timeout     time.Duration `yaml:"timeout"`
	MaxAttempts int           `yaml:"max_attempts"`
	Queue       int           `yaml:"queue"`
}

// setDefaults fills the defaults of the keys that set does not report as
// written; prefix is the sink's field path.
func (n *NotifySink) setDefaults(prefix string, set func(field string) bool) {
	if x := n.Exec; x != nil && x.Timeout == 0 && !set(prefix+".exec.timeout") {
		x.Timeout = notify.DefaultExecTimeout
	}
	if w := n.Webhook; w != nil {
		if w.Timeout == 0 && !set(prefix+".webhook.timeout") {
			w.Timeout = notify.DefaultWebhookTimeout
		}
		if w.MaxAttempts == 0 && !set(prefix+".webhook.max_attempts") {
			w.MaxAttempts = notify.DefaultMaxAttempts
		}
		if w.Queue == 0 && !set(prefix+".webhook.queue") {
			w.Queue = notify.DefaultQueue
		}
	}
}

// Default returns an Agent with every default of the schema filled in. The
// result is not valid by itself: node_name, data_dir, the TLS files, the
// gossip key and the tokens file have no default.
func Default() *Agent {
	// The timing defaults are the cluster package's, so there is one place
	// that says what they are and why.
	rt, gt, mp := cluster.DefaultRaftTimings(), cluster.DefaultGossipTimings(), cluster.DefaultMembershipPolicy()
	dc := cluster.DefaultDiskCheck()
	return &Agent{
		BindAddr: "0.0.0.0",
		Ports:    Ports{API: 7500, Raft: 7501, Gossip: 7502},
		Raft: Raft{
			HeartbeatTimeout:   rt.HeartbeatTimeout,
			ElectionTimeout:    rt.ElectionTimeout,
			LeaderLeaseTimeout: rt.LeaderLeaseTimeout,
			CommitTimeout:      rt.CommitTimeout,
			SnapshotInterval:   rt.SnapshotInterval,
			SnapshotThreshold:  rt.SnapshotThreshold,
			TrailingLogs:       rt.TrailingLogs,
		},
		Gossip: Gossip{
			ProbeInterval:  gt.ProbeInterval,
			ProbeTimeout:   gt.ProbeTimeout,
			SuspicionMult:  gt.SuspicionMult,
			GossipInterval: gt.GossipInterval,
		},
		Membership: Membership{ReapFailedAfter: mp.ReapFailedAfter, MinVoters: mp.MinVoters},
		Disk:       Disk{MinFreeBytes: dc.MinFreeBytes, CheckInterval: dc.Interval, ProbeTimeout: dc.ProbeTimeout},
		Log:        Log{Level: "info", Format: "text"},
	}
}

// Dev returns the configuration of `ars agent -dev`: one node named "dev",
// in-memory Raft (empty DataDir), everything on 127.0.0.1, API on port 7500,
// no TLS, no gossip key and no tokens. It is valid as returned.
func Dev() *Agent {
	a := Default()
	a.Dev = true
	a.NodeName = "dev"
	a.BindAddr = "127.0.0.1"
	a.AdvertiseAddr = "127.0.0.1"
	a.BootstrapExpect = 1
	a.Membership.MinVoters = 1
	return a
}

// Error is one configuration problem.
type Error struct {
	File   string // "" when the Agent was not loaded from a file
	Line   int    // 1-based; 0 when unknown (no file)
	Field  string // dotted path such as "raft.heartbeat_timeout" or "join[1]"; may be ""
	Reason string
}

func (e *Error) Error() string {
	msg := e.Reason
	if e.Field != "" {
		msg = fieldName(e.Field) + ": " + e.Reason
	}
	if e.File == "" {
		return msg
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, msg)
}

// fieldName shows a field path as is when it is plain (letters, digits,
// "_", ".", "[", "]", "-"), quoted otherwise: a key with spaces or
// control characters must not blur the FILE:LINE: field: reason shape.
func fieldName(f string) string {
	for _, r := range f {
		if !(r == '_' || r == '.' || r == '[' || r == ']' || r == '-' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			return strconv.Quote(f)
		}
	}
	return f
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *Error) Unwrap() error { return ErrInvalid }
