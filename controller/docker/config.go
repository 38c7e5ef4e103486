package docker

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config. CallTimeout bounds one quick Engine API round trip
// (inspect, network connect/disconnect, pause, unpause: milliseconds on a
// healthy engine); two seconds keeps a hung engine from holding the
// reconciler longer than about one detection period. Calls that make the
// engine start or stop processes or touch the storage driver (create,
// start, stop, remove) get SlowCallTimeout: a container start took 0.3–0.7 s
// on the test machine and can take seconds on a loaded one.
const (
	DefaultCallTimeout     = 2 * time.Second
	DefaultSlowCallTimeout = 30 * time.Second
	DefaultMaxAttempts     = 3
	DefaultParkNetwork     = "ars-park"
	// DefaultHelperImage is the address helper's image (cmd/ars-nethelper),
	// built by `make images` like the lab's images.
	DefaultHelperImage = "ars/nethelper:latest"
)

// AddressMode is how Attach gives a container the service address.
type AddressMode string

// Address modes.
const (
	// AddressHelper (the default): the container joins the service network
	// under an address of its own, and a helper container sharing its
	// network namespace adds the service address and announces it. Two
	// replicas on one engine can then hold the address at once, so a
	// make-before-break switch between them loses nothing. The engine
	// needs the helper image, and the service network an ip-range that
	// leaves the service address out (DESIGN.md, "Two containers, one
	// address").
	AddressHelper AddressMode = "helper"
	// AddressEndpoint: the service address is the endpoint's own address
	// (the engine's IPAM). The engine gives it to one endpoint at a time,
	// so a switch between two containers of one engine detaches the old
	// one first: a gap of one disconnect and connect.
	AddressEndpoint AddressMode = "endpoint"
)

// Config configures a Driver for one or more Docker engines.
type Config struct {
	// Hosts are the engines; a replica names its engine by Host.Name
	// (fsm.ReplicaSpec.Host). With exactly one host, a replica may leave
	// its host empty.
	Hosts []Host

	// CallTimeout bounds quick API round trips (default 2 s);
	// SlowCallTimeout bounds create, start, stop and remove (default 30 s).
	// MaxAttempts is how often a failed operation is tried in all (default
	// 3), 50 ms → 100 ms → … apart, each attempt re-reading the state.
	CallTimeout     time.Duration
	SlowCallTimeout time.Duration
	MaxAttempts     int
	// StopGrace is how long PowerOff lets the container's process exit on
	// SIGTERM before the engine kills it (default 0: kill at once; a DNS
	// replica has nothing to flush, and PowerOff means "hard").
	StopGrace time.Duration
	// ParkNetwork is the network a container is created on when its spec
	// lists no other networks (default "ars-park"): an internal bridge
	// without inter-container traffic, created by the driver on first use.
	// A container must sit on some network to be connectable to the
	// service network later ("none" cannot be connected to anything), and
	// the engine's default bridge would give a resolver a route to the
	// outside world.
	ParkNetwork string
	// HelperImage is the image of the address helper containers (default
	// DefaultHelperImage), used on hosts in AddressHelper mode. Like
	// replica images it is never pulled.
	HelperImage string

	Logger *slog.Logger
	// Registerer receives the driver's metrics (nil: kept, not registered).
	Registerer prometheus.Registerer

	// requestHook sees every Engine API request (tests count mutating calls).
	requestHook func(*http.Request)
}

// Host is one Docker engine.
type Host struct {
	Name string
	// Endpoint is unix:///path/to/docker.sock or tcp://host:port. A tcp
	// endpoint needs TLS (mutual: the engine verifies the client
	// certificate), unless it is a loopback address.
	Endpoint string
	TLS      TLS
	// AddressMode is how Attach gives containers on this engine the
	// service address (default AddressHelper).
	AddressMode AddressMode
}

// TLS names the PEM files for a tcp endpoint: the CA that signed the
// engine's certificate, and this node's client certificate and key.
type TLS struct {
	CAFile, CertFile, KeyFile string
}

func (t TLS) empty() bool { return t.CAFile == "" && t.CertFile == "" && t.KeyFile == "" }

var hostNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

func (c *Config) setDefaults() {
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.SlowCallTimeout == 0 {
		c.SlowCallTimeout = DefaultSlowCallTimeout
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.ParkNetwork == "" {
		c.ParkNetwork = DefaultParkNetwork
	}
	if c.HelperImage == "" {
		c.HelperImage = DefaultHelperImage
	}
	c.Hosts = slices.Clone(c.Hosts) // the caller's slice stays as it was
	for i := range c.Hosts {
		if c.Hosts[i].AddressMode == "" {
			c.Hosts[i].AddressMode = AddressHelper
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func (c *Config) validate() error {
	if len(c.Hosts) == 0 {
		return errors.New("docker: at least one host required")
	}
	seen := map[string]bool{}
	for i, h := range c.Hosts {
		switch {
		case !hostNameRE.MatchString(h.Name):
			return fmt.Errorf("docker: hosts[%d]: name %q must match %s", i, h.Name, hostNameRE)
		case seen[h.Name]:
			return fmt.Errorf("docker: hosts[%d]: name %q is listed twice", i, h.Name)
		}
		seen[h.Name] = true
		if h.AddressMode != AddressHelper && h.AddressMode != AddressEndpoint {
			return fmt.Errorf("docker: host %s: address mode %q must be %q or %q", h.Name, h.AddressMode, AddressHelper, AddressEndpoint)
		}
		u, err := url.Parse(h.Endpoint)
		if err != nil {
			return fmt.Errorf("docker: host %s: endpoint: %w", h.Name, err)
		}
		switch u.Scheme {
		case "unix":
			if u.Path == "" || u.Host != "" {
				return fmt.Errorf("docker: host %s: endpoint %q must be unix:///absolute/path", h.Name, h.Endpoint)
			}
			if !h.TLS.empty() {
				return fmt.Errorf("docker: host %s: TLS is for tcp endpoints only", h.Name)
			}
		case "tcp":
			if u.Hostname() == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
				return fmt.Errorf("docker: host %s: endpoint %q must be tcp://HOST:PORT", h.Name, h.Endpoint)
			}
			if h.TLS.empty() && !loopback(u.Hostname()) {
				return fmt.Errorf("docker: host %s: tcp endpoint %s without TLS would hand the engine (root on that host) to anyone on the network; set tls ca, cert and key", h.Name, h.Endpoint)
			}
			if !h.TLS.empty() && (h.TLS.CAFile == "" || h.TLS.CertFile == "" || h.TLS.KeyFile == "") {
				return fmt.Errorf("docker: host %s: TLS needs all of CA, certificate and key files (mutual TLS)", h.Name)
			}
		default:
			return fmt.Errorf("docker: host %s: endpoint %q must be unix://PATH or tcp://HOST:PORT", h.Name, h.Endpoint)
		}
	}
	switch {
	case c.CallTimeout < 0, c.SlowCallTimeout < 0, c.StopGrace < 0:
		return errors.New("docker: timeouts must be positive")
	case c.MaxAttempts < 0:
		return errors.New("docker: max attempts must be positive")
	case !netNameRE.MatchString(c.ParkNetwork):
		return fmt.Errorf("docker: park network %q is not a Docker network name", c.ParkNetwork)
	}
	return nil
}

var netNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

func loopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}
