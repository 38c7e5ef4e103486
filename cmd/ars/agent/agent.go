// Package agent assembles one ars controller node from its configuration:
// the replicated core (cluster), the HTTPS API (transport), metrics and the
// leader-only vSphere driver session. The `ars agent` command runs it; the
// test harness in test/ starts it in process.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/apiserver"
	"github.com/ars-project/ars/cluster"
	"github.com/ars-project/ars/cmd/ars/internal/config"
	"github.com/ars-project/ars/controller"
	"github.com/ars-project/ars/controller/docker"
	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/controller/probe"
	"github.com/ars-project/ars/controller/vsphere"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/notify"
	"github.com/ars-project/ars/pki"
	"github.com/ars-project/ars/replicaagent"
	"github.com/ars-project/ars/transport"
)

// Config is the agent's configuration (the YAML schema).
type Config = config.Agent

// VCenterConfig is the vcenter section of Config, and one entry of its
// vcenters list.
type VCenterConfig = config.VCenter

// DockerHostConfig is one entry of the docker.hosts section of Config.
type DockerHostConfig = config.DockerHost

// NotifySinkConfig is one entry of the notify section of Config, with its
// exec or webhook settings.
type (
	NotifySinkConfig    = config.NotifySink
	NotifyExecConfig    = config.NotifyExec
	NotifyWebhookConfig = config.NotifyWebhook
)

// LoadConfig reads and validates an agent configuration file.
func LoadConfig(path string) (*Config, error) { return config.Load(path) }

// DefaultConfig is the schema's defaults; callers fill in the node's own
// settings and call Validate.
func DefaultConfig() *Config { return config.Default() }

// DevConfig is the configuration of `ars agent -dev`.
func DevConfig() *Config { return config.Dev() }

// Agent is one running controller node.
type Agent struct {
	cfg     *Config
	log     *slog.Logger
	Cluster *cluster.Cluster
	api     *http.Server
	apiLn   net.Listener
	apiURL  string
	vc      *devVCenter
	reg     *registry
	// VSphere is the node's vSphere driver over its vCenters (nil without
	// one). Each vCenter's session is held only while this node leads.
	VSphere *vsphere.Set
	// Docker is the node's container driver (nil without docker hosts).
	// Only the leader's controller calls it.
	Docker *docker.Driver
	done   chan struct{}
	// witness probes quorum-confirmed services while this node follows.
	witnessStop context.CancelFunc
	witnessDone chan struct{}
	stopped     sync.Once
	err         error
}

// NewLogger builds the node's logger from the log settings.
func NewLogger(cfg *Config, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Start brings a node up: Raft and gossip first, then the API listener.
func Start(cfg *Config, log *slog.Logger) (*Agent, error) {
	a := &Agent{cfg: cfg, log: log, done: make(chan struct{})}
	host := func(port int) string { return net.JoinHostPort(cfg.BindAddr, strconv.Itoa(port)) }
	adv := func(port int) string { return net.JoinHostPort(cfg.AdvertiseAddr, strconv.Itoa(port)) }

	var (
		raftServer, raftClient, apiTLS *tls.Config
		tokens                         *pki.Tokens
		gossipKey                      []byte
		err                            error
	)
	if !cfg.Dev {
		files := transport.TLSFiles{CA: cfg.TLS.CAFile, Cert: cfg.TLS.CertFile, Key: cfg.TLS.KeyFile}
		if raftServer, err = transport.ServerTLS(files, true); err != nil {
			return nil, fmt.Errorf("raft tls: %w", err)
		}
		if apiTLS, err = transport.ServerTLS(files, false); err != nil {
			return nil, fmt.Errorf("api tls: %w", err)
		}
		if raftClient, err = transport.ClientTLS(files, ""); err != nil {
			return nil, fmt.Errorf("node client tls: %w", err)
		}
		if gossipKey, err = pki.LoadGossipKey(cfg.GossipKeyFile); err != nil {
			return nil, fmt.Errorf("gossip key: %w", err)
		}
		if tokens, err = pki.LoadTokens(cfg.TokensFile); err != nil {
			return nil, fmt.Errorf("tokens: %w", err)
		}
	}

	reg := newRegistry()
	a.reg = reg
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	scheme := "https"
	if cfg.Dev {
		scheme = "http"
	}
	apiAdvertise := scheme + "://" + adv(cfg.Ports.API)
	ccfg := cluster.Config{
		NodeName:        cfg.NodeName,
		DataDir:         cfg.DataDir,
		InMemory:        cfg.Dev && cfg.DataDir == "",
		RaftBind:        host(cfg.Ports.Raft),
		RaftAdvertise:   adv(cfg.Ports.Raft),
		GossipBind:      host(cfg.Ports.Gossip),
		GossipAdvertise: adv(cfg.Ports.Gossip),
		APIAdvertise:    apiAdvertise,
		BootstrapExpect: cfg.BootstrapExpect,
		Join:            cfg.Join,
		GossipKey:       gossipKey,
		ServerTLS:       raftServer,
		ClientTLS:       raftClient,
		Raft: cluster.RaftTimings{
			HeartbeatTimeout:   cfg.Raft.HeartbeatTimeout,
			ElectionTimeout:    cfg.Raft.ElectionTimeout,
			LeaderLeaseTimeout: cfg.Raft.LeaderLeaseTimeout,
			CommitTimeout:      cfg.Raft.CommitTimeout,
			SnapshotInterval:   cfg.Raft.SnapshotInterval,
			SnapshotThreshold:  cfg.Raft.SnapshotThreshold,
			TrailingLogs:       cfg.Raft.TrailingLogs,
		},
		Gossip: cluster.GossipTimings{
			ProbeInterval:  cfg.Gossip.ProbeInterval,
			ProbeTimeout:   cfg.Gossip.ProbeTimeout,
			SuspicionMult:  cfg.Gossip.SuspicionMult,
			GossipInterval: cfg.Gossip.GossipInterval,
		},
		Membership: cluster.MembershipPolicy{
			ReapFailedAfter: cfg.Membership.ReapFailedAfter,
			MinVoters:       cfg.Membership.MinVoters,
		},
		Disk: cluster.DiskCheck{
			MinFreeBytes: cfg.Disk.MinFreeBytes,
			Interval:     cfg.Disk.CheckInterval,
			ProbeTimeout: cfg.Disk.ProbeTimeout,
		},
		Forwarder:  (&forwarder{tls: raftClient}).forward,
		Logger:     log,
		Registerer: reg,
	}
	c, err := cluster.New(ccfg)
	if err != nil {
		return nil, err
	}
	a.Cluster = c

	// -dev embeds a vCenter simulator; it is the node's vCenter unless the
	// configuration names another one.
	if cfg.Dev {
		if a.vc, err = startDevVCenter(); err != nil {
			return nil, err
		}
	}
	if a.VSphere, err = newVSphere(cfg, a.vc, log, reg); err != nil {
		a.closeDevVCenter()
		return nil, err
	}
	if a.VSphere != nil {
		// Each session lives exactly as long as leadership: opened after
		// the barrier, logged out (operations in flight cancelled) when it
		// ends. One routine per vCenter, so one that is slow to log in or
		// to let go holds only its own.
		for _, d := range a.VSphere.Drivers() {
			c.OnLeader("vsphere/"+d.Name(), func(ctx context.Context) {
				if err := d.Run(ctx); err != nil {
					log.Warn("vsphere driver stopped", "vcenter", d.Name(), "err", err)
				}
			})
		}
	}

	if len(cfg.Docker.Hosts) > 0 {
		if a.Docker, err = newDocker(cfg, log, reg); err != nil {
			a.closeDevVCenter()
			return nil, err
		}
	}

	// The leader loop: probes, decisions, reconciliation. It runs only
	// where it has a driver to act with. A -dev
	// node does not probe: its sample service's address is a documentation
	// address nothing answers, so every probe would be a DoS verdict.
	drivers := controllerDrivers(a.VSphere, a.Docker)
	pm := probe.NewMetrics()
	reg.MustRegister(pm)
	// Every node (the -dev one excepted, see above) probes the services
	// that ask for quorum confirmation while it is a follower, and reports
	// to the leader; when the node becomes leader, its controller starts
	// from the witness's verdicts.
	var witness *controller.Witness
	if !cfg.Dev {
		if witness, err = controller.NewWitness(controller.WitnessConfig{
			NodeName: cfg.NodeName, Cluster: c, Logger: log, ProbeMetrics: pm,
		}); err != nil {
			a.closeDevVCenter()
			return nil, fmt.Errorf("witness: %w", err)
		}
	}
	var ownVotes controller.WitnessVotes
	if witness != nil {
		ownVotes = witness
	}
	if len(drivers) > 0 {
		var agents controller.AgentDialer
		if !cfg.Dev {
			// The leader calls replica agents with this node's certificate
			// and checks theirs names the replica it meant to call.
			files := transport.TLSFiles{CA: cfg.TLS.CAFile, Cert: cfg.TLS.CertFile, Key: cfg.TLS.KeyFile}
			agents = func(replica, addr string) (controller.AddressAgent, error) {
				tc, err := transport.AgentClientTLS(files, replica)
				if err != nil {
					return nil, err
				}
				return replicaagent.NewClient(replica, addr, tc)
			}
		}
		ctl, err := controller.New(controller.Config{
			Agents:        agents,
			Cluster:       c,
			NodeName:      cfg.NodeName,
			Drivers:       drivers,
			Logger:        log.With("component", "controller"),
			Metrics:       controller.NewMetrics(reg),
			ProbeMetrics:  pm,
			Witness:       ownVotes,
			DisableProbes: cfg.Dev,
		})
		if err != nil {
			a.closeDevVCenter()
			return nil, fmt.Errorf("controller: %w", err)
		}
		c.OnLeader("controller", ctl.Run)
		c.SetMessageHandler(ctl.HandleReport)
	}

	// Notifications: the leader tells the configured sinks of every
	// committed event, in routines of their own.
	if len(cfg.Notify) > 0 {
		n, err := notify.New(notify.Config{
			Source:  c,
			Sinks:   notifySinks(cfg.Notify),
			Logger:  log.With("component", "notify"),
			Metrics: notify.NewMetrics(reg),
		})
		if err != nil {
			a.closeDevVCenter()
			return nil, fmt.Errorf("notify: %w", err)
		}
		c.OnLeader("notify", n.Run)
	}

	srv, err := apiserver.NewServer(apiserver.ServerConfig{
		Backend:         c,
		DecidesSwitches: len(drivers) > 0,
		CheckSpec:       checkSpec(a.VSphere),
		Tokens:          tokens,
		Dev:             cfg.Dev,
		Metrics:         promhttp.HandlerFor(reg.Registry, promhttp.HandlerOpts{Registry: reg}),
		Registerer:      reg,
		NodeClientTLS:   raftClient,
		Logger:          log,
		Term:            c.Term,
	})
	if err != nil {
		a.closeDevVCenter()
		return nil, fmt.Errorf("api server: %w", err)
	}
	ln, err := net.Listen("tcp", host(cfg.Ports.API))
	if err != nil {
		a.closeDevVCenter()
		return nil, fmt.Errorf("api listener on %s: %w", host(cfg.Ports.API), err)
	}
	if err := c.Start(); err != nil {
		ln.Close()
		a.closeDevVCenter()
		return nil, err
	}
	if witness != nil {
		wctx, cancel := context.WithCancel(context.Background())
		a.witnessStop, a.witnessDone = cancel, make(chan struct{})
		go func() {
			defer close(a.witnessDone)
			witness.Run(wctx)
		}()
	}
	a.api = apiserver.NewHTTPServer(ln.Addr().String(), srv.Handler(), apiTLS, log)
	a.apiLn = ln
	a.apiURL = apiAdvertise
	go func() {
		var err error
		if apiTLS != nil {
			err = a.api.ServeTLS(ln, "", "")
		} else {
			err = a.api.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("api server stopped", "err", err)
			a.stop(err)
		}
	}()
	go func() {
		// Stop the agent when the node leaves the cluster; return when the
		// agent stops for any other reason (Left is closed only by Leave).
		select {
		case <-c.Left():
			log.Info("left the cluster; stopping")
			a.stop(nil)
		case <-a.done:
		}
	}()
	log.Info("api listening", "url", apiAdvertise, "dev", cfg.Dev)
	if cfg.Dev {
		log.Info("dev: embedded vCenter simulator (any username/password); the dev leader holds a session on it", "url", a.vc.URL())
		if err := a.applyDevService(context.Background()); err != nil {
			a.stop(err)
			return nil, fmt.Errorf("dev sample service: %w", err)
		}
		log.Info("dev: applied the sample service 'dns' (ars service show dns)")
	}
	return a, nil
}

// newVSphere builds the vSphere drivers for the configured vCenters, or
// for the embedded simulator of a -dev node (verified by its thumbprint),
// or returns nil when there is no vCenter. It does not connect.
func newVSphere(cfg *Config, dev *devVCenter, log *slog.Logger, reg prometheus.Registerer) (*vsphere.Set, error) {
	var vcfgs []vsphere.Config
	for _, vc := range cfg.VCenterList() {
		vcfgs = append(vcfgs, vsphere.Config{
			Name:              vc.Name,
			URL:               vc.URL,
			Username:          vc.Username,
			Password:          vc.Password,
			CAFile:            vc.CAFile,
			Thumbprint:        vc.Thumbprint,
			Insecure:          vc.Insecure,
			PerOperationLogin: vc.PerOperationLogin,
			CallTimeout:       vc.CallTimeout,
			TaskTimeout:       vc.TaskTimeout,
			MaxAttempts:       vc.MaxAttempts,
			KeepAlive:         vc.KeepAliveInterval,
		})
		if vc.Insecure {
			log.Warn("vcenter: certificate verification is OFF (insecure: true); use ca_file or thumbprint outside a lab", "vcenter", vc.Name)
		}
	}
	if len(vcfgs) == 0 && dev != nil {
		vcfgs = append(vcfgs, vsphere.Config{
			URL:        dev.URL(),
			Username:   devVCenterUser,
			Password:   func() (string, error) { return devVCenterPassword, nil },
			Thumbprint: dev.Thumbprint(),
		})
	}
	if len(vcfgs) == 0 {
		return nil, nil
	}
	m := vsphere.NewMetrics(reg) // one set of series, labelled by vcenter
	var drivers []*vsphere.Driver
	for _, vcfg := range vcfgs {
		vcfg.Logger = log.With("component", "vsphere")
		vcfg.Metrics = m
		d, err := vsphere.New(vcfg)
		if err != nil {
			return nil, fmt.Errorf("vcenter %s: %w", vcfg.Name, err)
		}
		drivers = append(drivers, d)
	}
	set, err := vsphere.NewSet(drivers...)
	if err != nil {
		return nil, fmt.Errorf("vcenters: %w", err)
	}
	return set, nil
}

// checkSpec refuses a service spec whose VM replicas name a vCenter this
// node does not have (or none, when it has several), before the spec is
// committed.
func checkSpec(vs *vsphere.Set) func(fsm.ServiceSpec) error {
	var names []string
	if vs != nil {
		names = vs.Names()
	}
	return func(spec fsm.ServiceSpec) error { return vsphere.CheckVCenters(spec, names) }
}

func (a *Agent) closeDevVCenter() {
	if a.vc != nil {
		a.vc.Close()
	}
}

// forwarder sends follower writes to the leader's API with the node's
// mutual-TLS identity. It keeps one client (one connection pool) for the
// current leader and replaces it when the leader changes.
type forwarder struct {
	tls *tls.Config
	mu  sync.Mutex
	cl  *api.Client
	url string
}

func (f *forwarder) client(leaderAPI string) (*api.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cl != nil && f.url == leaderAPI {
		return f.cl, nil
	}
	cl, err := api.NewClient(leaderAPI, "", f.tls)
	if err != nil {
		return nil, err
	}
	if f.cl != nil {
		f.cl.Close()
	}
	f.cl, f.url = cl, leaderAPI
	return cl, nil
}

func (f *forwarder) forward(ctx context.Context, leaderAPI string, cmd []byte) (fsm.Result, error) {
	cl, err := f.client(leaderAPI)
	if err != nil {
		return fsm.Result{}, err
	}
	return cl.InternalApply(ctx, cmd)
}

// APIURL is the API address other nodes and the CLI use.
func (a *Agent) APIURL() string { return a.apiURL }

// Done is closed when the agent has stopped (after Shutdown, or after the
// node left the cluster through the API).
func (a *Agent) Done() <-chan struct{} { return a.done }

// Err is why the agent stopped (nil for a clean stop).
func (a *Agent) Err() error { return a.err }

func (a *Agent) stop(err error) {
	a.stopped.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = a.api.Shutdown(ctx)
		if a.witnessStop != nil {
			a.witnessStop()
			<-a.witnessDone
		}
		if cerr := a.Cluster.Shutdown(); err == nil {
			err = cerr
		}
		a.closeDevVCenter()
		if a.Docker != nil {
			_ = a.Docker.Close()
		}
		a.err = err
		close(a.done)
	})
}

// Shutdown stops the node without leaving the cluster (a restart keeps its
// membership).
func (a *Agent) Shutdown() error {
	a.stop(nil)
	<-a.done
	return a.err
}

// DevBanner is printed loudly when an agent runs in -dev mode.
func DevBanner(url string) string {
	line := strings.Repeat("!", 72)
	return fmt.Sprintf("%s\n!! ars agent -dev: ONE in-memory node, plain HTTP, NO authentication.\n!! API %s — every request is treated as an operator.\n!! Never expose this to a network. CLI: export ARS_HTTP_ADDR=%s\n%s\n", line, url, url, line)
}

// newDocker builds the container driver for the configured Docker hosts.
// It connects lazily.
func newDocker(cfg *Config, log *slog.Logger, reg prometheus.Registerer) (*docker.Driver, error) {
	dcfg := docker.Config{Logger: log.With("component", "docker"), Registerer: reg, HelperImage: cfg.Docker.HelperImage}
	for _, h := range cfg.Docker.Hosts {
		dcfg.Hosts = append(dcfg.Hosts, docker.Host{Name: h.Name, Endpoint: h.Endpoint,
			TLS:         docker.TLS{CAFile: h.TLS.CAFile, CertFile: h.TLS.CertFile, KeyFile: h.TLS.KeyFile},
			AddressMode: docker.AddressMode(h.AddressMode)})
	}
	d, err := docker.New(dcfg)
	if err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	return d, nil
}

// controllerDrivers maps replica platforms to the drivers this node has.
func controllerDrivers(vs *vsphere.Set, dk *docker.Driver) map[string]driver.Driver {
	drivers := map[string]driver.Driver{}
	if dk != nil {
		drivers[fsm.PlatformContainer] = dk
	}
	if vs != nil {
		drivers[fsm.PlatformVM] = vs
	}
	return drivers
}

// The cluster is the notifier's event source.
var _ notify.Source = (*cluster.Cluster)(nil)

// notifySinks maps the notify section onto the notifier's sinks.
func notifySinks(cfg []config.NotifySink) []notify.SinkConfig {
	var out []notify.SinkConfig
	for _, n := range cfg {
		sc := notify.SinkConfig{Name: n.Name}
		if x := n.Exec; x != nil {
			sc.Exec = &notify.ExecConfig{Path: x.Path, Args: x.Args, Timeout: x.Timeout}
		}
		if w := n.Webhook; w != nil {
			sc.Webhook = &notify.WebhookConfig{URL: w.URL, SecretFile: w.SecretFile, Timeout: w.Timeout,
				MaxAttempts: w.MaxAttempts, Queue: w.Queue}
		}
		out = append(out, sc)
	}
	return out
}
