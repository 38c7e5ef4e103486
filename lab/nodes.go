package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ars-project/ars/api"
	"github.com/ars-project/ars/fsm"
	"github.com/ars-project/ars/lab/netlab"
	"github.com/ars-project/ars/pki"
	"github.com/ars-project/ars/transport"
)

// The lab's controller nodes: `ars agent` processes, one per node
// namespace, with TLS, tokens and a gossip key from transport.GeneratePKI,
// talking to the simulator through a proxy on the hub address.
const (
	// VCenterPort is the simulator's port on the hub address.
	VCenterPort = 443
	// APIPort, RaftPort and GossipPort are every node's ports (each node
	// has its own namespace and address, so they are the same for all).
	APIPort, RaftPort, GossipPort = 7500, 7501, 7502

	vcUser = "ars-lab@vsphere.local"
)

// Node is one controller node of the lab as `ars-lab status` shows it.
type Node struct {
	Name string `json:"name"`
	Addr string `json:"addr"` // API address, host:port
	Pid  int    `json:"pid"`  // 0 while stopped
	// Log is the node's log file.
	Log string `json:"log"`
	// Agent is the ars binary the node runs (or last ran).
	Agent string `json:"agent,omitempty"`
}

// nodeSet runs the lab's agents.
type nodeSet struct {
	l     *Lab
	dir   string // StateDir/nodes
	pki   string // StateDir/pki
	mu    sync.Mutex
	procs map[string]*netlab.Proc
	// agents is the ars binary each node runs when started: Config.Agent
	// or its Config.NodeAgents entry, until UpgradeNode changes it.
	agents map[string]string
}

// PKIDir is where the lab's CA, node certificates, gossip key and tokens
// are (ca.pem, operator.token, detector.token, …).
func (l *Lab) PKIDir() string { return filepath.Join(l.Net.Topology().StateDir, "pki") }

// VCenterURL is the simulator's SDK endpoint as the nodes reach it.
func (l *Lab) VCenterURL() string {
	return "https://" + netip.AddrPortFrom(l.Net.Topology().Hub, VCenterPort).String() + "/sdk"
}

// NodeAPI is a node's API address (host:port).
func (l *Lab) NodeAPI(node string) string {
	return netip.AddrPortFrom(l.Net.NodeAddr(node), APIPort).String()
}

// proxyVCenter serves the simulator (listening on the host's loopback) on
// the hub address, so that the nodes in their namespaces reach it and
// nothing else does. One goroutine pair per connection; Down closes them.
func (l *Lab) proxyVCenter() error {
	ln, err := l.Net.ListenHub(VCenterPort)
	if err != nil {
		return fmt.Errorf("lab: vCenter endpoint: %w", err)
	}
	target := l.Sim.Server.Listener.Addr().String()
	l.vcln = ln
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		var conns sync.WaitGroup
		defer conns.Wait()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				pipe(c, target, proxySource(c.RemoteAddr()), l.proxyDone)
			}()
		}
	}()
	return nil
}

// pipe copies between c and a new connection to target (dialed from src,
// if set) until either side closes or done is closed.
func pipe(c net.Conn, target string, src *net.TCPAddr, done <-chan struct{}) {
	defer c.Close()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != nil {
		d.LocalAddr = src
	}
	u, err := d.Dial("tcp", target)
	if err != nil {
		return
	}
	defer u.Close()
	fin := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); fin <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); fin <- struct{}{} }()
	select {
	case <-fin:
	case <-done:
	}
	c.Close()
	u.Close()
	<-fin
}

// startNodes writes the PKI and one agent config per node and starts the
// agents.
func (l *Lab) startNodes() error {
	t := l.Net.Topology()
	ns := &nodeSet{l: l, dir: filepath.Join(t.StateDir, "nodes"), pki: l.PKIDir(), procs: map[string]*netlab.Proc{},
		agents: map[string]string{}}
	for _, n := range t.Nodes {
		ns.agents[n] = l.cfg.Agent
		if a := l.cfg.NodeAgents[n]; a != "" {
			ns.agents[n] = a
		}
	}
	l.nodes = ns
	var pn []pki.PKINode
	for _, n := range t.Nodes {
		pn = append(pn, pki.PKINode{Name: n, IPs: []string{l.Net.NodeAddr(n).String()}})
	}
	if err := os.RemoveAll(ns.pki); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := pki.GeneratePKI(pki.PKIRequest{Dir: ns.pki, Nodes: pn, Replicas: l.pkiReplicas()}); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	tokens, err := readTokens(filepath.Join(ns.pki, "tokens.yaml"))
	if err != nil {
		return err
	}
	for _, role := range []string{"operator", "detector", "reader"} {
		if err := os.WriteFile(filepath.Join(ns.pki, role+".token"), []byte(tokens[role]+"\n"), 0o600); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(ns.pki, "vcenter.password"), []byte(l.vcPass+"\n"), 0o600); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if l.cfg.DeadWebhook {
		secret, err := pki.NewTokenSecret()
		if err != nil {
			return fmt.Errorf("lab: webhook secret: %w", err)
		}
		if err := os.WriteFile(filepath.Join(ns.pki, "webhook.secret"), []byte(secret+"\n"), 0o600); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	// A crashed lab's node disks would take RemoveAll into their files.
	if err := ns.unmountDisks(); err != nil {
		return err
	}
	if err := os.RemoveAll(ns.dir); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	for _, n := range t.Nodes {
		if err := ns.writeConfig(n); err != nil {
			return err
		}
		if l.cfg.NodeDisks {
			if err := ns.makeDisk(l.ctx, n); err != nil {
				return err
			}
		}
	}
	// The replica agents serve before any node may call them.
	if err := l.startAgents(); err != nil {
		return err
	}
	for _, n := range t.Nodes {
		if err := ns.start(n); err != nil {
			return err
		}
	}
	return nil
}

// readTokens reads the name→secret pairs of the tokens file GeneratePKI
// wrote.
func readTokens(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	var f struct {
		Tokens []pki.Token `yaml:"tokens"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("lab: %s: %w", path, err)
	}
	out := map[string]string{}
	for _, t := range f.Tokens {
		out[t.Name] = t.Secret
	}
	for _, r := range []string{"operator", "detector", "reader"} {
		if out[r] == "" {
			return nil, fmt.Errorf("lab: %s has no %s token", path, r)
		}
	}
	return out, nil
}

var agentConfig = template.Must(template.New("agent").Parse(`# ars agent configuration written by the lab (ars-lab up): node {{.Name}}.
node_name: {{.Name}}
data_dir: {{.DataDir}}
bind_addr: {{.Addr}}
advertise_addr: {{.Addr}}
ports: {api: {{.API}}, raft: {{.Raft}}, gossip: {{.Gossip}}}
bootstrap_expect: {{.Expect}}
join: [{{.Join}}]
tls:
  ca_file: {{.PKI}}/ca.pem
  cert_file: {{.PKI}}/{{.Name}}.pem
  key_file: {{.PKI}}/{{.Name}}-key.pem
gossip_key_file: {{.PKI}}/gossip.key
tokens_file: {{.PKI}}/tokens.yaml
log:
  level: info
  format: text
vcenter:
  url: {{.VCenter}}
  username: {{.User}}
  password_file: {{.PKI}}/vcenter.password
  thumbprint: "{{.Thumbprint}}"
  per_operation_login: {{.PerOpLogin}}
{{- if .KeepAlive}}
  keepalive_interval: {{.KeepAlive}}
{{- end}}
{{- if .Docker}}
docker:
  hosts:
    - name: {{.DockerHost}}
      endpoint: {{.Docker}}
{{- end}}
{{- if .Webhook}}
notify:
  - name: dead-hook
    webhook:
      url: {{.Webhook}}
      secret_file: {{.PKI}}/webhook.secret
{{- end}}
`))

func (ns *nodeSet) configPath(node string) string { return filepath.Join(ns.dir, node+".yaml") }

func (ns *nodeSet) writeConfig(node string) error {
	l := ns.l
	t := l.Net.Topology()
	var join []string
	for _, o := range t.Nodes {
		if o != node {
			join = append(join, strconv.Quote(netip.AddrPortFrom(l.Net.NodeAddr(o), GossipPort).String()))
		}
	}
	if err := os.MkdirAll(filepath.Join(ns.dir, node), 0o700); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	var b strings.Builder
	err := agentConfig.Execute(&b, map[string]any{
		"Name": node, "DataDir": ns.dataDir(node), "Addr": l.Net.NodeAddr(node).String(),
		"API": APIPort, "Raft": RaftPort, "Gossip": GossipPort, "Expect": len(t.Nodes),
		"Join": strings.Join(join, ", "), "PKI": ns.pki, "VCenter": l.VCenterURL(), "User": vcUser,
		"Thumbprint": l.Sim.Thumbprint(), "PerOpLogin": l.cfg.PerOperationLogin, "KeepAlive": durationOrEmpty(l.cfg.VCenterKeepAlive),
		"Docker": dockerEndpoint(l), "DockerHost": DockerHost, "Webhook": l.DeadWebhookURL(),
	})
	if err != nil {
		return fmt.Errorf("lab: agent config: %w", err)
	}
	return os.WriteFile(ns.configPath(node), []byte(b.String()), 0o600)
}

func durationOrEmpty(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return d.String()
}

func (ns *nodeSet) start(node string) error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if p := ns.procs[node]; p != nil && !exited(p) {
		return fmt.Errorf("lab: node %s is already running (pid %d)", node, p.Pid())
	}
	p, err := ns.l.Net.RunNode(node, ns.agents[node], "agent", "-config", ns.configPath(node))
	if err != nil {
		return fmt.Errorf("lab: start node %s: %w", node, err)
	}
	ns.procs[node] = p
	return nil
}

func exited(p *netlab.Proc) bool {
	select {
	case <-p.Done():
		return true
	default:
		return false
	}
}

// running is the node's agent process, or an error if it is not running.
func (ns *nodeSet) running(node string) (*netlab.Proc, error) {
	if ns == nil {
		return nil, badRequest("the lab has no nodes")
	}
	if !slices.Contains(ns.l.Net.Topology().Nodes, node) {
		return nil, badRequest("no node %q", node)
	}
	ns.mu.Lock()
	p := ns.procs[node]
	ns.mu.Unlock()
	if p == nil || exited(p) {
		return nil, fmt.Errorf("lab: node %s is not running", node)
	}
	return p, nil
}

// kill sends SIGKILL to a node's agent and waits for it to exit.
func (ns *nodeSet) kill(node string) error {
	ns.mu.Lock()
	p := ns.procs[node]
	ns.mu.Unlock()
	if p == nil || exited(p) {
		return fmt.Errorf("lab: node %s is not running", node)
	}
	if err := p.Kill(); err != nil {
		return fmt.Errorf("lab: kill node %s: %w", node, err)
	}
	select {
	case <-p.Done():
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("lab: node %s did not exit after SIGKILL", node)
	}
}

// NodeStopLimit bounds how long UpgradeNode waits for an agent to exit
// after SIGTERM.
const NodeStopLimit = 30 * time.Second

// UpgradeNode restarts a node on another ars binary, as an operator
// upgrades one: SIGTERM to its agent, a wait for it to exit (at most
// NodeStopLimit; an agent that ignores SIGTERM is not killed but
// reported), and the agent started from agent with the same
// configuration and data directory. The node keeps agent from then on
// (StartNode after a KillNode too).
func (l *Lab) UpgradeNode(node, agent string) error {
	if !slices.Contains(l.Net.Topology().Nodes, node) {
		return badRequest("no node %q", node)
	}
	if agent == "" {
		return badRequest("upgrade of node %s: no agent binary", node)
	}
	return l.recordNode(node, EvNodeUpgrade, l.nodes.upgrade(node, agent))
}

func (ns *nodeSet) upgrade(node, agent string) error {
	p, err := ns.running(node)
	if err != nil {
		return err
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("lab: upgrade of node %s: %w", node, err)
	}
	select {
	case <-p.Done():
	case <-time.After(NodeStopLimit):
		return fmt.Errorf("lab: upgrade of node %s: its agent (pid %d) did not exit within %s of SIGTERM", node, p.Pid(), NodeStopLimit)
	}
	ns.mu.Lock()
	ns.agents[node] = agent
	ns.mu.Unlock()
	return ns.start(node)
}

// Nodes lists the controller nodes, each with its agent's pid (0 while
// it is not running: killed, stopped by an upgrade, or exited by itself)
// and log.
func (l *Lab) Nodes() []Node { return l.nodes.list() }

// killAll kills every running node (a lab without nodes has none).
func (ns *nodeSet) killAll() error {
	if ns == nil {
		return nil
	}
	ns.mu.Lock()
	var running []string
	for n, p := range ns.procs {
		if !exited(p) {
			running = append(running, n)
		}
	}
	ns.mu.Unlock()
	var errs []error
	for _, n := range running {
		errs = append(errs, ns.kill(n))
	}
	return errors.Join(errs...)
}

func (ns *nodeSet) list() []Node {
	if ns == nil {
		return nil // a lab without nodes
	}
	ns.mu.Lock()
	defer ns.mu.Unlock()
	var out []Node
	for _, n := range ns.l.Net.Topology().Nodes {
		nd := Node{Name: n, Addr: ns.l.NodeAPI(n), Agent: ns.agents[n]}
		if p := ns.procs[n]; p != nil {
			nd.Log = p.LogPath()
			if !exited(p) {
				nd.Pid = p.Pid()
			}
		}
		out = append(out, nd)
	}
	return out
}

// Client is an API client for a node with the lab's operator token,
// connecting from inside the client namespace.
func (l *Lab) Client(node, role string) (*api.Client, error) {
	if !l.Net.NodeAddr(node).IsValid() {
		return nil, fmt.Errorf("lab: no node %q", node)
	}
	return NodeClient(l.PKIDir(), l.NodeAPI(node), role, l.Net.DialContext)
}

// NodeClient is an API client for a lab node at addr with the token of
// role from pkiDir, dialing through dial (nil: directly).
func NodeClient(pkiDir, addr, role string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*api.Client, error) {
	tok, err := os.ReadFile(filepath.Join(pkiDir, role+".token"))
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	tlsCfg, err := transport.ClientTLS(transport.TLSFiles{CA: filepath.Join(pkiDir, "ca.pem")}, "")
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	var opts []api.ClientOption
	if dial != nil {
		opts = append(opts, api.WithDialContext(dial))
	}
	return api.NewClient("https://"+addr, strings.TrimSpace(string(tok)), tlsCfg, opts...)
}

// anyNode calls fn with a client (token of role) for each running node in
// turn, each call bounded by timeout, until one succeeds; it returns the
// errors of all if none does.
func (l *Lab) anyNode(ctx context.Context, role string, timeout time.Duration, fn func(context.Context, *api.Client) error) error {
	var errs []error
	for _, n := range l.nodes.list() {
		if n.Pid == 0 {
			continue
		}
		c, err := l.Client(n.Name, role)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err = fn(cctx, c)
		cancel()
		c.Close()
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
	}
	if len(errs) == 0 {
		return errors.New("lab: no node is running")
	}
	return errors.Join(errs...)
}

// Leader asks the running nodes which one leads; "" if none knows.
func (l *Lab) Leader(ctx context.Context) (string, error) {
	leader := ""
	err := l.anyNode(ctx, "reader", time.Second, func(ctx context.Context, c *api.Client) error {
		st, err := c.Status(ctx)
		if err == nil && st.Leader == "" {
			err = errors.New("no leader known")
		}
		leader = st.Leader
		return err
	})
	return leader, err
}

// WaitLeader polls until a node names a leader other than not (any if
// ""), or ctx ends.
func (l *Lab) WaitLeader(ctx context.Context, not string) (string, error) {
	for {
		ld, err := l.Leader(ctx)
		if ld != "" && ld != not {
			return ld, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("lab: no leader (other than %q): %w (last: %v)", not, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// applyService applies the lab's service through a node, retrying while
// the cluster settles.
func (l *Lab) applyService(ctx context.Context) error { return l.applyServiceNamed(ctx, l.cfg.Service) }

// applyServiceNamed applies one of the lab's services (Config.Service or
// a name of Config.ServiceAddrs).
func (l *Lab) applyServiceNamed(ctx context.Context, name string) error {
	spec, err := json.Marshal(l.ServiceSpec(name))
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	for {
		err := l.anyNode(ctx, "operator", 5*time.Second, func(ctx context.Context, c *api.Client) error {
			_, err := c.ApplyService(ctx, spec)
			return err
		})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: applying service %s: %w (last: %v)", name, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// AuditLog is the AppArmor audit log of a replica's "host", which the
// replica's `ars watch apparmor` follows.
func (l *Lab) AuditLog(replica string) string {
	return filepath.Join(l.Net.Topology().StateDir, "replicas", replica, "audit.log")
}

// startWatchers runs one `ars watch apparmor` per replica in the client
// namespace (where the lab's detectors live), each posting with the
// detector token to one node first and to the others when it fails;
// replicas are spread over the nodes.
func (l *Lab) startWatchers() error {
	t := l.Net.Topology()
	for i, r := range l.cfg.Replicas {
		log := l.AuditLog(r.Name)
		if err := os.MkdirAll(filepath.Dir(log), 0o755); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		if err := os.WriteFile(log, nil, 0o644); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		// Its own node first, then the others: a node that is cut off,
		// stopped or killed passes the alert on (-addrs).
		var addrs []string
		for k := range t.Nodes {
			addrs = append(addrs, "https://"+l.NodeAPI(t.Nodes[(i+k)%len(t.Nodes)]))
		}
		p, err := l.Net.RunClient(l.cfg.Agent, "watch", "apparmor", "-log", log,
			"-service", l.cfg.Service, "-replica", r.Name, "-poll", "10ms",
			"-addrs", strings.Join(addrs, ","), "-ca-file", filepath.Join(l.PKIDir(), "ca.pem"),
			"-token-file", filepath.Join(l.PKIDir(), "detector.token"))
		if err != nil {
			return fmt.Errorf("lab: watcher for %s: %w", r.Name, err)
		}
		l.watchers = append(l.watchers, p)
	}
	return nil
}

// ServiceSpec is the service to apply to the cluster for this lab: every
// replica as a VM of the simulator with its clean snapshot (an
// address-handover one with handover "address" and its agent), the lab's
// service address, and a probe for the test record. For a name of
// Config.ServiceAddrs it is that service: its address and its replicas.
func (l *Lab) ServiceSpec(name string) fsm.ServiceSpec {
	t := l.Net.Topology()
	addr, further := l.cfg.ServiceAddrs[name]
	of := name // the replicas' service
	if !further {
		addr, of = t.Service, l.cfg.Service
	}
	s := fsm.ServiceSpec{Name: name, Address: addr.String() + ":53",
		Probe: l.cfg.Probe, Policy: l.cfg.Policy}
	s.Probe.Query, s.Probe.Expect = RecordName, RecordA
	for _, r := range l.cfg.Replicas {
		if l.cfg.serviceOf(r) != of {
			continue
		}
		if r.isContainer() {
			rs := fsm.ReplicaSpec{Name: r.Name, Impl: r.Impl, OS: r.OS,
				Platform: fsm.PlatformContainer, Host: DockerHost, Image: ImageFor(r.Impl),
				Container: &fsm.ContainerSpec{Network: l.serviceNetwork()}}
			if l.Net.ContainerAgent(r.Name) {
				rs.Handover, rs.Agent = fsm.HandoverAddress, l.AgentAddr(r.Name)
			}
			s.Replicas = append(s.Replicas, rs)
			continue
		}
		rs := fsm.ReplicaSpec{Name: r.Name, Impl: r.Impl, OS: r.OS,
			Platform: fsm.PlatformVM, VM: l.vms[r.Name], Snapshot: CleanSnapshot}
		if l.Net.AddressHandover(r.Name) {
			rs.Handover, rs.Agent = fsm.HandoverAddress, l.AgentAddr(r.Name)
		}
		s.Replicas = append(s.Replicas, rs)
	}
	return s
}

// VCenterLogin is the simulator's only valid username and password (a
// fresh random password per lab; the nodes read it from a 0600 file).
func (l *Lab) VCenterLogin() (user, password string) { return vcUser, l.vcPass }
