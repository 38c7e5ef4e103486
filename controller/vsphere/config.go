package vsphere

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Defaults of Config. The per-call timeout is the bound on one SOAP round
// trip (a vCenter answers a ReconfigVM_Task or a property read in tens of
// milliseconds; the task then runs on its own). One second is shorter than
// the paper's detection budget (3 × 500 ms) and than ars' default window
// plus a probe: a hung connection is abandoned and retried before another
// detection period has passed. Task waits have their own, longer bound:
// power-on or a snapshot revert can take many seconds.
const (
	DefaultCallTimeout = 1 * time.Second
	DefaultTaskTimeout = 60 * time.Second
	DefaultKeepAlive   = 10 * time.Second
	DefaultMaxAttempts = 3
	DefaultWatchWait   = 1 * time.Second
	// LoginTimeout bounds a login (at least; CallTimeout if longer).
	LoginTimeout = 10 * time.Second
)

// Config configures a Driver for one vCenter.
type Config struct {
	// Name is the vCenter's name: replicas name it (fsm.ReplicaSpec.VCenter),
	// and it labels the metrics ("vcenter") and the log. Default: the URL's
	// host (host:port if the URL has a port), which is what the label was
	// before vCenters had names.
	Name string
	// URL of the SDK endpoint, https://vcenter.example/sdk. http:// only
	// with Insecure.
	URL string
	// Username and Password log in. Password is called at every login (so
	// a rotated password file is picked up); it is never logged.
	Username string
	Password func() (string, error)

	// TLS: the server certificate is verified against the system roots,
	// or CAFile, or pinned by Thumbprint (SHA-256 or SHA-1, "AB:CD:…").
	// Insecure skips verification (labs only) and must be chosen explicitly.
	CAFile     string
	Thumbprint string
	Insecure   bool

	// PerOperationLogin logs in and out around every operation instead of
	// holding one session: the older script behaviour, kept for the paper
	// comparison in the benchmark. No keep-alive and no watch in this mode.
	PerOperationLogin bool

	// CallTimeout bounds every SOAP round trip (default 1 s); TaskTimeout
	// bounds waiting for a vCenter task (default 60 s); MaxAttempts is how
	// often a failed operation is tried in all (default 3), with backoff.
	CallTimeout time.Duration
	TaskTimeout time.Duration
	MaxAttempts int
	// KeepAlive is the interval of the session check that keeps the
	// session from idling out and re-logs in when it is gone (default 10 s;
	// vCenter expires idle sessions after 30 min by default).
	KeepAlive time.Duration
	// WatchWait is the long-poll of the property-collector watch (default
	// 1 s, whole seconds): how late a newly observed replica joins the watch.
	WatchWait time.Duration

	Logger  *slog.Logger
	Metrics *Metrics // nil: metrics are kept but not registered anywhere
}

func (c *Config) setDefaults() {
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.TaskTimeout == 0 {
		c.TaskTimeout = DefaultTaskTimeout
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.WatchWait == 0 {
		c.WatchWait = DefaultWatchWait
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func (c *Config) validate() (*url.URL, error) {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return nil, errors.New("vsphere: URL required")
	case err != nil:
		return nil, fmt.Errorf("vsphere: URL: %w", err)
	case u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return nil, fmt.Errorf("vsphere: URL %q must be https://HOST/sdk", c.URL)
	case u.Scheme == "http" && !c.Insecure:
		return nil, fmt.Errorf("vsphere: URL %q is plain http: the password would cross the network in clear; use https or set Insecure", c.URL)
	case u.User != nil:
		return nil, errors.New("vsphere: URL must not carry credentials")
	}
	if u.Path == "" {
		u.Path = "/sdk"
	}
	if c.Name == "" {
		c.Name = u.Host
	}
	if c.Username == "" {
		return nil, errors.New("vsphere: username required")
	}
	if c.Password == nil {
		return nil, errors.New("vsphere: password source required")
	}
	if c.Thumbprint != "" {
		if _, err := ParseThumbprint(c.Thumbprint); err != nil {
			return nil, fmt.Errorf("vsphere: %w", err)
		}
	}
	if c.Thumbprint != "" && c.CAFile != "" {
		return nil, errors.New("vsphere: CA file and thumbprint are exclusive")
	}
	if c.Insecure && (c.Thumbprint != "" || c.CAFile != "") {
		return nil, errors.New("vsphere: insecure contradicts a CA file or thumbprint")
	}
	switch {
	case c.CallTimeout < 0, c.TaskTimeout < 0, c.KeepAlive < 0, c.WatchWait < 0:
		return nil, errors.New("vsphere: timeouts and intervals must be positive")
	case c.MaxAttempts < 0:
		return nil, errors.New("vsphere: max attempts must be positive")
	case c.WatchWait < time.Second:
		return nil, errors.New("vsphere: watch wait must be at least 1s (vCenter counts whole seconds)")
	}
	return u, nil
}

// ParseThumbprint parses a certificate thumbprint: 20 (SHA-1) or 32
// (SHA-256) bytes in hex, with or without colons, any case. It returns the
// canonical form "AB:CD:…".
func ParseThumbprint(s string) (string, error) {
	raw := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	b, err := hex.DecodeString(raw)
	if err != nil || (len(b) != 20 && len(b) != 32) {
		return "", fmt.Errorf("thumbprint %q must be a SHA-256 (or SHA-1) fingerprint in hex, e.g. AB:CD:…", s)
	}
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02X", x)
	}
	return strings.Join(parts, ":"), nil
}
